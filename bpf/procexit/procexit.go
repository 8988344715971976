//go:build linux

package procexit

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

// Options size the kernel maps and bound the records.
type Options struct {
	// MaxSeries bounds the series of each counter map (exits by cgroup,
	// status and signal; OOM kills by cgroup); what does not fit is counted
	// in Snapshot.Overflow.
	MaxSeries uint32
	// LogsPerSecond bounds the records of deaths by signal sent per second
	// over the node; the others are counted in Lost.RateLimited. Zero sends
	// none. OOM kill records are not limited.
	LogsPerSecond uint32
	// PollInterval bounds how long a record waits in the ring buffer: the
	// programs do not wake the reader per record.
	PollInterval time.Duration
}

// The parts of the process exit metrics. A part whose hooks are missing or
// rejected is disabled and the other still runs.
const (
	PartExits = "process.exits" // failed exits and deaths by signal; the OOM part needs it
	PartOOM   = "process.oom"   // OOM kills
)

// programs maps each program to its tracepoint and part. Every one is
// tp_btf, attached through BTF: none needs tracefs.
var programs = []loader.Program{
	{Name: bpfProgEbrProcExit, Tracepoint: "sched:sched_process_exit", Part: PartExits},
	{Name: bpfProgEbrOomVictim, Tracepoint: "oom:mark_victim", Part: PartOOM},
}

// oomVictimPid is the OOM program for kernels whose oom:mark_victim passes
// the victim's pid, not its task (before Linux 6.8 and its stable updates).
var oomVictimPid = loader.Program{Name: bpfProgEbrOomVictimPid, Tracepoint: "oom:mark_victim", Part: PartOOM}

// forKernel returns the programs to load on the running kernel.
func forKernel() []loader.Program {
	progs := slices.Clone(programs)
	if !markVictimPassesTask() {
		progs[1] = oomVictimPid
	}
	return progs
}

// markVictimPassesTask reports whether the kernel's oom:mark_victim passes
// a task_struct pointer first. Where the kernel BTF or the tracepoint is
// missing it reports true, and the task program's load gives the error.
func markVictimPassesTask() bool {
	proto, err := loader.TracepointProto("mark_victim")
	if err != nil || proto == nil || len(proto.Params) < 2 {
		return true
	}
	_, isPtr := btf.UnderlyingType(proto.Params[1].Type).(*btf.Pointer)
	return isPtr
}

// Hooks are the tracepoints each part attaches to.
var Hooks = func() map[string][]string {
	hooks := loader.PartHooks(programs)
	// OOM records are sent as the victim exits.
	hooks[PartOOM] = append(hooks[PartOOM], hooks[PartExits]...)
	return hooks
}()

// Parts returns every part's name.
func Parts() []string {
	return slices.Sorted(maps.Keys(Hooks))
}

// Tracer is the loaded and attached programs, their maps and the reader of
// their records.
type Tracer struct {
	*loader.Objects
	disabled map[string]error
	reader   *loader.Reader
}

// Load loads the maps and, one by one, the programs, and attaches them. A
// program that cannot load or attach disables its part, which Disabled
// reports; Load fails only when the exits part cannot run. The caller must
// Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.MaxSeries == 0 {
		return nil, errors.New("procexit: MaxSeries must be positive")
	}
	if opts.PollInterval < loader.MinPollInterval {
		return nil, fmt.Errorf("procexit: poll interval %s: must be at least %s", opts.PollInterval, loader.MinPollInterval)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load procexit spec: %w", err)
	}
	spec.Maps[bpfMapExits].MaxEntries = opts.MaxSeries
	spec.Maps[bpfMapOomKills].MaxEntries = opts.MaxSeries
	if err := loader.SetConst(spec, bpfVarLogsPerSecond, opts.LogsPerSecond); err != nil {
		return nil, fmt.Errorf("set logs per second: %w", err)
	}
	if err := loader.SetConst(spec, bpfVarPageKb, uint32(os.Getpagesize()>>10)); err != nil {
		return nil, fmt.Errorf("set page size: %w", err)
	}
	objs, err := loader.New(spec, loader.Options{})
	if err != nil {
		return nil, fmt.Errorf("procexit: %w", err)
	}
	t := &Tracer{Objects: objs, disabled: make(map[string]error)}
	for _, p := range forKernel() {
		if err := t.Attach(spec, p); err != nil {
			t.disabled[p.Part] = err
		}
	}
	if err := t.disabled[PartExits]; err != nil {
		t.Close()
		return nil, err
	}
	if t.reader, err = loader.NewReader(t.Map(bpfMapEvents), opts.PollInterval); err != nil {
		t.Close()
		return nil, fmt.Errorf("open process exit reader: %w", err)
	}
	return t, nil
}

// Disabled returns the parts that could not run, with why.
func (t *Tracer) Disabled() map[string]error {
	return maps.Clone(t.disabled)
}

// Read blocks until the next record and decodes it into e. It returns
// os.ErrClosed once the Tracer is closed. Only one goroutine may Read.
func (t *Tracer) Read(e *Event) error {
	raw, err := t.reader.Next()
	if err != nil {
		return err
	}
	return Decode(raw, e)
}

// Close detaches the programs, unblocks Read and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	return errors.Join(append(errs, t.Objects.Close())...)
}

// ExitKey identifies one series of exits: a cgroup, an exit status and a
// signal. A death by signal has status 0; an exit with a status has signal
// 0.
type ExitKey bpfExitKey

// Lost counts what the kernel side could not keep.
type Lost struct {
	// SeriesFull counts updates that did not fit in a counter map and went
	// to Snapshot.Overflow instead.
	SeriesFull uint64
	// RateLimited counts records of deaths by signal that the rate limit
	// refused. Their counts are kept.
	RateLimited uint64
	// RingbufFull counts records the ring buffer had no room for.
	RingbufFull uint64
}

// Snapshot is the content of the maps at one moment.
type Snapshot struct {
	// Exits counts processes that exited with a non-zero status or died by
	// a signal, summed over CPUs.
	Exits map[ExitKey]uint64
	// OOMKills counts OOM-killed processes by cgroup id.
	OOMKills map[uint64]uint64
	// Overflow holds what did not fit in Exits and OOMKills.
	Overflow struct{ Exits, OOMKills uint64 }
	// Lost counts the kernel side's losses.
	Lost Lost
}

// Snapshot reads the maps into s, reusing its storage.
func (t *Tracer) Snapshot(s *Snapshot) error {
	if err := loader.ReadPerCPU(t.Map(bpfMapExits), t.NumCPU(), &s.Exits, loader.Total); err != nil {
		return fmt.Errorf("read exits: %w", err)
	}
	if err := loader.ReadPerCPU(t.Map(bpfMapOomKills), t.NumCPU(), &s.OOMKills, loader.Total); err != nil {
		return fmt.Errorf("read oom kills: %w", err)
	}
	perCPU := make([]uint64, t.NumCPU())
	for i, dst := range map[bpfSeries]*uint64{
		bpfSeriesSERIES_EXITS:     &s.Overflow.Exits,
		bpfSeriesSERIES_OOM_KILLS: &s.Overflow.OOMKills,
	} {
		if err := t.Map(bpfMapOverflow).Lookup(uint32(i), &perCPU); err != nil {
			return fmt.Errorf("read overflow: %w", err)
		}
		*dst = loader.Total(perCPU)
	}
	return loader.ReadCounters(t.Map(bpfMapCounters), map[bpfCounter]*uint64{
		bpfCounterCOUNTER_SERIES_FULL:  &s.Lost.SeriesFull,
		bpfCounterCOUNTER_RATE_LIMITED: &s.Lost.RateLimited,
		bpfCounterCOUNTER_RINGBUF_FULL: &s.Lost.RingbufFull,
	})
}

// DeleteCgroups removes the series of the given cgroups from the kernel
// maps, such as those of removed cgroups once exported. A series updated
// again afterwards starts from zero.
func (t *Tracer) DeleteCgroups(ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	gone := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		gone[id] = true
	}
	var errs []error
	if err := loader.DeleteWhere[uint64](t.Map(bpfMapExits), func(k ExitKey) bool { return gone[k.CgroupId] }); err != nil {
		errs = append(errs, fmt.Errorf("delete exits: %w", err))
	}
	errs = append(errs, loader.Delete(t.Map(bpfMapOomKills), ids))
	return errors.Join(errs...)
}
