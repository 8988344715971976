//go:build ignore

// Scheduler metrics per cgroup v2: run-queue latency (wakeup or preemption
// to running), on-CPU time and involuntary context switches, aggregated in a
// per-CPU hash map that user space reads at each collection interval.
//
// sched_switch fires on every context switch of every CPU: it does one task
// lookup per side and one stats lookup per cgroup, and nothing else.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define EEXIST 17
#define TASK_RUNNING 0

/* Kernel-side losses, one per-CPU counter each. */
enum counter {
	COUNTER_CGROUPS_FULL = 0, /* a cgroup did not fit; counted in overflow */
	COUNTER_TASKS_FULL = 1,   /* a task did not fit; its next wait or run is not measured */
	COUNTER_COUNT = 2,
};

/* Bucket i counts [2^i, 2^(i+1)) µs; bucket 0 is [0, 2) µs; the last is open. */
#define SCHED_BUCKETS 24

struct sched_stats {
	__u64 oncpu_ns;
	__u64 involuntary;
	__u64 runq_count;
	__u64 runq_sum_ns;
	__u64 runq_buckets[SCHED_BUCKETS];
};

struct task_times {
	__u64 enqueued_ns; /* when it became runnable; 0: not waiting */
	__u64 oncpu_ns;    /* when it last started running; 0: unknown */
};

/* Per thread id, only while the task is runnable or running: a task that
 * blocks leaves the map and comes back when woken, so the map holds what
 * the run queues hold. A preallocated hash, never task storage: before
 * Linux 6.4, creating task storage here, under the run queue lock, can
 * deadlock against another task storage map being freed (seen on 6.1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct task_times);
} tasks SEC(".maps");

/* Sized by the loader from the receiver's config. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64); /* cgroup v2 id */
	__type(value, struct sched_stats);
} cgroups SEC(".maps");

/* What did not fit in cgroups. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sched_stats);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Keep the enum in BTF so that bpf2go emits it as Go constants. */
const enum counter *unused_counter __attribute__((unused));

static const struct sched_stats zero_stats;

static __always_inline void count(__u32 counter)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &counter);
	if (n)
		*n += 1;
}

/* Starts tracking task tid. */
static __always_inline void note(__u32 tid, __u64 enqueued_ns, __u64 oncpu_ns)
{
	struct task_times t = {.enqueued_ns = enqueued_ns, .oncpu_ns = oncpu_ns};
	if (bpf_map_update_elem(&tasks, &tid, &t, BPF_ANY))
		count(COUNTER_TASKS_FULL);
}

static __always_inline __u64 cgroup_of(struct task_struct *p)
{
	return BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
}

static __always_inline struct sched_stats *stats_of(__u64 id)
{
	struct sched_stats *s = bpf_map_lookup_elem(&cgroups, &id);
	if (s)
		return s;
	long err = bpf_map_update_elem(&cgroups, &id, &zero_stats, BPF_NOEXIST);
	if (err == 0 || err == -EEXIST) {
		s = bpf_map_lookup_elem(&cgroups, &id);
		if (s)
			return s;
	}
	count(COUNTER_CGROUPS_FULL);
	__u32 key = 0;
	return bpf_map_lookup_elem(&overflow, &key);
}

static __always_inline __u32 log2_bucket(__u32 v)
{
	__u32 r = 0;
	if (v >= 1 << 16) { v >>= 16; r += 16; }
	if (v >= 1 << 8) { v >>= 8; r += 8; }
	if (v >= 1 << 4) { v >>= 4; r += 4; }
	if (v >= 1 << 2) { v >>= 2; r += 2; }
	if (v >= 1 << 1) { r += 1; }
	return r < SCHED_BUCKETS ? r : SCHED_BUCKETS - 1;
}

static __always_inline void wakeup(struct task_struct *p)
{
	__u32 tid = p->pid;
	__u64 now = bpf_ktime_get_ns();
	struct task_times *t = bpf_map_lookup_elem(&tasks, &tid);
	if (t)
		t->enqueued_ns = now;
	else
		note(tid, now, 0);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(ebr_sched_wakeup, struct task_struct *p)
{
	wakeup(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(ebr_sched_wakeup_new, struct task_struct *p)
{
	wakeup(p);
	return 0;
}

/* prev_state is the state prev had when it called into the scheduler, or
 * TASK_RUNNING when it stays on the run queue: preempted, yielding, or (from
 * 6.13) woken by a pending signal. preempt is set when it was preempted in
 * any state. Both 6.1 and 6.18 pass it this way; the kernel counts the same
 * switches in nivcsw. */
SEC("tp_btf/sched_switch")
int BPF_PROG(ebr_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 prev_cgroup = 0;
	struct sched_stats *prev_stats = NULL;

	if (prev->pid) {
		__u32 tid = prev->pid;
		bool runnable = preempt || prev_state == TASK_RUNNING;
		struct task_times *t = bpf_map_lookup_elem(&tasks, &tid);
		__u64 start = t ? t->oncpu_ns : 0;
		if (t && runnable) {
			t->oncpu_ns = 0;
			t->enqueued_ns = now;
		} else if (t) {
			bpf_map_delete_elem(&tasks, &tid);
		} else if (runnable) {
			note(tid, now, 0);
		}
		if (start || runnable) {
			prev_cgroup = cgroup_of(prev);
			prev_stats = stats_of(prev_cgroup);
			if (prev_stats) {
				if (start)
					prev_stats->oncpu_ns += now - start;
				if (runnable)
					prev_stats->involuntary++;
			}
		}
	}

	if (next->pid) {
		__u32 tid = next->pid;
		struct task_times *t = bpf_map_lookup_elem(&tasks, &tid);
		if (!t) {
			note(tid, 0, now);
			return 0;
		}
		__u64 enqueued = t->enqueued_ns;
		t->enqueued_ns = 0;
		t->oncpu_ns = now;
		if (!enqueued || enqueued > now)
			return 0;
		__u64 cgroup = cgroup_of(next);
		struct sched_stats *s = cgroup == prev_cgroup && prev_stats ? prev_stats : stats_of(cgroup);
		if (!s)
			return 0;
		__u64 delay = now - enqueued;
		__u64 us = delay / 1000;
		s->runq_count++;
		s->runq_sum_ns += delay;
		s->runq_buckets[log2_bucket(us > 0xffffffff ? 0xffffffff : us)]++;
	}
	return 0;
}
