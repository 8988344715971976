//go:build linux

package disksource

import (
	"cmp"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/blockio"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

var diskDirections = map[blockio.Op]metadata.AttributeDiskIoDirection{
	blockio.OpRead:  metadata.AttributeDiskIoDirectionRead,
	blockio.OpWrite: metadata.AttributeDiskIoDirectionWrite,
}

// Load loads the block I/O metrics.
func Load(cfg Config, _ source.Env) (source.Source, []source.Capability, error) {
	tr, caps, err := source.LoadOnePart("disk", blockio.Hooks, cfg.Enabled, cfg.Required, func() (*blockio.Tracer, error) {
		return blockio.Load(blockio.Options{MaxSeries: uint32(cfg.MaxSeries), MaxInflight: uint32(cfg.MaxInflight)})
	})
	if tr == nil {
		return nil, caps, err
	}
	return &Source{tracer: tr, cfg: cfg}, caps, nil
}

// Source is the loaded block I/O capability.
type Source struct {
	tracer *blockio.Tracer
	cfg    Config
}

func (s *Source) Kernel() source.KernelObjects { return s.tracer }
func (s *Source) Close() error                 { return s.tracer.Close() }

func (s *Source) NewMetrics(env source.MetricsEnv) source.MetricsPart {
	return &metrics{
		tracer: s.tracer, mb: env.MB, start: env.Start, histogram: s.cfg.LatencyHistogram,
		capSeries: int64(s.cfg.MaxSeries), capInflight: int64(s.cfg.MaxInflight),
		removed: env.Removed, names: make(map[uint32]string),
	}
}

// metrics records the block I/O of each cgroup, device and direction
// from the kernel's aggregates.
type metrics struct {
	tracer      *blockio.Tracer
	mb          *metadata.MetricsBuilder
	start       pcommon.Timestamp
	histogram   bool
	capSeries   int64
	capInflight int64
	removed     func(id uint64) bool
	// names caches device names: a device keeps its name while it exists.
	names    map[uint32]string
	snap     blockio.Snapshot
	byCgroup map[uint64][]blockio.Key
	stale    source.StaleKeys[uint64]
	// hist collects the latency histogram of the resource being recorded,
	// once histOpen.
	hist     pmetric.HistogramDataPointSlice
	histOpen bool
}

func (s *metrics) Snapshot() error {
	if err := s.tracer.Snapshot(&s.snap); err != nil {
		return err
	}
	s.index()
	return nil
}

// index groups the snapshot's series by cgroup and forgets the names of
// devices no longer seen.
func (s *metrics) index() {
	s.byCgroup = make(map[uint64][]blockio.Key)
	devs := make(map[uint32]struct{})
	for k := range s.snap.Series {
		s.byCgroup[k.CgroupId] = append(s.byCgroup[k.CgroupId], k)
		devs[k.Dev] = struct{}{}
	}
	for dev := range s.names {
		if _, ok := devs[dev]; !ok {
			delete(s.names, dev)
		}
	}
}

func (s *metrics) device(dev uint32) string {
	name, ok := s.names[dev]
	if !ok {
		name = blockio.DeviceName(dev)
		s.names[dev] = name
	}
	return name
}

func (s *metrics) Cgroups(yield func(uint64) bool) {
	for id := range s.byCgroup {
		if !yield(id) {
			return
		}
	}
}

func (s *metrics) Record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	keys := s.byCgroup[id]
	if len(keys) == 0 {
		return
	}
	slices.SortFunc(keys, func(a, b blockio.Key) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), cmp.Compare(a.Op, b.Op))
	})
	for _, k := range keys {
		st := s.snap.Series[k]
		s.recordSeries(s.device(k.Dev), blockio.Op(k.Op), &st, false, now, histograms)
	}
	s.histOpen = false
	if s.removed(id) {
		s.stale.Add(id)
	}
}

// recordNode records the overflow series, one per direction, and what the
// kernel could not keep.
func (s *metrics) RecordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	for op, st := range s.snap.Overflow {
		if st != (blockio.Stats{}) {
			s.recordSeries("", blockio.Op(op), &st, true, now, histograms)
		}
	}
	s.histOpen = false
	s.mb.RecordEbpfDiskLostDataPoint(now, int64(s.snap.Lost.InflightFull), metadata.AttributeEbpfLostReasonInflightMapFull)
	s.mb.RecordEbpfDiskLostDataPoint(now, int64(s.snap.Lost.SeriesFull), metadata.AttributeEbpfLostReasonSeriesMapFull)
	source.RecordMapFill(s.mb, now, int64(len(s.snap.Series)), s.capSeries, metadata.AttributeEbpfMapDiskSeries)
	source.RecordMapFill(s.mb, now, int64(s.snap.Inflight), s.capInflight, metadata.AttributeEbpfMapDiskInflight)
}

func (s *metrics) recordSeries(device string, op blockio.Op, st *blockio.Stats, overflow bool, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	dir := diskDirections[op]
	s.mb.RecordContainerDiskIoDataPoint(now, int64(st.Bytes), device, dir, overflow)
	s.mb.RecordDiskOperationsDataPoint(now, int64(st.Count), device, dir, overflow)
	if !s.histogram || st.Count == 0 {
		return
	}
	if !s.histOpen {
		s.hist = source.NewDurationHistogram(histograms, "disk.io.latency",
			"Time block requests took from issue to the driver until completion.")
		s.histOpen = true
	}
	dp := s.hist.AppendEmpty()
	source.SetPow2Histogram(dp, s.start, now, st.Count, st.LatencySumNs, st.LatencyBuckets[:])
	attrs := dp.Attributes()
	if device != "" {
		attrs.PutStr("system.device", device)
	}
	attrs.PutStr("disk.io.direction", dir.String())
	if overflow {
		attrs.PutBool("otel.metric.overflow", true)
	}
}

func (s *metrics) DropStale() error { return s.stale.Drop(s.tracer.DeleteCgroups) }
