//go:build linux

package schedsource

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

// Load loads the scheduler metrics.
func Load(cfg Config, _ source.Env) (source.Source, []source.Capability, error) {
	tr, caps, err := source.LoadOnePart("sched", schedstat.Hooks, cfg.Enabled, cfg.Required,
		func() (*schedstat.Tracer, error) {
			return schedstat.Load(schedstat.Options{MaxCgroups: uint32(cfg.MaxCgroups)})
		})
	if tr == nil {
		return nil, caps, err
	}
	return &Source{tracer: tr, cfg: cfg}, caps, nil
}

// Source is the loaded scheduler capability.
type Source struct {
	tracer *schedstat.Tracer
	cfg    Config
}

func (s *Source) Kernel() source.KernelObjects { return s.tracer }
func (s *Source) Close() error                 { return s.tracer.Close() }

// Tracer is the loaded kernel side, for tests that read its maps.
func (s *Source) Tracer() *schedstat.Tracer { return s.tracer }

func (s *Source) NewMetrics(env source.MetricsEnv) source.MetricsPart {
	return &metrics{tracer: s.tracer, mb: env.MB, start: env.Start, histogram: s.cfg.RunQueueHistogram,
		capacity: int64(s.cfg.MaxCgroups), removed: env.Removed}
}

// metrics records the scheduler metrics of each cgroup from the
// kernel's per-cgroup aggregates.
type metrics struct {
	tracer    *schedstat.Tracer
	mb        *metadata.MetricsBuilder
	start     pcommon.Timestamp
	histogram bool
	capacity  int64
	// removed reports a removed cgroup; its entry is deleted from the
	// kernel once exported.
	removed func(id uint64) bool
	snap    schedstat.Snapshot
	stale   source.StaleKeys[uint64]
}

func (s *metrics) Snapshot() error {
	return s.tracer.Snapshot(&s.snap)
}

func (s *metrics) Cgroups(yield func(uint64) bool) {
	for id := range s.snap.Cgroups {
		if !yield(id) {
			return
		}
	}
}

func (s *metrics) Record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	st, ok := s.snap.Cgroups[id]
	if !ok {
		return
	}
	s.recordStats(&st, false, now, histograms)
	if s.removed(id) {
		s.stale.Add(id)
	}
}

// recordNode records the overflow of the kernel map and its losses.
func (s *metrics) RecordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	if s.snap.Overflow != (schedstat.Stats{}) {
		s.recordStats(&s.snap.Overflow, true, now, histograms)
	}
	s.mb.RecordEbpfSchedLostDataPoint(now, int64(s.snap.Lost.CgroupsFull), metadata.AttributeEbpfLostReasonCgroupsMapFull)
	s.mb.RecordEbpfSchedLostDataPoint(now, int64(s.snap.Lost.TasksFull), metadata.AttributeEbpfLostReasonTasksMapFull)
	source.RecordMapFill(s.mb, now, int64(len(s.snap.Cgroups)), s.capacity, metadata.AttributeEbpfMapSchedCgroups)
}

func (s *metrics) recordStats(st *schedstat.Stats, overflow bool, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	s.mb.RecordContainerCPUTimeDataPoint(now, float64(st.OncpuNs)/1e9, overflow)
	s.mb.RecordSchedSwitchesInvoluntaryDataPoint(now, int64(st.Involuntary), overflow)
	if !s.histogram || st.RunqCount == 0 {
		return
	}
	dp := source.NewDurationHistogram(histograms, "sched.run_queue.latency",
		"Time the cgroup's tasks waited runnable on a run queue, from wakeup or preemption until they ran.").AppendEmpty()
	source.SetPow2Histogram(dp, s.start, now, st.RunqCount, st.RunqSumNs, st.RunqBuckets[:])
	if overflow {
		dp.Attributes().PutBool("otel.metric.overflow", true)
	}
}

func (s *metrics) DropStale() error { return s.stale.Drop(s.tracer.DeleteCgroups) }
