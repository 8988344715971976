//go:build ignore

// Learns cgroup v2 paths when cgroups are made and removed, so that data
// from a cgroup that is already gone can still be attributed to its path.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define PATH_LEN 512

enum cgroup_op {
	CGROUP_OP_MKDIR = 0,
	CGROUP_OP_RMDIR = 1,
};

struct cgroup_event {
	__u64 id;
	__u32 op;      /* enum cgroup_op */
	__u32 path_len; /* bytes of path, without the NUL */
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__type(value, struct cgroup_event);
} events SEC(".maps");

/* Events that did not fit in the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* cgroup v2 is hierarchy 0, as the 0:: line of /proc/<pid>/cgroup shows;
 * v1 hierarchies of a hybrid host have their own ids. */
#define DFL_HIERARCHY_ID 0

const enum cgroup_op *unused_cgroup_op __attribute__((unused));

static __always_inline void emit(struct cgroup *cgrp, const char *path, __u32 op)
{
	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != DFL_HIERARCHY_ID)
		return;
	struct cgroup_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			*n += 1;
		return;
	}
	e->id = BPF_CORE_READ(cgrp, kn, id);
	e->op = op;
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
	e->path_len = n > 0 ? n - 1 : 0;
	/* cgroups are made far less often than requests: a wakeup per event
	 * costs nothing that matters and keeps the path fresh. */
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(ebr_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	emit(cgrp, path, CGROUP_OP_MKDIR);
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(ebr_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	emit(cgrp, path, CGROUP_OP_RMDIR);
	return 0;
}
