//go:build linux

package bpftest

import (
	"errors"
	"sync"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Kernel tests run on more than one kernel: the host's and, through make
// test-kernels, older ones under qemu. Where a hook is missing on an older
// kernel the code disables the part that needs it, and a test asserts that
// documented behaviour there instead of skipping. These helpers tell a test
// which behaviour to expect.

var kernelSpec = sync.OnceValues(btf.LoadKernelSpec)

// HasTracepoint reports whether the running kernel has the tracepoint
// group:event, such as sock:sock_send_length (Linux 6.3 and later). It looks
// for the btf_trace_<event> type in the kernel's BTF, which is what a tp_btf
// program attaches through, so it does not depend on tracefs being mounted.
// BTF names a tracepoint by its event alone; group only documents the call
// and its failure messages. Without kernel BTF it fails t.
func HasTracepoint(t testing.TB, group, event string) bool {
	t.Helper()
	spec, err := kernelSpec()
	if err != nil {
		t.Fatalf("tracepoint %s:%s: load kernel btf: %v", group, event, err)
	}
	var typ *btf.Typedef
	err = spec.TypeByName("btf_trace_"+event, &typ)
	if errors.Is(err, btf.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("tracepoint %s:%s: %v", group, event, err)
	}
	return true
}

// TracepointArgs returns the number of arguments that the running kernel's
// tracepoint group:event passes to a tp_btf program, from its
// btf_trace_<event> prototype (whose first parameter, the context, does not
// count); an argument added in a later release tells releases apart. It
// fails t if the kernel has no such tracepoint.
func TracepointArgs(t testing.TB, group, event string) int {
	t.Helper()
	spec, err := kernelSpec()
	if err != nil {
		t.Fatalf("tracepoint %s:%s: load kernel btf: %v", group, event, err)
	}
	var typ *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+event, &typ); err != nil {
		t.Fatalf("tracepoint %s:%s: %v", group, event, err)
	}
	ptr, ok := typ.Type.(*btf.Pointer)
	if !ok {
		t.Fatalf("tracepoint %s:%s: btf_trace_%s is a %s, want a function pointer", group, event, event, typ.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		t.Fatalf("tracepoint %s:%s: btf_trace_%s points to %s, want a function with a context", group, event, event, ptr.Target)
	}
	return len(proto.Params) - 1
}

// KernelRelease returns the running kernel's release, such as
// 6.1.0-56-amd64, for test logs.
func KernelRelease(t testing.TB) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	return unix.ByteSliceToString(u.Release[:])
}
