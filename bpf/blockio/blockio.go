//go:build linux

package blockio

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

// Options size the kernel maps.
type Options struct {
	// MaxInflight bounds the requests tracked between issue and completion;
	// a request that does not fit is not counted (Lost.InflightFull).
	MaxInflight uint32
	// MaxSeries bounds the series aggregated at once; what does not fit is
	// counted in Snapshot.Overflow.
	MaxSeries uint32
}

// programs maps each program to its tracepoint.
var programs = []loader.Program{
	{Name: bpfProgEbrBlockRqInsert, Tracepoint: "block:block_rq_insert"},
	{Name: bpfProgEbrBlockRqMerge, Tracepoint: "block:block_rq_merge"},
	{Name: bpfProgEbrBlockRqIssue, Tracepoint: "block:block_rq_issue"},
	{Name: bpfProgEbrBlockRqComplete, Tracepoint: "block:block_rq_complete"},
}

// Hooks are the tracepoints the programs attach to.
var Hooks = loader.Hooks(programs)

// Tracer is the loaded and attached programs and their maps.
type Tracer struct {
	*loader.Objects
}

// Load loads the programs and maps and attaches the programs. The caller
// must Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.MaxInflight == 0 || opts.MaxSeries == 0 {
		return nil, fmt.Errorf("blockio: MaxInflight (%d) and MaxSeries (%d) must be positive", opts.MaxInflight, opts.MaxSeries)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load blockio spec: %w", err)
	}
	spec.Maps[bpfMapInflight].MaxEntries = opts.MaxInflight
	spec.Maps[bpfMapSeries].MaxEntries = opts.MaxSeries
	objs, err := loader.New(spec, loader.Options{})
	if err != nil {
		return nil, fmt.Errorf("blockio: %w", err)
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
	// InflightFull counts failed attempts to track a request, at its insert
	// and again at its issue, because the inflight map was full: such a
	// request is not counted at all.
	InflightFull uint64
	// SeriesFull counts series updates that did not fit in the series map
	// and went to Overflow instead.
	SeriesFull uint64
}

// Snapshot is the content of the maps at one moment.
type Snapshot struct {
	// Series maps each series to its counters, summed over CPUs.
	Series map[Key]Stats
	// Overflow holds what did not fit in the series map, by Op.
	Overflow [opCount]Stats
	// Lost counts the kernel side's losses.
	Lost Lost
	// Inflight is the number of requests tracked now: issued, not yet
	// completed.
	Inflight uint64
}

// Snapshot reads the maps into s, reusing its storage.
func (t *Tracer) Snapshot(s *Snapshot) error {
	if err := loader.ReadPerCPU(t.Map(bpfMapSeries), t.NumCPU(), &s.Series, loader.Sum[Stats]); err != nil {
		return fmt.Errorf("read series: %w", err)
	}
	perCPU := make([]Stats, t.NumCPU())
	for op := range s.Overflow {
		if err := t.Map(bpfMapOverflow).Lookup(uint32(op), &perCPU); err != nil {
			return fmt.Errorf("read overflow: %w", err)
		}
		s.Overflow[op] = loader.Sum(perCPU)
	}
	var inserted, deleted uint64
	if err := loader.ReadCounters(t.Map(bpfMapCounters), map[bpfCounter]*uint64{
		bpfCounterCOUNTER_INFLIGHT_FULL:     &s.Lost.InflightFull,
		bpfCounterCOUNTER_SERIES_FULL:       &s.Lost.SeriesFull,
		bpfCounterCOUNTER_INFLIGHT_INSERTED: &inserted,
		bpfCounterCOUNTER_INFLIGHT_DELETED:  &deleted,
	}); err != nil {
		return err
	}
	s.Inflight = inserted - deleted
	return nil
}

// DeleteCgroups removes every series of the cgroups ids from the kernel
// map, such as those of removed cgroups once exported. A series updated
// again afterwards starts from zero.
func (t *Tracer) DeleteCgroups(ids []uint64) error {
	doomed := func(k Key) bool { return slices.Contains(ids, k.CgroupId) }
	if err := loader.DeleteWhere[Stats](t.Map(bpfMapSeries), doomed); err != nil {
		return fmt.Errorf("delete series: %w", err)
	}
	return nil
}

// DeviceName returns the kernel's name of the disk dev (major << 20 |
// minor), such as "sda" or "loop0", from /sys/dev/block; "<major>:<minor>"
// if it has none.
func DeviceName(dev uint32) string {
	id := fmt.Sprintf("%d:%d", Major(dev), Minor(dev))
	uevent, err := os.ReadFile("/sys/dev/block/" + id + "/uevent")
	if err != nil {
		return id
	}
	for line := range strings.Lines(string(uevent)) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok && name != "" {
			return name
		}
	}
	return id
}
