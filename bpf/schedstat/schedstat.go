//go:build linux

package schedstat

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Options size the kernel maps.
type Options struct {
	// MaxCgroups bounds the cgroups aggregated at once; what does not fit
	// is counted in Snapshot.Overflow.
	MaxCgroups uint32
}

// Stats holds the scheduler counters of one cgroup, summed over CPUs by
// Snapshot.
type Stats bpfSchedStats

// LatencyBuckets is the number of buckets in Stats.RunqBuckets. Bucket i
// counts run-queue waits in [2^i, 2^(i+1)) microseconds, bucket 0 those
// under 2 microseconds; the last bucket has no upper bound.
const LatencyBuckets = len(Stats{}.RunqBuckets)

// Hooks are the tracepoints the programs attach to.
var Hooks = []string{"sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch"}

// programs maps each program to its tracepoint, in the order of Hooks.
var programs = []struct{ name, tracepoint string }{
	{bpfProgEbrSchedWakeup, Hooks[0]},
	{bpfProgEbrSchedWakeupNew, Hooks[1]},
	{bpfProgEbrSchedSwitch, Hooks[2]},
}

// Tracer is the loaded and attached programs and their maps.
type Tracer struct {
	maps  *ebpf.Collection
	progs []*ebpf.Program
	links []link.Link
	ncpu  int
}

// Load loads the maps and the programs and attaches them. Any program that
// cannot load or attach fails Load, naming its hook. The caller must Close
// the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.MaxCgroups == 0 {
		return nil, fmt.Errorf("schedstat: MaxCgroups must be positive")
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load schedstat spec: %w", err)
	}
	spec.Maps[bpfMapCgroups].MaxEntries = opts.MaxCgroups
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
		return nil, fmt.Errorf("create schedstat maps: %w", err)
	}
	t := &Tracer{maps: coll, ncpu: ncpu}
	for _, p := range programs {
		if err := t.attach(spec, spec.Programs[p.name]); err != nil {
			t.Close()
			return nil, fmt.Errorf("%s on %s: %w", p.name, p.tracepoint, err)
		}
	}
	return t, nil
}

// attach loads one program against the shared maps and attaches it.
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

// Programs returns the loaded programs, for their kernel ids and stats.
func (t *Tracer) Programs() []*ebpf.Program {
	return slices.Clone(t.progs)
}

// Maps returns the loaded maps, for their kernel ids and fill.
func (t *Tracer) Maps() []*ebpf.Map {
	return slices.Collect(maps.Values(t.maps.Maps))
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
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

// Lost counts what the kernel side could not keep.
type Lost struct {
	// CgroupsFull counts updates of cgroups that did not fit in the map and
	// went to Overflow instead.
	CgroupsFull uint64
	// TasksFull counts tasks that did not fit in the map of runnable and
	// running tasks: their next wait or run is not measured.
	TasksFull uint64
}

// Snapshot is the content of the maps at one moment.
type Snapshot struct {
	// Cgroups maps each cgroup v2 id to its counters, summed over CPUs.
	Cgroups map[uint64]Stats
	// Overflow holds what did not fit in the cgroups map.
	Overflow Stats
	// Lost counts the kernel side's losses.
	Lost Lost
}

// Snapshot reads the maps into s, reusing its storage.
func (t *Tracer) Snapshot(s *Snapshot) error {
	if s.Cgroups == nil {
		s.Cgroups = make(map[uint64]Stats)
	}
	clear(s.Cgroups)
	perCPU := make([]Stats, t.ncpu)
	var id uint64
	it := t.maps.Maps[bpfMapCgroups].Iterate()
	for it.Next(&id, &perCPU) {
		s.Cgroups[id] = sum(perCPU)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read cgroups: %w", err)
	}
	if err := t.maps.Maps[bpfMapOverflow].Lookup(uint32(0), &perCPU); err != nil {
		return fmt.Errorf("read overflow: %w", err)
	}
	s.Overflow = sum(perCPU)
	counters := make([]uint64, t.ncpu)
	for c, dst := range map[bpfCounter]*uint64{
		bpfCounterCOUNTER_CGROUPS_FULL: &s.Lost.CgroupsFull,
		bpfCounterCOUNTER_TASKS_FULL:   &s.Lost.TasksFull,
	} {
		if err := t.maps.Maps[bpfMapCounters].Lookup(uint32(c), &counters); err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		*dst = 0
		for _, v := range counters {
			*dst += v
		}
	}
	return nil
}

// DeleteCgroups removes cgroups from the kernel map, such as removed ones
// once exported. A cgroup updated again afterwards starts from zero.
func (t *Tracer) DeleteCgroups(ids []uint64) error {
	var errs []error
	for _, id := range ids {
		if err := t.maps.Maps[bpfMapCgroups].Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Add adds o's counters to s.
func (s *Stats) Add(o *Stats) {
	s.OncpuNs += o.OncpuNs
	s.Involuntary += o.Involuntary
	s.RunqCount += o.RunqCount
	s.RunqSumNs += o.RunqSumNs
	for i := range s.RunqBuckets {
		s.RunqBuckets[i] += o.RunqBuckets[i]
	}
}

func sum(perCPU []Stats) Stats {
	var total Stats
	for i := range perCPU {
		total.Add(&perCPU[i])
	}
	return total
}
