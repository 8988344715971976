//go:build linux

package disksource

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/blockio"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestMetrics(t *testing.T) {
	io := func(count, bytes uint64, latency time.Duration) (st blockio.Stats) {
		st.Count, st.Bytes, st.LatencySumNs = count, bytes, uint64(latency)*count
		st.LatencyBuckets[10] = count // [1024, 2048) µs
		return st
	}
	// No device has these numbers, so their names are major:minor.
	const devA, devB = 4000<<20 | 1, 4000<<20 | 2
	env := sourcetest.MetricsEnv()
	s := (&Source{cfg: DefaultConfig()}).NewMetrics(env).(*metrics)
	s.snap = blockio.Snapshot{
		Series: map[blockio.Key]blockio.Stats{
			{CgroupId: sourcetest.PodCgroup, Dev: devA, Op: uint8(blockio.OpWrite)}:    io(64, 64*65536, 1500*time.Microsecond),
			{CgroupId: sourcetest.PodCgroup, Dev: devA, Op: uint8(blockio.OpRead)}:     io(64, 64*65536, 1200*time.Microsecond),
			{CgroupId: sourcetest.ServiceCgroup, Dev: devB, Op: uint8(blockio.OpRead)}: io(3, 12288, 1100*time.Microsecond),
		},
		Lost:     blockio.Lost{InflightFull: 1, SeriesFull: 5},
		Inflight: 2,
	}
	s.snap.Overflow[blockio.OpWrite] = io(5, 20480, 1024*time.Microsecond)
	s.index()
	got := sourcetest.Collect(t, env, s)
	sourcetest.CompareGolden(t, filepath.Join("testdata", "all.yaml"), got)
}
