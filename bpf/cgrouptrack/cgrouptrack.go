//go:build linux

package cgrouptrack

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loadopt"
)

// Hooks lists the tracepoints the programs attach to.
var Hooks = []string{"cgroup:cgroup_mkdir", "cgroup:cgroup_rmdir"}

// Tracker is the loaded and attached programs and their ring buffer.
type Tracker struct {
	// objs leaves out the variables: cilium would mmap their data section,
	// which keeps its map alive after Close until a GC runs.
	objs struct {
		bpfPrograms
		bpfMaps
	}
	links  []link.Link
	reader *ringbuf.Reader
	record ringbuf.Record
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

// Load loads and attaches the programs with the zero Options. The caller
// must Close the Tracker.
func Load() (*Tracker, error) {
	return LoadWith(Options{})
}

// LoadWith loads and attaches the programs. The caller must Close the
// Tracker.
func LoadWith(opts Options) (*Tracker, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load cgrouptrack spec: %w", err)
	}
	if opts.RejectProgram != "" {
		ps := spec.Programs[opts.RejectProgram]
		if ps == nil {
			return nil, fmt.Errorf("no program %q to reject", opts.RejectProgram)
		}
		loadopt.Reject(ps)
	}
	types, err := loadopt.KernelTypes(opts.KernelBTF)
	if err != nil {
		return nil, err
	}
	t := &Tracker{}
	if err := spec.LoadAndAssign(&t.objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: types}}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			err = fmt.Errorf("verifier: %w", err)
		}
		if opts.KernelBTF != "" {
			err = fmt.Errorf("kernel BTF %s: %w", opts.KernelBTF, err)
		}
		return nil, fmt.Errorf("load cgrouptrack programs: %w", err)
	}
	for _, p := range t.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach %s: %w", p, err)
		}
		t.links = append(t.links, l)
	}
	rd, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open cgroup event reader: %w", err)
	}
	t.reader = rd
	return t, nil
}

// Read blocks until the next event and decodes it into e. It returns
// os.ErrClosed once the Tracker is closed.
func (t *Tracker) Read(e *Event) error {
	if err := t.reader.ReadInto(&t.record); err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return os.ErrClosed
		}
		return err
	}
	return Decode(t.record.RawSample, e)
}

// Lost counts the events that did not fit in the ring buffer.
func (t *Tracker) Lost() (uint64, error) {
	var perCPU []uint64
	if err := t.objs.Lost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// Programs returns the loaded programs, for their kernel ids and stats.
func (t *Tracker) Programs() []*ebpf.Program {
	return []*ebpf.Program{t.objs.EbrCgroupMkdir, t.objs.EbrCgroupRmdir}
}

// Maps returns the loaded maps, for their kernel ids.
func (t *Tracker) Maps() []*ebpf.Map {
	return []*ebpf.Map{t.objs.Events, t.objs.Lost}
}

// Close detaches the programs, unblocks Read and frees the maps.
func (t *Tracker) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	errs = append(errs, t.objs.bpfPrograms.Close(), t.objs.bpfMaps.Close())
	return errors.Join(errs...)
}
