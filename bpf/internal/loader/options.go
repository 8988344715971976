package loader

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// loadKernelTypes loads the BTF at path, for CO-RE relocations; an empty
// path gives nil, the running kernel's.
func loadKernelTypes(path string) (*btf.Spec, error) {
	if path == "" {
		return nil, nil
	}
	spec, err := btf.LoadSpec(path)
	if err != nil {
		return nil, fmt.Errorf("kernel BTF %s: %w", path, err)
	}
	return spec, nil
}

// reject makes the verifier reject ps: its new instructions read R2, which
// no program starts with. They keep the function's name and BTF.
func reject(ps *ebpf.ProgramSpec) {
	first := &ps.Instructions[0]
	ps.Instructions = asm.Instructions{
		btf.WithFuncMetadata(asm.Mov.Reg(asm.R0, asm.R2).WithSymbol(first.Symbol()), btf.FuncMetadata(first)),
		asm.Return(),
	}
}

// SetConst sets the constant name in the contents of its data section.
// Cilium writes a VariableSpec's value there only while spec.Variables is
// kept, which the packages clear: a mapping of the data sections would keep
// the maps alive after Close until a GC runs.
func SetConst(spec *ebpf.CollectionSpec, name string, value any) error {
	v := spec.Variables[name]
	if v == nil {
		return fmt.Errorf("no constant %s", name)
	}
	if err := v.Set(value); err != nil {
		return err
	}
	m := spec.Maps[v.SectionName]
	if m == nil || len(m.Contents) != 1 {
		return fmt.Errorf("section %s of %s: want one value", v.SectionName, name)
	}
	data, ok := m.Contents[0].Value.([]byte)
	if !ok || int(v.Offset+v.Size()) > len(data) {
		return fmt.Errorf("section %s does not hold %s", v.SectionName, name)
	}
	data = slices.Clone(data)
	copy(data[v.Offset:], v.Value)
	m.Contents = []ebpf.MapKV{{Key: m.Contents[0].Key, Value: data}}
	return nil
}

// TracepointProto returns the prototype through which a tp_btf program
// attaches to the running kernel's tracepoint event (its btf_trace_<event>
// type, whose first parameter is the context), or nil if the kernel has no
// such tracepoint. err is set only when the kernel's BTF cannot be read.
func TracepointProto(event string) (*btf.FuncProto, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, err
	}
	var typ *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+event, &typ); err != nil {
		return nil, nil
	}
	ptr, _ := typ.Type.(*btf.Pointer)
	if ptr == nil {
		return nil, nil
	}
	proto, _ := ptr.Target.(*btf.FuncProto)
	return proto, nil
}
