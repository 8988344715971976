//go:build linux

package schedsource

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

// runq returns scheduler stats with the given run-queue latencies.
func runq(oncpu time.Duration, involuntary uint64, waits ...time.Duration) (st schedstat.Stats) {
	st.OncpuNs = uint64(oncpu)
	st.Involuntary = involuntary
	for _, w := range waits {
		st.RunqCount++
		st.RunqSumNs += uint64(w)
		b, us := 0, w.Microseconds()
		for us > 1 && b < schedstat.LatencyBuckets-1 {
			us >>= 1
			b++
		}
		st.RunqBuckets[b]++
	}
	return st
}

func TestMetrics(t *testing.T) {
	snap := schedstat.Snapshot{
		Cgroups: map[uint64]schedstat.Stats{
			sourcetest.PodCgroup:     runq(1500*time.Millisecond, 12, 3*time.Microsecond, 900*time.Microsecond, 40*time.Millisecond),
			sourcetest.ServiceCgroup: runq(20*time.Millisecond, 0, 5*time.Microsecond),
			sourcetest.GoneCgroup:    runq(time.Millisecond, 1),
		},
		Overflow: runq(7*time.Millisecond, 2, 10*time.Microsecond),
		Lost:     schedstat.Lost{CgroupsFull: 3, TasksFull: 1},
	}
	for _, tt := range []struct {
		name      string
		histogram bool
	}{{"all", true}, {"no_histogram", false}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.RunQueueHistogram = tt.histogram
			env := sourcetest.MetricsEnv()
			s := (&Source{cfg: cfg}).NewMetrics(env).(*metrics)
			s.snap = snap
			got := sourcetest.Collect(t, env, s)
			sourcetest.CompareGolden(t, filepath.Join("testdata", tt.name+".yaml"), got)
			assert.Equal(t, []uint64{sourcetest.GoneCgroup}, sourcetest.TakeStale(&s.stale))
			assert.Empty(t, sourcetest.TakeStale(&s.stale))
		})
	}
}
