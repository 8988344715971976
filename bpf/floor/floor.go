//go:build linux

package floor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

// Event is the 64-byte record that level 2 submits.
type Event bpfFloorEvent

// Options choose the floor programs.
type Options struct {
	// Level 1 is empty programs on the receiver's hooks; level 2 also
	// submits a 64-byte record per data-carrying send and recv.
	Level int
	// SchedOnly loads only level 1's programs on the hooks of package
	// schedstat: sched_wakeup, sched_wakeup_new and sched_switch.
	SchedOnly bool
}

// readerPoll is the idle look of the receiver's HTTP reader, so that level 2
// reads as the receiver does, with no work per record.
const readerPoll = 100 * time.Millisecond

// Tracer is the floor programs of one level, loaded and attached.
type Tracer struct {
	objs   *loader.Objects
	byHook map[string]*ebpf.Program
	reader *loader.Reader
}

// Load loads and attaches the floor programs opts choose.
func Load(opts Options) (*Tracer, error) {
	var prefix string
	switch {
	case opts.SchedOnly && opts.Level == 1:
		prefix = "floor1_sched_"
	case !opts.SchedOnly && (opts.Level == 1 || opts.Level == 2):
		prefix = fmt.Sprintf("f%d_", opts.Level)
	default:
		return nil, fmt.Errorf("floor level %d (sched only: %t): want 1, 2 or 1 sched only", opts.Level, opts.SchedOnly)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load floor spec: %w", err)
	}
	objs, err := loader.New(spec, loader.Options{})
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	t := &Tracer{objs: objs, byHook: make(map[string]*ebpf.Program)}
	for _, name := range slices.Sorted(maps.Keys(spec.Programs)) {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		hook := spec.Programs[name].AttachTo
		if err := objs.Attach(spec, loader.Program{Name: name, Tracepoint: hook}); err != nil {
			t.Close()
			return nil, err
		}
		progs := objs.Programs()
		t.byHook[hook] = progs[len(progs)-1]
	}
	if opts.Level == 2 {
		if t.reader, err = loader.NewReader(objs.Map("events"), readerPoll); err != nil {
			t.Close()
			return nil, fmt.Errorf("open ring buffer: %w", err)
		}
	}
	return t, nil
}

// Programs returns the loaded programs by the hook they attach to.
func (t *Tracer) Programs() map[string]*ebpf.Program { return t.byHook }

// Drain reads the ring buffer of level 2, with the receiver's reader, until
// stop is closed, and returns the records read. On level 1 it waits for
// stop and returns 0.
func (t *Tracer) Drain(stop <-chan struct{}) (uint64, error) {
	if t.reader == nil {
		<-stop
		return 0, nil
	}
	go func() {
		<-stop
		t.reader.Close()
	}()
	var n uint64
	for {
		if _, err := t.reader.Next(); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}

// Lost returns the records the kernel had no room for.
func (t *Tracer) Lost() (uint64, error) {
	var per []uint64
	if err := t.objs.Map("lost").Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	return loader.Total(per), nil
}

// Close detaches and unloads everything.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	return errors.Join(append(errs, t.objs.Close())...)
}
