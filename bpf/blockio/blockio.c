//go:build ignore

// Block I/O metrics: completed requests, bytes and latency per (cgroup,
// disk, op), aggregated in a per-CPU hash map and read by user space at each
// collection interval. Tracepoints only: no kprobes, no fentry.
//
// A request counts for the cgroup v2 of the task that submitted it: the
// current task at block_rq_insert if the request is queued (issued later,
// maybe from kblockd), else at block_rq_issue. That is the container that
// did the I/O when it submits it itself (direct I/O, reads that miss the
// page cache). I/O that the kernel submits on a task's behalf, such as page
// cache writeback, counts for that kernel thread's cgroup (the root). Only
// reads and writes are counted; flushes, discards, write-zeroes and
// driver-private requests are ignored.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ebr_maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define REQ_OP_MASK 0xff /* (1 << REQ_OP_BITS) - 1 */
#define MINORBITS 20

/* Not "enum op": vmlinux.h has OP_READ and OP_WRITE already. */
enum io_op {
	IO_OP_READ = 0,
	IO_OP_WRITE = 1,
	IO_OP_COUNT = 2,
};

/* Kernel-side losses, one per-CPU counter each. */
enum counter {
	COUNTER_INFLIGHT_FULL = 0,     /* a request could not be tracked */
	COUNTER_SERIES_FULL = 1,       /* a series did not fit; counted in overflow */
	COUNTER_INFLIGHT_INSERTED = 2, /* inflight entries made */
	COUNTER_INFLIGHT_DELETED = 3,  /* inflight entries removed */
	COUNTER_COUNT = 4,
};

struct io_key {
	__u64 cgroup_id;
	__u32 dev; /* the disk: major << 20 | first minor */
	__u8 op;   /* enum io_op */
	__u8 pad[3];
};

struct io_stats {
	__u64 count; /* requests completed */
	__u64 bytes; /* bytes completed, failed ones included, as in /proc/diskstats */
	__u64 latency_sum_ns;
	__u64 latency_buckets[EBR_BUCKETS];
};

/* A request between issue and its last completion. */
struct io_req {
	struct io_key key;
	__u64 issued_ns;   /* 0: inserted, not issued yet */
	__u32 remaining; /* bytes not completed yet */
	__u32 pad;
};

/* Sizes are set by the loader from the receiver's config. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); /* struct request * */
	__type(value, struct io_req);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct io_key);
	__type(value, struct io_stats);
} series SEC(".maps");

/* What did not fit in series, by op. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IO_OP_COUNT);
	__type(key, __u32);
	__type(value, struct io_stats);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Keep the enums in BTF so that bpf2go emits them as Go constants. */
const enum io_op *unused_op __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));

static const struct io_stats zero_stats;

static __always_inline struct io_stats *series_stats(const struct io_key *key)
{
	struct io_stats *s = ebr_lookup_or_init(&series, key, &zero_stats);
	if (s)
		return s;
	ebr_count(&counters, COUNTER_SERIES_FULL);
	__u32 op = key->op;
	return bpf_map_lookup_elem(&overflow, &op);
}

static __always_inline __u8 op_of(const struct request *rq, bool *ok)
{
	__u32 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
	*ok = op == REQ_OP_READ || op == REQ_OP_WRITE;
	return op == REQ_OP_READ ? IO_OP_READ : IO_OP_WRITE;
}

/* Starts tracking rq, owned by the current task's cgroup, unless it is
 * tracked already. */
static __always_inline void track(const struct request *rq)
{
	bool ok;
	struct io_req r = {};
	r.key.op = op_of(rq, &ok);
	if (!ok)
		return;
	r.key.cgroup_id = bpf_get_current_cgroup_id();
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
	if (disk)
		r.key.dev = (BPF_CORE_READ(disk, major) << MINORBITS) | BPF_CORE_READ(disk, first_minor);
	__u64 id = (__u64)rq;
	int err = bpf_map_update_elem(&inflight, &id, &r, BPF_NOEXIST); /* int: see ebr_lookup_or_init */
	if (!err)
		ebr_count(&counters, COUNTER_INFLIGHT_INSERTED);
	else if (err != -EEXIST)
		ebr_count(&counters, COUNTER_INFLIGHT_FULL);
}

/* A request is inserted into a queue when it cannot be issued at once, such
 * as when a task flushes its plug before it sleeps: it is still the
 * submitting task's context, while the issue comes later from kblockd. A
 * request inserted again on requeue keeps its owner. */
SEC("tp_btf/block_rq_insert")
int BPF_PROG(ebr_block_rq_insert, struct request *rq)
{
	track(rq);
	return 0;
}

/* A request merged into another before its issue is freed. */
SEC("tp_btf/block_rq_merge")
int BPF_PROG(ebr_block_rq_merge, struct request *rq)
{
	__u64 id = (__u64)rq;
	if (!bpf_map_delete_elem(&inflight, &id))
		ebr_count(&counters, COUNTER_INFLIGHT_DELETED);
	return 0;
}

/* A request issued without being inserted belongs to the current task. A
 * requeued request is issued again: its time and size start over. */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(ebr_block_rq_issue, struct request *rq)
{
	track(rq);
	__u64 id = (__u64)rq;
	struct io_req *r = bpf_map_lookup_elem(&inflight, &id);
	if (!r)
		return 0;
	r->remaining = BPF_CORE_READ(rq, __data_len);
	r->issued_ns = bpf_ktime_get_ns();
	return 0;
}

/* A request may complete in parts; it is done when nr_bytes covers what
 * remains, and then gives one latency sample. */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(ebr_block_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 id = (__u64)rq;
	struct io_req *r = bpf_map_lookup_elem(&inflight, &id);
	if (!r)
		return 0;
	if (!r->issued_ns) /* ended before its issue, such as on an error */
		goto done;
	struct io_stats *s = series_stats(&r->key);
	if (s)
		s->bytes += nr_bytes;
	if (nr_bytes < r->remaining) {
		r->remaining -= nr_bytes;
		return 0;
	}
	if (s) {
		__u64 ns = bpf_ktime_get_ns() - r->issued_ns;
		__u64 us = ns / 1000;
		s->count++;
		s->latency_sum_ns += ns;
		s->latency_buckets[ebr_bucket(us)]++;
	}
done:
	if (!bpf_map_delete_elem(&inflight, &id))
		ebr_count(&counters, COUNTER_INFLIGHT_DELETED);
	return 0;
}
