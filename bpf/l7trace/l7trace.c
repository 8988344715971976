//go:build ignore

// Application-protocol (L7) capture from syscalls, one set of hooks for every
// protocol. sys_enter records, per thread, where the data of a read- or
// write-like syscall lives; the socket length tracepoints, which fire inside
// that syscall with the socket and the byte count, copy a bounded prefix of
// it to a ring buffer. A classifier names each TCP connection's protocol
// from its first bytes; only connections of a known protocol are streamed,
// each record tagged with it. The protocol is kept in socket-local storage,
// which the kernel frees with the socket.
//
// Kernels before 6.3 lack the socket length tracepoints. There (at_exit)
// sys_exit takes their place: it finds the socket behind the syscall's fd
// in the task's file table, and keeps the protocol in a hash keyed by the
// socket, since bpf_sk_storage_get takes no pointer read from memory. The
// close hook deletes it.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "ebr_maps.h"
#include "ebr_wakeup.h"
#include "syscalls.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2
#define PREFIX_MAX 512 /* a power of two */

enum l7_dir {
	DIR_INGRESS = 0, /* bytes the process received */
	DIR_EGRESS = 1,  /* bytes the process sent */
	DIR_CLOSE = 2,   /* the connection closed; no data */
};

/* What the classifier named a connection. User space has a parser for each
 * value but the first and the last. */
enum l7_protocol {
	L7_UNCLASSIFIED = 0, /* no data seen yet */
	L7_HTTP1 = 1,        /* HTTP/1.0 and HTTP/1.1 */
	L7_NONE = 255,       /* none the classifier knows: not streamed */
};

enum l7_counter {
	L7_COUNTER_EVENTS = 0,    /* records submitted */
	L7_COUNTER_LOST = 1,      /* records the ring buffer had no room for */
	L7_COUNTER_NO_BUFFER = 2, /* data whose user buffer was not known */
	L7_COUNTER_COUNT = 3,
};

struct l7_event {
	__u64 ts_ns;      /* when the syscall moved its bytes, or the close */
	__u64 start_ns;   /* when the syscall began; 0: not known */
	__u64 sock;       /* struct sock *: the connection's identity */
	__u64 cgroup_id;  /* the owner, fixed at the connection's first data */
	__u32 pid;
	__u32 size;       /* bytes the syscall moved */
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 captured;   /* bytes of data that follow */
	__u8 dir;         /* enum l7_dir */
	__u8 protocol;    /* enum l7_protocol */
	char comm[16];    /* the process's executable name */
	__u8 data[PREFIX_MAX];
};

struct conn_state {
	__u64 cgroup_id;
	__u8 protocol; /* enum l7_protocol */
	__u8 pad[7];
};

/* Where a syscall's data lives, and when it began, recorded at sys_enter. */
struct syscall_args {
	__u64 buf;      /* the buffer, or the first struct iovec */
	__u64 enter_ns; /* the syscall's start */
	__u32 nr;       /* the syscall number */
	__s32 fd;       /* the file; set only at_exit */
	__u8 is_iov;    /* 0: buf; 1, 2: buf is an iovec; 3: no user buffer */
	__u8 peek;      /* a recv with MSG_PEEK; set only at_exit */
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct syscall_args);
} args SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* The at_exit path's conn_state, keyed by struct sock *. Load sizes it to
 * one entry where the socket storage above is used. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} exit_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L7_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Bytes of each syscall copied, at most PREFIX_MAX. */
const volatile __u32 capture_len = 256;
/* Wake the reader once this much is waiting, or when no wakeup was sent
 * for wakeup_ns (ebr_wakeup.h). */
const volatile __u64 wakeup_bytes = 256 * 1024;
const volatile __u64 wakeup_ns = 1000000;
__u64 last_wakeup_ns;
/* The process whose connections are never traced, the collector's own, so
 * that its exports do not become spans; 0: none. With ignore_cgroup set,
 * the cgroup it runs in is not traced either (the collector's container),
 * as learnt from its syscalls into ignored_cgroup. */
const volatile __u32 ignore_tgid;
const volatile __u8 ignore_cgroup;
__u64 ignored_cgroup;
/* Capture at sys_exit instead of the socket length tracepoints. */
const volatile __u8 at_exit;

const enum l7_dir *unused_l7_dir __attribute__((unused));
const enum l7_protocol *unused_l7_protocol __attribute__((unused));
const enum l7_counter *unused_l7_counter __attribute__((unused));

SEC("tp_btf/sys_enter")
int BPF_PROG(ebr_l7_enter, struct pt_regs *regs, long id)
{
	/* Every syscall of every process passes here: decide on the number
	 * first. */
	__u8 is_iov;
	switch (id) {
	case NR_read:
	case NR_write:
	case NR_sendto:
	case NR_recvfrom:
		is_iov = 0;
		break;
	case NR_readv:
	case NR_writev:
		is_iov = 1;
		break;
	case NR_sendmsg:
	case NR_recvmsg:
		is_iov = 2;
		break;
	case NR_sendfile:
		is_iov = 3; /* file data: only its length matters */
		break;
	default:
		return 0;
	}
	__u64 tid = bpf_get_current_pid_tgid();
	if (ignore_tgid && tid >> 32 == ignore_tgid) {
		if (ignore_cgroup)
			ignored_cgroup = bpf_get_current_cgroup_id();
		return 0;
	}
	struct syscall_args a = {.nr = id, .is_iov = is_iov, .enter_ns = bpf_ktime_get_ns()};
	a.buf = is_iov == 3 ? 0 : PT_REGS_PARM2_CORE(regs);
	if (at_exit) {
		a.fd = PT_REGS_PARM1_CORE_SYSCALL(regs);
		if (id == NR_recvfrom)
			a.peek = (PT_REGS_PARM4_CORE_SYSCALL(regs) & MSG_PEEK) != 0;
		else if (id == NR_recvmsg)
			a.peek = (PT_REGS_PARM3_CORE_SYSCALL(regs) & MSG_PEEK) != 0;
	}
	if (is_iov == 2) {
		struct user_msghdr msg;
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a.buf))
			return 0;
		a.buf = (__u64)msg.msg_iov;
	}
	bpf_map_update_elem(&args, &tid, &a, BPF_ANY);
	return 0;
}

/* What sys_enter recorded of the running syscall, or NULL. */
static __always_inline struct syscall_args *current_args(long nr)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct syscall_args *a = bpf_map_lookup_elem(&args, &tid);
	if (!a || a->nr != nr)
		return NULL;
	return a;
}

/* The user buffer of a, if any. *expected is set when the syscall has no
 * user buffer by nature. */
static __always_inline __u64 user_buffer(struct syscall_args *a, __u64 *len_cap, bool *expected)
{
	if (!a)
		return 0;
	if (a->is_iov == 3) {
		*expected = true;
		return 0;
	}
	if (!a->is_iov)
		return a->buf;
	struct iovec iov;
	if (bpf_probe_read_user(&iov, sizeof(iov), (void *)a->buf))
		return 0;
	if (iov.iov_len < *len_cap)
		*len_cap = iov.iov_len;
	return (__u64)iov.iov_base;
}

static __always_inline bool looks_like_http1(const __u8 *p)
{
	/* Request methods of RFC 9110 and PATCH, or a status line. */
	if (p[0] == 'G' && p[1] == 'E' && p[2] == 'T' && p[3] == ' ')
		return true;
	if (p[0] == 'P' && p[1] == 'O' && p[2] == 'S' && p[3] == 'T')
		return true;
	if (p[0] == 'P' && p[1] == 'U' && p[2] == 'T' && p[3] == ' ')
		return true;
	if (p[0] == 'H' && p[1] == 'E' && p[2] == 'A' && p[3] == 'D')
		return true;
	if (p[0] == 'D' && p[1] == 'E' && p[2] == 'L' && p[3] == 'E')
		return true;
	if (p[0] == 'P' && p[1] == 'A' && p[2] == 'T' && p[3] == 'C')
		return true;
	if (p[0] == 'O' && p[1] == 'P' && p[2] == 'T' && p[3] == 'I')
		return true;
	if (p[0] == 'C' && p[1] == 'O' && p[2] == 'N' && p[3] == 'N')
		return true;
	if (p[0] == 'T' && p[1] == 'R' && p[2] == 'A' && p[3] == 'C')
		return true;
	return p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P';
}

/* The protocol of a connection whose first captured bytes are p[0:len]. */
static __always_inline __u8 classify(const __u8 *p, __u64 len)
{
	if (len >= 4 && looks_like_http1(p))
		return L7_HTTP1;
	return L7_NONE;
}

/* Whether the current task is the collector's, whose connections are
 * never traced. */
static __always_inline bool ignored(void)
{
	if (ignore_tgid && bpf_get_current_pid_tgid() >> 32 == ignore_tgid)
		return true;
	return ignore_cgroup && ignored_cgroup && bpf_get_current_cgroup_id() == ignored_cgroup;
}

/* Field f of sk: a load where the verifier knows sk's type (a tracepoint's
 * argument), else a probe read (a pointer the at_exit path read from the
 * file table). */
#define SK(trusted, sk, f) ((trusted) ? (sk)->f : BPF_CORE_READ(sk, f))

static __always_inline void fill_tuple(struct l7_event *e, struct sock *sk, bool trusted)
{
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
	if (SK(trusted, sk, __sk_common.skc_family) == AF_INET) {
		__u32 l = SK(trusted, sk, __sk_common.skc_rcv_saddr);
		__u32 r = SK(trusted, sk, __sk_common.skc_daddr);
		e->local_addr[10] = e->local_addr[11] = 0xff;
		e->remote_addr[10] = e->remote_addr[11] = 0xff;
		__builtin_memcpy(&e->local_addr[12], &l, 4);
		__builtin_memcpy(&e->remote_addr[12], &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	e->local_port = SK(trusted, sk, __sk_common.skc_num);
	e->remote_port = bpf_ntohs(SK(trusted, sk, __sk_common.skc_dport));
}

static __always_inline void submit(struct l7_event *e, __u32 size)
{
	__u64 flags = ebr_wakeup_flags(&events, wakeup_bytes, wakeup_ns, &last_wakeup_ns);
	if (bpf_ringbuf_output(&events, e, size, flags)) {
		ebr_count(&counters, L7_COUNTER_LOST);
		return;
	}
	ebr_count(&counters, L7_COUNTER_EVENTS);
}

/* The state of sk, made on its first data: in its socket storage where
 * sk is trusted, else in exit_conns. */
static __always_inline struct conn_state *state_of(struct sock *sk, bool trusted)
{
	if (trusted)
		return bpf_sk_storage_get(&conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	__u64 key = (__u64)sk;
	struct conn_state *st = bpf_map_lookup_elem(&exit_conns, &key);
	if (st)
		return st;
	struct conn_state fresh = {};
	bpf_map_update_elem(&exit_conns, &key, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&exit_conns, &key);
}

/* Records ret bytes that moved through sk in direction dir, in the syscall
 * that a describes (NULL: not known). */
static __always_inline void on_data(struct sock *sk, bool trusted, struct syscall_args *a, int ret, __u8 dir)
{
	if (!sk || SK(trusted, sk, sk_protocol) != IPPROTO_TCP)
		return;
	__u16 family = SK(trusted, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct conn_state *st = state_of(sk, trusted);
	if (!st || st->protocol == L7_NONE)
		return;
	if (st->protocol == L7_UNCLASSIFIED && ignored()) {
		st->protocol = L7_NONE;
		return;
	}

	__u32 zero = 0;
	struct l7_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return;
	__u64 len = ret;
	if (len > capture_len)
		len = capture_len;
	bool expected = false;
	__u64 buf = user_buffer(a, &len, &expected);
	if (!buf) {
		len = 0;
		if (st->protocol == L7_UNCLASSIFIED)
			return; /* cannot judge yet */
		if (!expected)
			ebr_count(&counters, L7_COUNTER_NO_BUFFER);
	}
	if (len > PREFIX_MAX)
		len = PREFIX_MAX;
	if (len && bpf_probe_read_user(e->data, len, (void *)buf))
		len = 0;

	if (st->protocol == L7_UNCLASSIFIED) {
		st->protocol = classify(e->data, len);
		if (st->protocol == L7_NONE)
			return;
		st->cgroup_id = bpf_get_current_cgroup_id();
	}
	e->ts_ns = bpf_ktime_get_ns();
	/* A write delivers its bytes before this point: the peer may read
	 * them, answer, and have the answer read here before the writer gets
	 * here. Only its start is sure to come before the answer. */
	e->start_ns = a ? a->enter_ns : 0;
	e->sock = (__u64)sk;
	e->cgroup_id = st->cgroup_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->size = ret;
	e->captured = len;
	e->dir = dir;
	e->protocol = st->protocol;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	fill_tuple(e, sk, trusted);
	__u32 n = len;
	if (n > PREFIX_MAX)
		n = PREFIX_MAX;
	submit(e, offsetof(struct l7_event, data) + n);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ebr_l7_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		on_data(sk, true, current_args(current_syscall_nr()), ret, DIR_EGRESS);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ebr_l7_recv, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && !(flags & MSG_PEEK))
		on_data(sk, true, current_args(current_syscall_nr()), ret, DIR_INGRESS);
	return 0;
}

#define S_IFMT 0170000
#define S_IFSOCK 0140000

/* The socket behind the current task's file descriptor fd, or NULL. */
static __always_inline struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/* at_exit: a data syscall's end stands in for the socket length
 * tracepoints. */
SEC("tp_btf/sys_exit")
int BPF_PROG(ebr_l7_exit, struct pt_regs *regs, long ret)
{
	if (ret <= 0)
		return 0;
	long nr = syscall_nr(regs);
	__u8 dir;
	switch (nr) {
	case NR_write:
	case NR_writev:
	case NR_sendto:
	case NR_sendmsg:
	case NR_sendfile:
		dir = DIR_EGRESS;
		break;
	case NR_read:
	case NR_readv:
	case NR_recvfrom:
	case NR_recvmsg:
		dir = DIR_INGRESS;
		break;
	default:
		return 0;
	}
	struct syscall_args *a = current_args(nr);
	if (!a || a->peek)
		return 0;
	on_data(sock_of_fd(a->fd), false, a, ret, dir);
	return 0;
}

/* The end of a streamed connection ends its last exchange. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ebr_l7_close, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	struct conn_state *st = at_exit ? bpf_map_lookup_elem(&exit_conns, &key)
					: bpf_sk_storage_get(&conns, sk, 0, 0);
	if (!st)
		return 0;
	struct conn_state c = *st;
	if (at_exit)
		bpf_map_delete_elem(&exit_conns, &key);
	if (c.protocol == L7_UNCLASSIFIED || c.protocol == L7_NONE)
		return 0;
	__u32 zero = 0;
	struct l7_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = 0;
	e->sock = key;
	e->cgroup_id = c.cgroup_id;
	e->pid = 0;
	e->size = 0;
	e->captured = 0;
	e->dir = DIR_CLOSE;
	e->protocol = c.protocol;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	fill_tuple(e, sk, true);
	submit(e, offsetof(struct l7_event, data));
	return 0;
}
