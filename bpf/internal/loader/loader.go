// Package loader is what every bpf/* package's Load shares: the maps, the
// programs loaded one at a time against them and attached through BTF, the
// ring buffer reader, per-CPU sums, the programs' constants, the kernel BTF
// to resolve CO-RE against, and the tests' forced verifier rejection.
package loader

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Objects is one package's maps and programs, each program attached to its
// tracepoint. A package's loaded thing embeds it for Programs, Maps and
// Close.
type Objects struct {
	maps  *ebpf.Collection
	types *btf.Spec
	progs []*ebpf.Program
	links []link.Link
	ncpu  int
	// kernelBTF is Options.KernelBTF, named in the programs' errors.
	kernelBTF string
}

// Options are what every package's Load passes on to New.
type Options struct {
	// KernelBTF is a BTF file that programs resolve CO-RE relocations
	// against instead of the running kernel's.
	KernelBTF string
	// RejectProgram, for tests only, names a program the verifier is made
	// to reject.
	RejectProgram string
}

// New creates the maps of spec. It clears spec.Variables: with them cilium
// mmaps the data sections, and such a mapping would keep the maps alive
// after Close until a GC runs (set constants with SetConst first).
func New(spec *ebpf.CollectionSpec, opts Options) (*Objects, error) {
	if opts.RejectProgram != "" {
		ps := spec.Programs[opts.RejectProgram]
		if ps == nil {
			return nil, fmt.Errorf("no program %q to reject", opts.RejectProgram)
		}
		reject(ps)
	}
	kernelTypes, err := loadKernelTypes(opts.KernelBTF)
	if err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	spec.Variables = nil
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	coll, err := ebpf.NewCollection(mapsOnly)
	if err != nil {
		return nil, fmt.Errorf("create maps: %w", err)
	}
	return &Objects{maps: coll, types: kernelTypes, ncpu: ncpu, kernelBTF: opts.KernelBTF}, nil
}

// Program is a program of a package's spec, the tracepoint it attaches to
// and, in a package with parts, the part it serves.
type Program struct{ Name, Tracepoint, Part string }

// Hooks returns the tracepoints of programs, in order.
func Hooks(programs []Program) []string {
	hooks := make([]string, len(programs))
	for i, p := range programs {
		hooks[i] = p.Tracepoint
	}
	return hooks
}

// PartHooks returns the tracepoints of each part of programs.
func PartHooks(programs []Program) map[string][]string {
	hooks := make(map[string][]string)
	for _, p := range programs {
		hooks[p.Part] = append(hooks[p.Part], p.Tracepoint)
	}
	return hooks
}

// Attach loads program p of spec against the maps and attaches it to the
// tracepoint its section names; an error names p, its tracepoint and any
// Options.KernelBTF. A program that fails leaves the others as they are, so
// that a package can disable only its part.
func (o *Objects) Attach(spec *ebpf.CollectionSpec, p Program) error {
	err := o.attach(spec, p.Name)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s on %s: %w", p.Name, p.Tracepoint, err)
	if o.kernelBTF != "" {
		err = fmt.Errorf("kernel BTF %s: %w", o.kernelBTF, err)
	}
	return err
}

// AttachAll attaches programs in order and stops at the first that fails.
func (o *Objects) AttachAll(spec *ebpf.CollectionSpec, programs []Program) error {
	for _, p := range programs {
		if err := o.Attach(spec, p); err != nil {
			return err
		}
	}
	return nil
}

func (o *Objects) attach(spec *ebpf.CollectionSpec, name string) error {
	ps := spec.Programs[name]
	if ps == nil {
		return fmt.Errorf("no program %s", name)
	}
	one := spec.Copy()
	one.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
		MapReplacements: o.maps.Maps,
		Programs:        ebpf.ProgramOptions{KernelTypes: o.types},
	})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("verifier: %w", verr)
		}
		return err
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		prog.Close()
		return fmt.Errorf("attach: %w", err)
	}
	o.progs = append(o.progs, prog)
	o.links = append(o.links, l)
	return nil
}

// Map returns the map name.
func (o *Objects) Map(name string) *ebpf.Map { return o.maps.Maps[name] }

// NumCPU is the number of possible CPUs: the length of a per-CPU value.
func (o *Objects) NumCPU() int { return o.ncpu }

// Programs returns the attached programs, for their kernel ids and stats.
func (o *Objects) Programs() []*ebpf.Program { return slices.Clone(o.progs) }

// Links returns the programs' links, in the order they were attached.
func (o *Objects) Links() []link.Link { return slices.Clone(o.links) }

// Maps returns the maps, for their kernel ids and fill.
func (o *Objects) Maps() []*ebpf.Map { return slices.Collect(maps.Values(o.maps.Maps)) }

// Close detaches the programs and frees them and the maps.
func (o *Objects) Close() error {
	var errs []error
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	for _, p := range o.progs {
		errs = append(errs, p.Close())
	}
	o.links, o.progs = nil, nil
	o.maps.Close()
	return errors.Join(errs...)
}

// Sum adds up a per-CPU value.
func Sum[T any, P interface {
	*T
	Add(*T)
}](perCPU []T) T {
	var total T
	for i := range perCPU {
		P(&total).Add(&perCPU[i])
	}
	return total
}

// Total adds up a per-CPU counter.
func Total(perCPU []uint64) uint64 {
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

// ReadCounters sets each *dst to its counter's total in m, a per-CPU array
// of __u64 indexed by the program's counter enum.
func ReadCounters[K ~uint32](m *ebpf.Map, dst map[K]*uint64) error {
	var perCPU []uint64
	for c, d := range dst {
		if err := m.Lookup(uint32(c), &perCPU); err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		*d = Total(perCPU)
	}
	return nil
}

// Delete removes keys from m; keys already gone are not an error.
func Delete[K any](m *ebpf.Map, keys []K) error {
	var errs []error
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReadPerCPU replaces the contents of *dst with the entries of the per-CPU
// hash m, each value summed over its ncpu CPUs by sum.
func ReadPerCPU[K comparable, V any](m *ebpf.Map, ncpu int, dst *map[K]V, sum func([]V) V) error {
	if *dst == nil {
		*dst = make(map[K]V)
	}
	clear(*dst)
	perCPU := make([]V, ncpu)
	var key K
	it := m.Iterate()
	for it.Next(&key, &perCPU) {
		(*dst)[key] = sum(perCPU)
	}
	return it.Err()
}

// DeleteWhere deletes the entries of the per-CPU hash m, whose values are
// V on each CPU, for which doomed reports true.
func DeleteWhere[V, K any](m *ebpf.Map, doomed func(K) bool) error {
	var keys []K
	var key K
	var perCPU []V
	it := m.Iterate()
	for it.Next(&key, &perCPU) {
		if doomed(key) {
			keys = append(keys, key)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	return Delete(m, keys)
}
