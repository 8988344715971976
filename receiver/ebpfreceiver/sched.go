//go:build linux

package ebpfreceiver

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// loadSched loads the scheduler metrics.
func loadSched(cfg *Config, _ sourceEnv) (source, []capability, error) {
	tr, caps, err := loadOnePart("sched", schedstat.Hooks, cfg.Sched.Enabled, cfg.Sched.Required,
		func() (*schedstat.Tracer, error) {
			return schedstat.Load(schedstat.Options{MaxCgroups: uint32(cfg.Sched.MaxCgroups)})
		})
	if tr == nil {
		return nil, caps, err
	}
	return &schedSource{tracer: tr, cfg: cfg.Sched}, caps, nil
}

// schedSource is the scheduler capability.
type schedSource struct {
	tracer *schedstat.Tracer
	cfg    SchedConfig
}

func (s *schedSource) kernel() kernelObjects { return s.tracer }
func (s *schedSource) close() error          { return s.tracer.Close() }

func (s *schedSource) newMetrics(env metricsEnv) metricsPart {
	return &schedMetrics{tracer: s.tracer, mb: env.mb, start: env.start, histogram: s.cfg.RunQueueHistogram,
		capacity: int64(s.cfg.MaxCgroups), removed: env.removed}
}

// schedMetrics records the scheduler metrics of each cgroup from the
// kernel's per-cgroup aggregates.
type schedMetrics struct {
	tracer    *schedstat.Tracer
	mb        *metadata.MetricsBuilder
	start     pcommon.Timestamp
	histogram bool
	capacity  int64
	// removed reports a removed cgroup; its entry is deleted from the
	// kernel once exported.
	removed func(id uint64) bool
	snap    schedstat.Snapshot
	stale   staleKeys[uint64]
}

func (s *schedMetrics) snapshot() error {
	return s.tracer.Snapshot(&s.snap)
}

func (s *schedMetrics) cgroups(yield func(uint64) bool) {
	for id := range s.snap.Cgroups {
		if !yield(id) {
			return
		}
	}
}

func (s *schedMetrics) record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	st, ok := s.snap.Cgroups[id]
	if !ok {
		return
	}
	s.recordStats(&st, false, now, histograms)
	if s.removed(id) {
		s.stale.add(id)
	}
}

// recordNode records the overflow of the kernel map and its losses.
func (s *schedMetrics) recordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	if s.snap.Overflow != (schedstat.Stats{}) {
		s.recordStats(&s.snap.Overflow, true, now, histograms)
	}
	s.mb.RecordEbpfSchedLostDataPoint(now, int64(s.snap.Lost.CgroupsFull), metadata.AttributeEbpfLostReasonCgroupsMapFull)
	s.mb.RecordEbpfSchedLostDataPoint(now, int64(s.snap.Lost.TasksFull), metadata.AttributeEbpfLostReasonTasksMapFull)
	recordMapFill(s.mb, now, int64(len(s.snap.Cgroups)), s.capacity, metadata.AttributeEbpfMapSchedCgroups)
}

func (s *schedMetrics) recordStats(st *schedstat.Stats, overflow bool, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	s.mb.RecordContainerCPUTimeDataPoint(now, float64(st.OncpuNs)/1e9, overflow)
	s.mb.RecordSchedSwitchesInvoluntaryDataPoint(now, int64(st.Involuntary), overflow)
	if !s.histogram || st.RunqCount == 0 {
		return
	}
	dp := newDurationHistogram(histograms, "sched.run_queue.latency",
		"Time the cgroup's tasks waited runnable on a run queue, from wakeup or preemption until they ran.").AppendEmpty()
	setPow2Histogram(dp, s.start, now, st.RunqCount, st.RunqSumNs, st.RunqBuckets[:])
	if overflow {
		dp.Attributes().PutBool("otel.metric.overflow", true)
	}
}

func (s *schedMetrics) dropStale() error { return s.stale.drop(s.tracer.DeleteCgroups) }
