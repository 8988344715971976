//go:build linux

package procexit

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loadopt"
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

type program struct {
	name, tracepoint, part string
}

// programs maps each program to its tracepoint and part. Every one is
// tp_btf, attached through BTF: none needs tracefs.
var programs = []program{
	{bpfProgEbrProcExit, "sched:sched_process_exit", PartExits},
	{bpfProgEbrOomVictim, "oom:mark_victim", PartOOM},
}

// oomVictimPid is the OOM program for kernels whose oom:mark_victim passes
// the victim's pid, not its task (before Linux 6.8 and its stable updates).
var oomVictimPid = program{bpfProgEbrOomVictimPid, "oom:mark_victim", PartOOM}

// forKernel returns the programs to load on the running kernel.
func forKernel() []program {
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
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return true
	}
	var typ *btf.Typedef
	if err := spec.TypeByName("btf_trace_mark_victim", &typ); err != nil {
		return true
	}
	ptr, _ := typ.Type.(*btf.Pointer)
	if ptr == nil {
		return true
	}
	proto, _ := ptr.Target.(*btf.FuncProto)
	if proto == nil || len(proto.Params) < 2 {
		return true
	}
	_, isPtr := btf.UnderlyingType(proto.Params[1].Type).(*btf.Pointer)
	return isPtr
}

// Hooks returns the tracepoints each part attaches to.
func Hooks() map[string][]string {
	hooks := make(map[string][]string)
	for _, p := range programs {
		hooks[p.part] = append(hooks[p.part], p.tracepoint)
	}
	// OOM records are sent as the victim exits.
	hooks[PartOOM] = append(hooks[PartOOM], hooks[PartExits]...)
	return hooks
}

// Parts returns every part's name.
func Parts() []string {
	return slices.Sorted(maps.Keys(Hooks()))
}

// Tracer is the loaded and attached programs, their maps and the reader of
// their records.
type Tracer struct {
	maps     *ebpf.Collection
	progs    []*ebpf.Program
	links    []link.Link
	disabled map[string]error
	ncpu     int
	reader   *ringbuf.Reader
	record   ringbuf.Record
	poll     time.Duration
}

// Load loads the maps and, one by one, the programs, and attaches them. A
// program that cannot load or attach disables its part, which Disabled
// reports; Load fails only when the exits part cannot run. The caller must
// Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.MaxSeries == 0 {
		return nil, errors.New("procexit: MaxSeries must be positive")
	}
	// As in httptrace: cilium/ebpf v0.22.0 rounds a reader's deadline down
	// to whole milliseconds, so a shorter one spins.
	if opts.PollInterval < 2*time.Millisecond {
		return nil, fmt.Errorf("procexit: poll interval %s: must be at least 2ms", opts.PollInterval)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load procexit spec: %w", err)
	}
	spec.Maps[bpfMapExits].MaxEntries = opts.MaxSeries
	spec.Maps[bpfMapOomKills].MaxEntries = opts.MaxSeries
	if err := loadopt.SetConst(spec, bpfVarLogsPerSecond, opts.LogsPerSecond); err != nil {
		return nil, fmt.Errorf("set logs per second: %w", err)
	}
	if err := loadopt.SetConst(spec, bpfVarPageKb, uint32(os.Getpagesize()>>10)); err != nil {
		return nil, fmt.Errorf("set page size: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}

	// Without Variables, cilium does not mmap the data sections: such a
	// mapping would keep the maps alive after Close until a GC runs.
	spec.Variables = nil
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	coll, err := ebpf.NewCollection(mapsOnly)
	if err != nil {
		return nil, fmt.Errorf("create procexit maps: %w", err)
	}
	t := &Tracer{maps: coll, disabled: make(map[string]error), ncpu: ncpu, poll: opts.PollInterval}
	for _, p := range forKernel() {
		if err := t.attach(spec, spec.Programs[p.name]); err != nil {
			t.disabled[p.part] = fmt.Errorf("%s on %s: %w", p.name, p.tracepoint, err)
		}
	}
	if err := t.disabled[PartExits]; err != nil {
		t.Close()
		return nil, err
	}
	if t.reader, err = ringbuf.NewReader(coll.Maps[bpfMapEvents]); err != nil {
		t.Close()
		return nil, fmt.Errorf("open process exit reader: %w", err)
	}
	t.reader.SetDeadline(time.Now().Add(t.poll))
	return t, nil
}

// attach loads one program against the shared maps and attaches it to its
// tracepoint through BTF.
func (t *Tracer) attach(spec *ebpf.CollectionSpec, ps *ebpf.ProgramSpec) error {
	one := spec.Copy()
	one.Programs = map[string]*ebpf.ProgramSpec{ps.Name: ps}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: t.maps.Maps})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("verifier: %w", verr)
		}
		return err
	}
	prog := coll.DetachProgram(ps.Name)
	coll.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		prog.Close()
		return fmt.Errorf("attach: %w", err)
	}
	t.progs = append(t.progs, prog)
	t.links = append(t.links, l)
	return nil
}

// Disabled returns the parts that could not run, with why.
func (t *Tracer) Disabled() map[string]error {
	return maps.Clone(t.disabled)
}

// Programs returns the loaded programs, for their kernel ids and stats.
func (t *Tracer) Programs() []*ebpf.Program {
	return slices.Clone(t.progs)
}

// Maps returns the loaded maps, for their kernel ids and fill.
func (t *Tracer) Maps() []*ebpf.Map {
	return slices.Collect(maps.Values(t.maps.Maps))
}

// Read blocks until the next record and decodes it into e. It returns
// os.ErrClosed once the Tracer is closed. Only one goroutine may Read.
func (t *Tracer) Read(e *Event) error {
	for {
		err := t.reader.ReadInto(&t.record)
		switch {
		case err == nil:
			return Decode(t.record.RawSample, e)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Nothing was waiting; look again after the next interval.
			t.reader.SetDeadline(time.Now().Add(t.poll))
		case errors.Is(err, ringbuf.ErrClosed):
			return os.ErrClosed
		default:
			return err
		}
	}
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
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	t.links, t.progs = nil, nil
	t.maps.Close()
	return errors.Join(errs...)
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
	if s.Exits == nil {
		s.Exits = make(map[ExitKey]uint64)
	}
	if s.OOMKills == nil {
		s.OOMKills = make(map[uint64]uint64)
	}
	clear(s.Exits)
	clear(s.OOMKills)
	perCPU := make([]uint64, t.ncpu)
	var key ExitKey
	it := t.maps.Maps[bpfMapExits].Iterate()
	for it.Next(&key, &perCPU) {
		s.Exits[key] = sum(perCPU)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read exits: %w", err)
	}
	var id uint64
	it = t.maps.Maps[bpfMapOomKills].Iterate()
	for it.Next(&id, &perCPU) {
		s.OOMKills[id] = sum(perCPU)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read oom kills: %w", err)
	}
	for i, dst := range map[bpfSeries]*uint64{
		bpfSeriesSERIES_EXITS:     &s.Overflow.Exits,
		bpfSeriesSERIES_OOM_KILLS: &s.Overflow.OOMKills,
	} {
		if err := t.maps.Maps[bpfMapOverflow].Lookup(uint32(i), &perCPU); err != nil {
			return fmt.Errorf("read overflow: %w", err)
		}
		*dst = sum(perCPU)
	}
	for c, dst := range map[bpfCounter]*uint64{
		bpfCounterCOUNTER_SERIES_FULL:  &s.Lost.SeriesFull,
		bpfCounterCOUNTER_RATE_LIMITED: &s.Lost.RateLimited,
		bpfCounterCOUNTER_RINGBUF_FULL: &s.Lost.RingbufFull,
	} {
		if err := t.maps.Maps[bpfMapCounters].Lookup(uint32(c), &perCPU); err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		*dst = sum(perCPU)
	}
	return nil
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
	var keys []ExitKey
	var key ExitKey
	var v []uint64
	it := t.maps.Maps[bpfMapExits].Iterate()
	for it.Next(&key, &v) {
		if gone[key.CgroupId] {
			keys = append(keys, key)
		}
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read exits: %w", err))
	}
	for _, k := range keys {
		if err := t.maps.Maps[bpfMapExits].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	for _, id := range ids {
		if err := t.maps.Maps[bpfMapOomKills].Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sum(perCPU []uint64) uint64 {
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}
