/* Kernel types for CO-RE. Every field access is relocated against the
 * running kernel's BTF at load time, so layouts here need not match it. */
#ifndef __EBPFRECEIVER_VMLINUX_H__
#define __EBPFRECEIVER_VMLINUX_H__
/* The programs read only arch-neutral structs (sock, tcp_sock, cgroup)
 * and never pt_regs, so the x86 dump also serves arm64 builds. */
/* Kernel structs are padded; -Wpadded is for our own. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux_x86.h"
#pragma clang diagnostic pop
#endif
