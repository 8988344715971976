//go:build ignore

// TCP connection metrics, aggregated per flow in a per-CPU hash map and read
// by user space at each collection interval. Tracepoints only: no kprobes,
// no fentry.
//
// A flow is (owner cgroup, direction, peer address, peer port or local
// listening port). The owner cgroup is fixed when the connection opens and
// kept per socket in the conns map, so events that fire in softirq or timer
// context (retransmits, resets, RTT updates) count for the socket's owner,
// not for whatever task is current.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "ebr_maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2
#define ETIMEDOUT 110
#define ECONNREFUSED 111
#define ECONNRESET 104

enum direction {
	DIRECTION_UNKNOWN = 0, /* first seen already established */
	DIRECTION_CLIENT = 1,
	DIRECTION_SERVER = 2,
	DIRECTION_COUNT = 3,
};

enum outcome {
	OUTCOME_ESTABLISHED = 0,
	OUTCOME_REFUSED = 1,
	OUTCOME_TIMED_OUT = 2,
	OUTCOME_RESET = 3,
	OUTCOME_FAILED = 4,
	OUTCOME_COUNT = 5,
};

/* Kernel-side losses, one per-CPU counter each. */
enum counter {
	COUNTER_CONNS_FULL = 0,     /* a connection could not be tracked */
	COUNTER_FLOWS_FULL = 1,     /* a flow did not fit; counted in overflow */
	COUNTER_CONNS_INSERTED = 2, /* conns entries made */
	COUNTER_CONNS_DELETED = 3,  /* conns entries removed */
	COUNTER_COUNT = 4,
};

struct tcp_flow {
	__u64 cgroup_id;     /* 0: no owning socket */
	__u8 peer_addr[16];  /* IPv6, or IPv4-mapped IPv6 */
	__u16 peer_port;     /* client side only; never an ephemeral port */
	__u16 local_port;    /* server side: the listening port */
	__u8 direction;      /* enum direction */
	__u8 pad[3];
};

struct tcp_flow_stats {
	__u64 opened[OUTCOME_COUNT];
	__u64 adopted; /* established before we saw it open */
	__u64 closed;  /* left ESTABLISHED, after being opened or adopted */
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 retransmits;
	__u64 resets_sent;
	__u64 resets_received;
	__u64 rtt_count;
	__u64 rtt_sum_us;
	__u64 rtt_buckets[EBR_BUCKETS];
};

struct tcp_conn {
	struct tcp_flow key;
	__u64 rtt_sampled_ns; /* when srtt was last put in the histogram */
	__u8 established;     /* its leaving ESTABLISHED is counted as closed */
	__u8 pad[7];
};

/* Sizes are set by the loader from the receiver's config. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct tcp_conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tcp_flow);
	__type(value, struct tcp_flow_stats);
} flows SEC(".maps");

/* What did not fit in flows, by direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DIRECTION_COUNT);
	__type(key, __u32);
	__type(value, struct tcp_flow_stats);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Keep the enums in BTF so that bpf2go emits them as Go constants. */
const enum direction *unused_direction __attribute__((unused));
const enum outcome *unused_outcome __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));

/* Minimum time between two srtt samples of one connection. */
const volatile __u64 rtt_sample_interval_ns = 1000000000ULL;

static const struct tcp_flow_stats zero_stats;

static __always_inline bool is_tcp(const struct sock *sk)
{
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return false;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

static __always_inline struct tcp_flow_stats *flow_stats(const struct tcp_flow *key)
{
	struct tcp_flow_stats *s = ebr_lookup_or_init(&flows, key, &zero_stats);
	if (s)
		return s;
	ebr_count(&counters, COUNTER_FLOWS_FULL);
	__u32 dir = key->direction;
	return bpf_map_lookup_elem(&overflow, &dir);
}

static __always_inline void read_peer(const struct sock *sk, struct tcp_flow *key)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		__u32 addr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		key->peer_addr[10] = 0xff;
		key->peer_addr[11] = 0xff;
		__builtin_memcpy(&key->peer_addr[12], &addr, sizeof(addr));
		return;
	}
	BPF_CORE_READ_INTO(&key->peer_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
}

static __always_inline __u64 sock_cgroup_id(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* A connection starts being tracked when it opens. */
static __always_inline void track(const struct sock *sk, __u8 direction)
{
	struct tcp_conn c = {};
	c.key.direction = direction;
	read_peer(sk, &c.key);
	if (direction == DIRECTION_CLIENT) {
		/* connect(2) runs in the caller's context. */
		c.key.cgroup_id = bpf_get_current_cgroup_id();
		c.key.peer_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	} else {
		/* A child socket keeps its listener's cgroup. */
		c.key.cgroup_id = sock_cgroup_id(sk);
		c.key.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	}
	__u64 id = (__u64)sk;
	int err = bpf_map_update_elem(&conns, &id, &c, BPF_NOEXIST); /* int: see ebr_lookup_or_init */
	if (err == -EEXIST) /* a reused socket whose destroy we missed */
		err = bpf_map_update_elem(&conns, &id, &c, BPF_EXIST);
	else if (!err)
		ebr_count(&counters, COUNTER_CONNS_INSERTED);
	if (err)
		ebr_count(&counters, COUNTER_CONNS_FULL);
}

/* The connection of sk. One that was open before the programs were loaded is
 * adopted: its owner comes from the socket, its direction stays unknown. */
static __always_inline struct tcp_conn *conn_of(const struct sock *sk, int state)
{
	__u64 id = (__u64)sk;
	struct tcp_conn *c = bpf_map_lookup_elem(&conns, &id);
	if (c)
		return c;
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT && state != TCP_FIN_WAIT1 &&
	    state != TCP_FIN_WAIT2 && state != TCP_CLOSING && state != TCP_LAST_ACK)
		return NULL;

	struct tcp_conn fresh = {};
	fresh.key.direction = DIRECTION_UNKNOWN;
	fresh.key.cgroup_id = sock_cgroup_id(sk);
	read_peer(sk, &fresh.key);
	fresh.established = state == TCP_ESTABLISHED;
	if (bpf_map_update_elem(&conns, &id, &fresh, BPF_NOEXIST)) {
		ebr_count(&counters, COUNTER_CONNS_FULL);
		return NULL;
	}
	ebr_count(&counters, COUNTER_CONNS_INSERTED);
	c = bpf_map_lookup_elem(&conns, &id);
	if (!c)
		return NULL;
	if (fresh.established) {
		struct tcp_flow_stats *s = flow_stats(&c->key);
		if (s)
			s->adopted++;
	}
	return c;
}

static __always_inline __u8 failure_outcome(const struct sock *sk)
{
	switch (BPF_CORE_READ(sk, sk_err)) {
	case ECONNREFUSED:
		return OUTCOME_REFUSED;
	case ETIMEDOUT:
		return OUTCOME_TIMED_OUT;
	case ECONNRESET:
		return OUTCOME_RESET;
	default:
		return OUTCOME_FAILED;
	}
}

static __always_inline void on_state(const struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		track(sk, DIRECTION_CLIENT);
		return;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		track(sk, DIRECTION_SERVER);
		return;
	}
	if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE)
		return;

	struct tcp_conn *c = conn_of(sk, oldstate);
	if (!c)
		return;
	/* Before Linux 6.x a child socket enters SYN_RECV before it has its
	 * peer's address (inet_csk_clone_lock sets the state first): read the
	 * peer again once the handshake is done. */
	if (c->key.direction == DIRECTION_SERVER && oldstate == TCP_SYN_RECV)
		read_peer(sk, &c->key);
	struct tcp_flow_stats *s = flow_stats(&c->key);
	if (s) {
		if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
			if (newstate == TCP_ESTABLISHED)
				s->opened[OUTCOME_ESTABLISHED]++;
			else if (newstate == TCP_CLOSE)
				s->opened[failure_outcome(sk) % OUTCOME_COUNT]++;
		} else if (oldstate == TCP_ESTABLISHED && c->established) {
			s->closed++;
		}
	}
	if (newstate == TCP_ESTABLISHED)
		c->established = 1;
	else if (oldstate == TCP_ESTABLISHED)
		c->established = 0;
	/* The entry outlives TCP_CLOSE: an abortive close sends its reset
	 * after the state change. tcp_destroy_sock removes it. */
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ebr_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (is_tcp(sk))
		on_state(sk, oldstate, newstate);
	return 0;
}

static __always_inline struct tcp_flow_stats *stats_of(const struct sock *sk)
{
	struct tcp_conn *c = conn_of(sk, BPF_CORE_READ(sk, __sk_common.skc_state));
	if (!c)
		return NULL;
	return flow_stats(&c->key);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ebr_sock_send, struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || !is_tcp(sk))
		return 0;
	struct tcp_flow_stats *s = stats_of(sk);
	if (s)
		s->bytes_sent += ret;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ebr_sock_recv, struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || (flags & MSG_PEEK) || !is_tcp(sk))
		return 0;
	struct tcp_flow_stats *s = stats_of(sk);
	if (s)
		s->bytes_received += ret;
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(ebr_tcp_destroy, struct sock *sk)
{
	__u64 id = (__u64)sk;
	if (!bpf_map_delete_elem(&conns, &id))
		ebr_count(&counters, COUNTER_CONNS_DELETED);
	return 0;
}

/* One skb may carry several segments (TSO): count them all. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(ebr_tcp_retrans, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_flow_stats *s = stats_of(sk);
	if (!s)
		return 0;
	const struct tcp_skb_cb *cb = (const void *)&skb->cb[0];
	__u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
	s->retransmits += segs ? segs : 1;
	return 0;
}

/* sk is NULL when the kernel answers a segment that no socket owns, and a
 * timewait or request socket otherwise holds no owner: both count for the
 * node (cgroup 0). */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(ebr_tcp_rst_tx, const struct sock *sk)
{
	struct tcp_flow_stats *s = NULL;
	if (sk) {
		int state = BPF_CORE_READ(sk, __sk_common.skc_state);
		if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
			s = stats_of(sk);
	}
	if (!s) {
		struct tcp_flow node = {};
		s = flow_stats(&node);
	}
	if (s)
		s->resets_sent++;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(ebr_tcp_rst_rx, struct sock *sk)
{
	struct tcp_flow_stats *s = stats_of(sk);
	if (s)
		s->resets_received++;
	return 0;
}

/* tcp_probe fires for every segment received on an established socket; the
 * connection's srtt is sampled at most once per rtt_sample_interval_ns. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(ebr_tcp_probe, struct sock *sk)
{
	struct tcp_conn *c = conn_of(sk, BPF_CORE_READ(sk, __sk_common.skc_state));
	if (!c)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (c->rtt_sampled_ns && now - c->rtt_sampled_ns < rtt_sample_interval_ns)
		return 0;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (!srtt_us)
		return 0;
	c->rtt_sampled_ns = now;
	struct tcp_flow_stats *s = flow_stats(&c->key);
	if (!s)
		return 0;
	s->rtt_count++;
	s->rtt_sum_us += srtt_us;
	s->rtt_buckets[ebr_bucket(srtt_us)]++;
	return 0;
}
