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
#include "ebr_maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define TASK_RUNNING 0

/* Kernel-side losses, one per-CPU counter each. */
enum counter {
	COUNTER_CGROUPS_FULL = 0, /* a cgroup did not fit; counted in overflow */
	COUNTER_TASKS_FULL = 1,   /* a task did not fit; its next wait or run is not measured */
	COUNTER_COUNT = 2,
};

struct sched_stats {
	__u64 oncpu_ns;
	__u64 involuntary;
	__u64 runq_count;
	__u64 runq_sum_ns;
	__u64 runq_buckets[EBR_BUCKETS];
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

/* Starts tracking task tid. */
static __always_inline void note(__u32 tid, __u64 enqueued_ns, __u64 oncpu_ns)
{
	struct task_times t = {.enqueued_ns = enqueued_ns, .oncpu_ns = oncpu_ns};
	if (bpf_map_update_elem(&tasks, &tid, &t, BPF_ANY))
		ebr_count(&counters, COUNTER_TASKS_FULL);
}

static __always_inline __u64 cgroup_of(struct task_struct *p)
{
	return BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
}

static __always_inline struct sched_stats *stats_of(__u64 id)
{
	struct sched_stats *s = ebr_lookup_or_init(&cgroups, &id, &zero_stats);
	if (s)
		return s;
	ebr_count(&counters, COUNTER_CGROUPS_FULL);
	__u32 key = 0;
	return bpf_map_lookup_elem(&overflow, &key);
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
		s->runq_buckets[ebr_bucket(us)]++;
	}
	return 0;
}
