/* Syscall numbers and the running syscall, per architecture. */
#ifndef __EBPFRECEIVER_SYSCALLS_H__
#define __EBPFRECEIVER_SYSCALLS_H__

#if defined(__TARGET_ARCH_x86)
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

static __always_inline long current_syscall_nr(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return BPF_CORE_READ(regs, orig_ax);
}

/* The syscall number in a raw syscall tracepoint's regs argument. */
static __always_inline long syscall_nr(struct pt_regs *regs)
{
	return regs->orig_ax;
}

#elif defined(__TARGET_ARCH_arm64)
#define NR_read 63
#define NR_write 64
#define NR_readv 65
#define NR_writev 66
#define NR_sendfile 71
#define NR_sendto 206
#define NR_recvfrom 207
#define NR_sendmsg 211
#define NR_recvmsg 212

/* vmlinux.h comes from an x86 kernel: declare the arm64 register layouts
 * that bpf_tracing.h and this file read. CO-RE relocates them against the
 * running kernel. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));

struct pt_regs___ebr_arm64 {
	__s32 syscallno;
} __attribute__((preserve_access_index));

static __always_inline long current_syscall_nr(void)
{
	struct pt_regs___ebr_arm64 *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return BPF_CORE_READ(regs, syscallno);
}

/* The syscall number in a raw syscall tracepoint's regs argument. */
static __always_inline long syscall_nr(struct pt_regs *regs)
{
	return ((struct pt_regs___ebr_arm64 *)regs)->syscallno;
}

#else
#error "unsupported architecture"
#endif

#endif
