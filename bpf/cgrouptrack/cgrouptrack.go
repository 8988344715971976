//go:build linux

package cgrouptrack

import (
	"errors"
	"fmt"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

// programs maps each program to its tracepoint.
var programs = []loader.Program{
	{Name: bpfProgEbrCgroupMkdir, Tracepoint: "cgroup:cgroup_mkdir"},
	{Name: bpfProgEbrCgroupRmdir, Tracepoint: "cgroup:cgroup_rmdir"},
}

// Hooks are the tracepoints the programs attach to.
var Hooks = loader.Hooks(programs)

// Tracer is the loaded and attached programs and their ring buffer.
type Tracer struct {
	*loader.Objects
	reader *loader.Reader
}

// Options change how the programs load.
type Options struct {
	// KernelBTF is the path of a BTF file to resolve CO-RE relocations
	// against instead of the running kernel's; empty means the running
	// kernel's. Hooks are still found in the running kernel's BTF.
	KernelBTF string
	// RejectProgram, for tests only, replaces the named program's
	// instructions with ones the verifier rejects.
	RejectProgram string
}

// Load loads and attaches the programs. The caller must Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load cgrouptrack spec: %w", err)
	}
	objs, err := loader.New(spec, loader.Options{KernelBTF: opts.KernelBTF, RejectProgram: opts.RejectProgram})
	if err != nil {
		return nil, fmt.Errorf("cgrouptrack: %w", err)
	}
	t := &Tracer{Objects: objs}
	if err := t.AttachAll(spec, programs); err != nil {
		t.Close()
		return nil, fmt.Errorf("load cgrouptrack programs: %w", err)
	}
	// No poll interval: cgroup events are few, and the programs wake the
	// reader for each.
	if t.reader, err = loader.NewReader(t.Map(bpfMapEvents), 0); err != nil {
		t.Close()
		return nil, fmt.Errorf("open cgroup event reader: %w", err)
	}
	return t, nil
}

// Read blocks until the next event and decodes it into e. It returns
// os.ErrClosed once the Tracer is closed.
func (t *Tracer) Read(e *Event) error {
	raw, err := t.reader.Next()
	if err != nil {
		return err
	}
	return Decode(raw, e)
}

// Lost counts the events that did not fit in the ring buffer.
func (t *Tracer) Lost() (uint64, error) {
	var perCPU []uint64
	if err := t.Map(bpfMapLost).Lookup(uint32(0), &perCPU); err != nil {
		return 0, err
	}
	return loader.Total(perCPU), nil
}

// Close detaches the programs, unblocks Read and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	return errors.Join(append(errs, t.Objects.Close())...)
}
