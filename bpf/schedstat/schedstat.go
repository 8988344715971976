//go:build linux

package schedstat

import (
	"fmt"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
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

// programs maps each program to its tracepoint.
var programs = []loader.Program{
	{Name: bpfProgEbrSchedWakeup, Tracepoint: "sched:sched_wakeup"},
	{Name: bpfProgEbrSchedWakeupNew, Tracepoint: "sched:sched_wakeup_new"},
	{Name: bpfProgEbrSchedSwitch, Tracepoint: "sched:sched_switch"},
}

// Hooks are the tracepoints the programs attach to.
var Hooks = loader.Hooks(programs)

// Tracer is the loaded and attached programs and their maps.
type Tracer struct {
	*loader.Objects
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
	objs, err := loader.New(spec, loader.Options{})
	if err != nil {
		return nil, fmt.Errorf("schedstat: %w", err)
	}
	t := &Tracer{objs}
	if err := t.AttachAll(spec, programs); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
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
	if err := loader.ReadPerCPU(t.Map(bpfMapCgroups), t.NumCPU(), &s.Cgroups, loader.Sum[Stats]); err != nil {
		return fmt.Errorf("read cgroups: %w", err)
	}
	perCPU := make([]Stats, t.NumCPU())
	if err := t.Map(bpfMapOverflow).Lookup(uint32(0), &perCPU); err != nil {
		return fmt.Errorf("read overflow: %w", err)
	}
	s.Overflow = loader.Sum(perCPU)
	return loader.ReadCounters(t.Map(bpfMapCounters), map[bpfCounter]*uint64{
		bpfCounterCOUNTER_CGROUPS_FULL: &s.Lost.CgroupsFull,
		bpfCounterCOUNTER_TASKS_FULL:   &s.Lost.TasksFull,
	})
}

// DeleteCgroups removes cgroups from the kernel map, such as removed ones
// once exported. A cgroup updated again afterwards starts from zero.
func (t *Tracer) DeleteCgroups(ids []uint64) error {
	return loader.Delete(t.Map(bpfMapCgroups), ids)
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
