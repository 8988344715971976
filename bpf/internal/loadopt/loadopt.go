// Package loadopt holds the load options that every bpf/* package shares:
// the kernel BTF to resolve CO-RE against, and the tests' forced verifier
// rejection.
package loadopt

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// KernelTypes loads the BTF at path, for CO-RE relocations; an empty path
// gives nil, the running kernel's.
func KernelTypes(path string) (*btf.Spec, error) {
	if path == "" {
		return nil, nil
	}
	spec, err := btf.LoadSpec(path)
	if err != nil {
		return nil, fmt.Errorf("kernel BTF %s: %w", path, err)
	}
	return spec, nil
}

// Reject makes the verifier reject ps: its new instructions read R2, which
// no program starts with. They keep the function's name and BTF.
func Reject(ps *ebpf.ProgramSpec) {
	first := &ps.Instructions[0]
	ps.Instructions = asm.Instructions{
		btf.WithFuncMetadata(asm.Mov.Reg(asm.R0, asm.R2).WithSymbol(first.Symbol()), btf.FuncMetadata(first)),
		asm.Return(),
	}
}
