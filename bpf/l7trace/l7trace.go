//go:build linux

package l7trace

import (
	"errors"
	"fmt"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

var (
	enter  = loader.Program{Name: bpfProgEbrL7Enter, Tracepoint: "raw_syscalls:sys_enter"}
	closed = loader.Program{Name: bpfProgEbrL7Close, Tracepoint: "sock:inet_sock_set_state"}
	// socketPrograms capture where the kernel has the socket length
	// tracepoints (Linux 6.3 and later). The close hook is attached first:
	// a socket that closed while only the data hooks were attached would
	// leave its state behind, for the next socket at its address.
	socketPrograms = []loader.Program{
		closed,
		enter,
		{Name: bpfProgEbrL7Send, Tracepoint: "sock:sock_send_length"},
		{Name: bpfProgEbrL7Recv, Tracepoint: "sock:sock_recv_length"},
	}
	// exitPrograms capture at each data syscall's exit instead.
	exitPrograms = []loader.Program{
		closed,
		enter,
		{Name: bpfProgEbrL7Exit, Tracepoint: "raw_syscalls:sys_exit"},
	}
)

// AtExit reports whether Load captures at sys_exit on the running kernel:
// where it lacks the socket length tracepoints. Where the kernel's BTF
// cannot be read it reports false, and Load gives the error.
func AtExit() bool {
	for _, event := range []string{"sock_send_length", "sock_recv_length"} {
		if proto, err := loader.TracepointProto(event); err == nil && proto == nil {
			return true
		}
	}
	return false
}

// Hooks returns the tracepoints that Load attaches to on the running
// kernel.
func Hooks() []string {
	if AtExit() {
		return loader.Hooks(exitPrograms)
	}
	return loader.Hooks(socketPrograms)
}

// Options tune the capture.
type Options struct {
	// CaptureBytes is how many bytes of each syscall are copied, at most
	// PrefixMax.
	CaptureBytes uint32
	// PollInterval is how long an idle reader waits for a wakeup before it
	// looks anyway, at least MinPollInterval. The programs wake it for the
	// first record after a quiet millisecond, then at most once a
	// millisecond or per 256 KiB; after records, Read looks again within
	// MinPollInterval for those that did not wake it.
	PollInterval time.Duration
	// IgnorePID is a process whose connections are never traced (the
	// collector's own); 0 names none. IgnoreItsCgroup leaves out the
	// cgroup it runs in too (its container), as the kernel sees it.
	IgnorePID       uint32
	IgnoreItsCgroup bool
	// KernelBTF is the path of a BTF file to resolve CO-RE relocations
	// against instead of the running kernel's; empty means the running
	// kernel's. Hooks are still found in the running kernel's BTF.
	KernelBTF string
	// RejectProgram, for tests only, replaces the named program's
	// instructions with ones the verifier rejects.
	RejectProgram string
	// ForceExit, for tests only, captures at sys_exit even where the
	// kernel has the socket length tracepoints, so that this kernel
	// covers the older kernels' path too.
	ForceExit bool
}

// MinPollInterval is the shortest PollInterval: loader.MinPollInterval.
const MinPollInterval = loader.MinPollInterval

// Tracer is the loaded and attached programs and their ring buffer.
type Tracer struct {
	*loader.Objects
	reader *loader.Reader
}

// Load loads and attaches the programs. The caller must Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.CaptureBytes == 0 || int(opts.CaptureBytes) > PrefixMax {
		return nil, fmt.Errorf("capture bytes %d: must be between 1 and %d", opts.CaptureBytes, PrefixMax)
	}
	if opts.PollInterval < MinPollInterval {
		return nil, fmt.Errorf("poll interval %s: must be at least %s", opts.PollInterval, MinPollInterval)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load l7trace spec: %w", err)
	}
	atExit := opts.ForceExit || AtExit()
	programs := socketPrograms
	if atExit {
		programs = exitPrograms
	} else {
		spec.Maps[bpfMapExitConns].MaxEntries = 1 // socket storage holds the state
	}
	for name, v := range map[string]any{
		bpfVarCaptureLen:   opts.CaptureBytes,
		bpfVarIgnoreTgid:   opts.IgnorePID,
		bpfVarIgnoreCgroup: boolByte(opts.IgnoreItsCgroup),
		bpfVarAtExit:       boolByte(atExit),
	} {
		if err := loader.SetConst(spec, name, v); err != nil {
			return nil, err
		}
	}
	objs, err := loader.New(spec, loader.Options{KernelBTF: opts.KernelBTF, RejectProgram: opts.RejectProgram})
	if err != nil {
		return nil, fmt.Errorf("l7trace: %w", err)
	}
	t := &Tracer{Objects: objs}
	if err := t.AttachAll(spec, programs); err != nil {
		t.Close()
		return nil, fmt.Errorf("load l7trace programs: %w", err)
	}
	if t.reader, err = loader.NewReader(t.Map(bpfMapEvents), opts.PollInterval); err != nil {
		t.Close()
		return nil, fmt.Errorf("open l7 event reader: %w", err)
	}
	return t, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Read blocks until the next event and decodes it into e. It returns
// os.ErrClosed once the Tracer is closed. Only one goroutine may Read.
func (t *Tracer) Read(e *Event) error {
	raw, err := t.reader.Next()
	if err != nil {
		return err
	}
	return Decode(raw, e)
}

// Counters are the kernel side's totals.
type Counters struct {
	// Events is the records submitted to the ring buffer.
	Events uint64
	// Lost is the records the ring buffer had no room for.
	Lost uint64
	// NoBuffer is the syscalls whose data could not be copied.
	NoBuffer uint64
}

// Counters reads the kernel side's totals.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	err := loader.ReadCounters(t.Map(bpfMapCounters), map[bpfL7Counter]*uint64{
		bpfL7CounterL7COUNTER_EVENTS:    &c.Events,
		bpfL7CounterL7COUNTER_LOST:      &c.Lost,
		bpfL7CounterL7COUNTER_NO_BUFFER: &c.NoBuffer,
	})
	if err != nil {
		return c, fmt.Errorf("l7: %w", err)
	}
	return c, nil
}

// Close detaches the programs, unblocks Read and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	return errors.Join(append(errs, t.Objects.Close())...)
}
