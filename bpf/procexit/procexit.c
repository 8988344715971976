//go:build ignore

// Failed process exits, deaths by signal and OOM kills, counted per cgroup
// in per-CPU hash maps that user space reads at each collection interval.
// Deaths by signal and OOM kills also send a record to a ring buffer, for
// logs. Tracepoints only: no kprobes, no fentry.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ebr_maps.h"
#include "ebr_wakeup.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define PF_KTHREAD 0x00200000
#define NSEC_PER_SEC 1000000000ULL

enum event_kind {
	EVENT_SIGNALED = 0, /* the process died by a signal */
	EVENT_OOM_KILL = 1, /* the OOM killer killed the process */
};

/* Kernel-side losses, one per-CPU counter each. */
enum counter {
	COUNTER_SERIES_FULL = 0,  /* a series did not fit; counted in overflow */
	COUNTER_RATE_LIMITED = 1, /* a signal record refused by the rate limit */
	COUNTER_RINGBUF_FULL = 2, /* a record the ring buffer had no room for */
	COUNTER_COUNT = 3,
};

/* The series maps, indexing overflow. */
enum series {
	SERIES_EXITS = 0,
	SERIES_OOM_KILLS = 1,
	SERIES_COUNT = 2,
};

struct exit_key {
	__u64 cgroup_id; /* cgroup v2 id of the exiting task */
	__u8 status;     /* exit status; 0 when killed by a signal */
	__u8 signal;     /* the signal that killed it, or 0 */
	__u8 pad[6];
};

/* What oom:mark_victim tells of a victim. The figures are in kB. Older
 * kernels give only the pid (6.1 until a stable update added them, as in
 * Debian's 6.1.0-56): has_figures is 0 and they are zero. */
struct oom_victim {
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	__u64 pgtables_kb;
	__u32 uid;
	__s16 oom_score_adj;
	__u8 has_figures;
	__u8 pad;
};

struct event {
	__u64 time_ns; /* bpf_ktime_get_ns */
	__u64 cgroup_id;
	struct oom_victim oom; /* EVENT_OOM_KILL only */
	char comm[16];
	__u32 pid; /* tgid */
	__u32 tid;
	__u8 kind; /* enum event_kind */
	__u8 status;
	__u8 signal;
	__u8 core_dumped;
	__u8 pad[4];
};

/* Per-second window of the signal records' rate limit. */
struct rate_window {
	__u64 second; /* bpf_ktime_get_ns() / NSEC_PER_SEC */
	__u64 sent;
};

/* Identifies a process for its whole life: pids are reused, not with the
 * same start time. */
struct proc_key {
	__u64 start_time;
	__u32 tgid;
	__u32 pad;
};

/* Sizes are set by the loader from the receiver's config. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct exit_key);
	__type(value, __u64);
} exits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64); /* cgroup id */
	__type(value, __u64);
} oom_kills SEC(".maps");

/* What did not fit in exits or oom_kills, by enum series. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SERIES_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* OOM victims between oom:mark_victim and their exit, by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct oom_victim);
} victims SEC(".maps");

/* Processes already counted. Two threads that exit at once may both see
 * signal->live at zero; the first to insert its process here counts it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct proc_key);
	__type(value, __u8);
} counted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_window);
} rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__type(value, struct event);
} events SEC(".maps");

/* Keep the enums in BTF so that bpf2go emits them as Go constants. */
const enum event_kind *unused_event_kind __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum series *unused_series __attribute__((unused));

/* Signal records sent per second over the node, at most. */
const volatile __u32 logs_per_second = 100;
/* The page size in kB, set by the loader. */
const volatile __u32 page_kb = 4;
/* Wake the reader once this much is waiting, or when no wakeup was sent
 * for wakeup_ns (ebr_wakeup.h). */
const volatile __u64 wakeup_bytes = 64 * 1024;
const volatile __u64 wakeup_ns = 10000000;
__u64 last_wakeup_ns;

static const __u64 zero;
static const __u8 one = 1;

/* Adds one to key's series in m, or to overflow when m is full. */
static __always_inline void bump(void *m, const void *key, __u32 series)
{
	__u64 *v = ebr_lookup_or_init(m, key, &zero);
	if (!v) {
		ebr_count(&counters, COUNTER_SERIES_FULL);
		v = bpf_map_lookup_elem(&overflow, &series);
		if (!v)
			return;
	}
	*v += 1;
}

/* Whether one more signal record fits in this second's window. Races
 * between CPUs make it approximate. */
static __always_inline bool rate_allows(void)
{
	__u32 k = 0;
	struct rate_window *w = bpf_map_lookup_elem(&rate, &k);
	if (!w)
		return false;
	__u64 second = bpf_ktime_get_ns() / NSEC_PER_SEC;
	if (w->second != second) {
		w->second = second;
		w->sent = 0;
	}
	if (w->sent >= logs_per_second)
		return false;
	__sync_fetch_and_add(&w->sent, 1);
	return true;
}

static __always_inline void submit(const struct task_struct *p, struct event *e)
{
	e->time_ns = bpf_ktime_get_ns();
	e->pid = BPF_CORE_READ(p, tgid);
	e->tid = BPF_CORE_READ(p, pid);
	BPF_CORE_READ_INTO(&e->comm, p, comm);
	__u64 flags = ebr_wakeup_flags(&events, wakeup_bytes, wakeup_ns, &last_wakeup_ns);
	if (bpf_ringbuf_output(&events, e, sizeof(*e), flags))
		ebr_count(&counters, COUNTER_RINGBUF_FULL);
}

/* Counts a process once, when its last thread exits with a failure. */
static __always_inline void on_group_exit(const struct task_struct *p, __u64 cgroup_id)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return;
	int code = BPF_CORE_READ(p, exit_code);
	struct exit_key key = {
		.cgroup_id = cgroup_id,
		.status = (code >> 8) & 0xff,
		.signal = code & 0x7f,
	};
	if (key.status == 0 && key.signal == 0)
		return;
	struct proc_key pk = {
		.start_time = BPF_CORE_READ(p, group_leader, start_time),
		.tgid = BPF_CORE_READ(p, tgid),
	};
	if (bpf_map_update_elem(&counted, &pk, &one, BPF_NOEXIST))
		return;
	bump(&exits, &key, SERIES_EXITS);
	if (!key.signal)
		return;
	if (!rate_allows()) {
		ebr_count(&counters, COUNTER_RATE_LIMITED);
		return;
	}
	struct event e = {
		.cgroup_id = cgroup_id,
		.kind = EVENT_SIGNALED,
		.signal = key.signal,
		.core_dumped = (code & 0x80) != 0,
	};
	submit(p, &e);
}

/* Sends the OOM record of a victim thread as it exits. */
static __always_inline void on_victim_exit(const struct task_struct *p, __u64 cgroup_id)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	struct oom_victim *v = bpf_map_lookup_elem(&victims, &tid);
	if (!v)
		return;
	/* A stale entry of a reused thread id has no OOM mm. */
	if (BPF_CORE_READ(p, signal, oom_mm)) {
		bump(&oom_kills, &cgroup_id, SERIES_OOM_KILLS);
		struct event e = {
			.cgroup_id = cgroup_id,
			.kind = EVENT_OOM_KILL,
			.oom = *v,
		};
		submit(p, &e);
	}
	bpf_map_delete_elem(&victims, &tid);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ebr_proc_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, flags) & PF_KTHREAD)
		return 0;
	__u64 cgroup_id = BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
	on_victim_exit(p, cgroup_id);
	on_group_exit(p, cgroup_id);
	return 0;
}

/* mm_struct before Linux 6.2 kept its RSS counters as atomics, not per-CPU
 * counters; the loader keeps the branch that matches the running kernel. */
struct mm_rss_stat___atomic {
	atomic_long_t count[NR_MM_COUNTERS];
} __attribute__((preserve_access_index));

struct mm_struct___atomic {
	struct mm_rss_stat___atomic rss_stat;
} __attribute__((preserve_access_index));

/* Page count to kB, as the kernel's mark_victim computes its figures. */
static __always_inline __u64 pages_kb(long pages)
{
	return pages > 0 ? (__u64)pages * page_kb : 0;
}

static __always_inline long mm_counter(const struct mm_struct *mm, int member)
{
	if (bpf_core_type_exists(struct mm_rss_stat___atomic))
		return BPF_CORE_READ((const struct mm_struct___atomic *)mm, rss_stat.count[member].counter);
	return BPF_CORE_READ(mm, rss_stat[member].count);
}

/* Notes a victim until it exits, by thread id. */
static __always_inline void note_victim(__u32 tid, const struct oom_victim *v)
{
	bpf_map_update_elem(&victims, &tid, v, BPF_ANY);
}

/* Fires in the allocating task, which need not be the victim. Since Linux
 * 6.8, and in stable updates such as Debian's 6.1.0-56, the tracepoint
 * passes the victim's task; the figures are read from it as the kernel's
 * own event computes them. */
SEC("tp_btf/mark_victim")
int BPF_PROG(ebr_oom_victim, struct task_struct *task, __u32 uid)
{
	struct oom_victim v = {.has_figures = 1, .uid = uid};
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (mm) {
		v.total_vm_kb = pages_kb(BPF_CORE_READ(mm, total_vm));
		v.anon_rss_kb = pages_kb(mm_counter(mm, MM_ANONPAGES));
		v.file_rss_kb = pages_kb(mm_counter(mm, MM_FILEPAGES));
		v.shmem_rss_kb = pages_kb(mm_counter(mm, MM_SHMEMPAGES));
		v.pgtables_kb = BPF_CORE_READ(mm, pgtables_bytes.counter) >> 10;
	}
	v.oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	note_victim(BPF_CORE_READ(task, pid), &v);
	return 0;
}

/* Older kernels pass only the victim's pid: no figures. */
SEC("tp_btf/mark_victim")
int BPF_PROG(ebr_oom_victim_pid, int pid)
{
	struct oom_victim v = {};
	note_victim(pid, &v);
	return 0;
}
