//go:build linux

package httptrace

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loadopt"
)

// Hooks lists the tracepoints the programs attach to.
var Hooks = []string{"raw_syscalls:sys_enter", "sock:sock_send_length", "sock:sock_recv_length", "sock:inet_sock_set_state"}

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
}

// MinPollInterval is the shortest PollInterval. cilium/ebpf v0.22.0 turns a
// reader's deadline into an epoll_wait timeout in whole milliseconds,
// rounded down: a deadline under 1 ms ahead is a timeout of 0, and a
// reader that renews it spins on epoll_wait instead of sleeping.
const MinPollInterval = 2 * time.Millisecond

// Tracer is the loaded and attached programs and their ring buffer.
type Tracer struct {
	objs struct {
		bpfPrograms
		bpfMaps
	}
	links  []link.Link
	reader *ringbuf.Reader
	record ringbuf.Record
	poll   time.Duration
	// recent reports records read since the deadline was last set.
	recent bool
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
		return nil, fmt.Errorf("load httptrace spec: %w", err)
	}
	for name, v := range map[string]any{
		bpfVarCaptureLen:   opts.CaptureBytes,
		bpfVarIgnoreTgid:   opts.IgnorePID,
		bpfVarIgnoreCgroup: boolByte(opts.IgnoreItsCgroup),
	} {
		if err := loadopt.SetConst(spec, name, v); err != nil {
			return nil, err
		}
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
	// Without Variables, cilium does not mmap the data sections, which
	// would keep their maps alive after Close until a GC runs.
	spec.Variables = nil
	t := &Tracer{poll: opts.PollInterval}
	if err := spec.LoadAndAssign(&t.objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: types}}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			err = fmt.Errorf("verifier: %w", err)
		}
		if opts.KernelBTF != "" {
			err = fmt.Errorf("kernel BTF %s: %w", opts.KernelBTF, err)
		}
		return nil, fmt.Errorf("load httptrace programs: %w", err)
	}
	for _, p := range t.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach %s: %w", p, err)
		}
		t.links = append(t.links, l)
	}
	if t.reader, err = ringbuf.NewReader(t.objs.Events); err != nil {
		t.Close()
		return nil, fmt.Errorf("open http event reader: %w", err)
	}
	t.reader.SetDeadline(time.Now().Add(t.poll))
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
	for {
		err := t.reader.ReadInto(&t.record)
		switch {
		case err == nil:
			if !t.recent {
				t.recent = true
				t.reader.SetDeadline(time.Now().Add(MinPollInterval))
			}
			return Decode(t.record.RawSample, e)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Records came since the last look: more may be waiting that
			// fell within the kernel's wakeup interval, so look again soon.
			// Otherwise the next record wakes us; wait for it.
			wait := t.poll
			if t.recent {
				wait = MinPollInterval
			}
			t.recent = false
			t.reader.SetDeadline(time.Now().Add(wait))
		case errors.Is(err, ringbuf.ErrClosed):
			return os.ErrClosed
		default:
			return err
		}
	}
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
	perCPU := make([]uint64, 0)
	for id, dst := range map[bpfHttpCounter]*uint64{
		bpfHttpCounterHTTP_COUNTER_EVENTS:    &c.Events,
		bpfHttpCounterHTTP_COUNTER_LOST:      &c.Lost,
		bpfHttpCounterHTTP_COUNTER_NO_BUFFER: &c.NoBuffer,
	} {
		if err := t.objs.Counters.Lookup(uint32(id), &perCPU); err != nil {
			return c, fmt.Errorf("read http counters: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return c, nil
}

// Programs returns the loaded programs, for their kernel ids and stats.
func (t *Tracer) Programs() []*ebpf.Program {
	return []*ebpf.Program{t.objs.EbrHttpEnter, t.objs.EbrHttpSend, t.objs.EbrHttpRecv, t.objs.EbrHttpClose}
}

// Maps returns the loaded maps, for their kernel ids.
func (t *Tracer) Maps() []*ebpf.Map {
	return []*ebpf.Map{t.objs.Args, t.objs.Conns, t.objs.Events, t.objs.Scratch, t.objs.Counters}
}

// Close detaches the programs, unblocks Read and frees the maps.
func (t *Tracer) Close() error {
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
