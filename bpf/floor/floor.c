//go:build ignore

// Floor programs for make bench-system: what the receiver's hooks cost
// before the receiver does any work. floor1_* only return 0; floor2_* are
// the same hooks where each data-carrying send/recv submits one 64-byte
// ring buffer record with batched wakeups. floor1_sched_* only return 0 on
// the hooks of bpf/schedstat, for its benchmark.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "Dual MIT/GPL";

struct floor_event {
	__u64 ts;
	__u64 cookie;
	__u32 pid;
	__s32 len;
	__u8 pad[40];
};

#define RINGBUF_SIZE (1 << 20)
// Wake the reader only past this many unread bytes; otherwise it polls.
#define WAKEUP_THRESHOLD (RINGBUF_SIZE / 8)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RINGBUF_SIZE);
	__type(value, struct floor_event);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void submit(void *sk, int ret)
{
	if (ret <= 0)
		return;
	struct floor_event e = {
		.ts = bpf_ktime_get_ns(),
		.cookie = (__u64)sk,
		.pid = bpf_get_current_pid_tgid() >> 32,
		.len = ret,
	};
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > WAKEUP_THRESHOLD ? BPF_RB_FORCE_WAKEUP
											: BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, &e, sizeof(e), flags)) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			(*n)++;
	}
}

#define EMPTY(prefix, hook)               \
	SEC("tp_btf/" #hook)              \
	int prefix##_##hook(void *ctx)    \
	{                                 \
		return 0;                 \
	}

#define EMPTY_ALL(prefix)                          \
	EMPTY(prefix, sys_enter)                   \
	EMPTY(prefix, inet_sock_set_state)         \
	EMPTY(prefix, tcp_destroy_sock)            \
	EMPTY(prefix, tcp_retransmit_skb)          \
	EMPTY(prefix, tcp_send_reset)              \
	EMPTY(prefix, tcp_receive_reset)           \
	EMPTY(prefix, tcp_probe)                   \
	EMPTY(prefix, cgroup_mkdir)                \
	EMPTY(prefix, cgroup_rmdir)

EMPTY_ALL(f1)
EMPTY(f1, sock_send_length)
EMPTY(f1, sock_recv_length)

EMPTY_ALL(f2)

SEC("tp_btf/sock_send_length")
int BPF_PROG(f2_sock_send_length, struct sock *sk, int ret, int flags)
{
	submit(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(f2_sock_recv_length, struct sock *sk, int ret, int flags)
{
	submit(sk, ret);
	return 0;
}

EMPTY(floor1, sched_wakeup)
EMPTY(floor1, sched_wakeup_new)
EMPTY(floor1, sched_switch)
