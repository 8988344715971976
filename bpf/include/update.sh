#!/usr/bin/env bash
# Refreshes the vendored headers. libbpf headers come from Debian's libbpf-dev
# (needed only here, never to build) and go to bpf/, so that the programs'
# <bpf/...> includes, and libbpf's own, resolve to them; the programs compile
# with -nostdinc. vmlinux_x86.h is dumped from the running kernel's BTF.
set -euo pipefail
cd "$(dirname "$0")"
for h in bpf_helpers.h bpf_helper_defs.h bpf_core_read.h bpf_tracing.h bpf_endian.h; do
	cp "/usr/include/bpf/$h" bpf/
done
cp /usr/share/doc/libbpf-dev/copyright LICENSE.libbpf
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux_x86.h
