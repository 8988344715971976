//go:build linux

package ebpfreceiver

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/blockio"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/procexit"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// Golden tests of the node-pressure sources (scheduler, process exits,
// disk): kernel snapshots in, metrics and log records out.

// testMetricsEnv is what the scraper gives each source's metrics part.
func testMetricsEnv(cfg *Config) metricsEnv {
	enableMapDetail(cfg)
	set := receivertest.NewNopSettings(metadata.Type)
	start := pcommon.NewTimestampFromTime(time.Now())
	mb := metadata.NewMetricsBuilder(cfg.MetricsBuilderConfig, set, metadata.WithStartTime(start))
	return metricsEnv{mb: mb, start: start, removed: testPaths.IsRemoved, logger: zap.NewNop()}
}

// collectParts does what the scraper does once the snapshots are loaded.
func collectParts(t *testing.T, mb *metadata.MetricsBuilder, parts ...metricsPart) pmetric.Metrics {
	t.Helper()
	c := collector{mb: mb, res: testResources, parts: parts}
	out, err := c.collect(pcommon.NewTimestampFromTime(time.Now()), func(pcommon.Timestamp) {})
	require.NoError(t, err)
	return out
}

var testResources = resources{rac: metadata.DefaultResourceAttributesConfig(), paths: testPaths, hostName: "node-1", nodeName: "k8s-node-1"}

// takeStale returns what a collection left to drop from the kernel, and
// forgets it as dropStale does.
func takeStale[K any](s *staleKeys[K]) (keys []K) {
	_ = s.drop(func(k []K) error { keys = k; return nil })
	return keys
}

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

func TestSchedSource(t *testing.T) {
	snap := schedstat.Snapshot{
		Cgroups: map[uint64]schedstat.Stats{
			podCgroup:     runq(1500*time.Millisecond, 12, 3*time.Microsecond, 900*time.Microsecond, 40*time.Millisecond),
			serviceCgroup: runq(20*time.Millisecond, 0, 5*time.Microsecond),
			goneCgroup:    runq(time.Millisecond, 1),
		},
		Overflow: runq(7*time.Millisecond, 2, 10*time.Microsecond),
		Lost:     schedstat.Lost{CgroupsFull: 3, TasksFull: 1},
	}
	for _, tt := range []struct {
		name      string
		histogram bool
	}{{"all", true}, {"no_histogram", false}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.Sched.RunQueueHistogram = tt.histogram
			env := testMetricsEnv(cfg)
			s := (&schedSource{cfg: cfg.Sched}).newMetrics(env).(*schedMetrics)
			s.snap = snap
			got := collectParts(t, env.mb, s)
			compareGolden(t, filepath.Join("testdata", "sched", tt.name+".yaml"), got)
			assert.Equal(t, []uint64{goneCgroup}, takeStale(&s.stale))
			assert.Empty(t, takeStale(&s.stale))
		})
	}
}

func TestDiskSource(t *testing.T) {
	io := func(count, bytes uint64, latency time.Duration) (st blockio.Stats) {
		st.Count, st.Bytes, st.LatencySumNs = count, bytes, uint64(latency)*count
		st.LatencyBuckets[10] = count // [1024, 2048) µs
		return st
	}
	// No device has these numbers, so their names are major:minor.
	const devA, devB = 4000<<20 | 1, 4000<<20 | 2
	cfg := createDefaultConfig()
	env := testMetricsEnv(cfg)
	s := (&diskSource{cfg: cfg.Disk}).newMetrics(env).(*diskMetrics)
	s.snap = blockio.Snapshot{
		Series: map[blockio.Key]blockio.Stats{
			{CgroupId: podCgroup, Dev: devA, Op: uint8(blockio.OpWrite)}:    io(64, 64*65536, 1500*time.Microsecond),
			{CgroupId: podCgroup, Dev: devA, Op: uint8(blockio.OpRead)}:     io(64, 64*65536, 1200*time.Microsecond),
			{CgroupId: serviceCgroup, Dev: devB, Op: uint8(blockio.OpRead)}: io(3, 12288, 1100*time.Microsecond),
		},
		Lost:     blockio.Lost{InflightFull: 1, SeriesFull: 5},
		Inflight: 2,
	}
	s.snap.Overflow[blockio.OpWrite] = io(5, 20480, 1024*time.Microsecond)
	s.index()
	got := collectParts(t, env.mb, s)
	compareGolden(t, filepath.Join("testdata", "disk", "all.yaml"), got)
}

func TestProcessSource(t *testing.T) {
	cfg := createDefaultConfig()
	env := testMetricsEnv(cfg)
	src := &processSource{cfg: cfg.Process, logs: &processLogs{events: 9, refused: 1}}
	s := src.newMetrics(env).(*processMetrics)
	s.snap = procexit.Snapshot{
		Exits: map[procexit.ExitKey]uint64{
			{CgroupId: podCgroup, Signal: 11}:    2,
			{CgroupId: podCgroup, Signal: 9}:     1,
			{CgroupId: podCgroup, Status: 3}:     4,
			{CgroupId: serviceCgroup, Status: 1}: 1,
		},
		OOMKills: map[uint64]uint64{podCgroup: 1, goneCgroup: 1},
		Overflow: struct{ Exits, OOMKills uint64 }{Exits: 6},
		Lost:     procexit.Lost{SeriesFull: 6, RateLimited: 20, RingbufFull: 0},
	}
	s.index()
	got := collectParts(t, env.mb, s)
	compareGolden(t, filepath.Join("testdata", "process", "all.yaml"), got)
	assert.Equal(t, []uint64{goneCgroup}, takeStale(&s.stale))
}

func TestProcessLogs(t *testing.T) {
	sink := new(consumertest.LogsSink)
	l := &processLogs{
		res:    testResources,
		logger: zap.NewNop(),
		bootNS: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano(),
	}
	cfg := createDefaultConfig()
	l.setConsumer(sink, metadata.LogsBuilderConfig{Events: cfg.Events, ResourceAttributes: cfg.ResourceAttributes},
		receivertest.NewNopSettings(metadata.Type))
	l.pending = []procexit.Event{
		{Kind: procexit.KindSignaled, Time: 1e9, CgroupID: podCgroup, PID: 4242, TID: 4243, Signal: 11, CoreDumped: true, Comm: "crasher"},
		{Kind: procexit.KindOOMKill, Time: 2e9, CgroupID: podCgroup, PID: 4300, TID: 4300, Comm: "hog",
			HasFigures: true, TotalVMKB: 70000, AnonRSSKB: 65000, FileRSSKB: 100, ShmemRSSKB: 0, PgtablesKB: 160, UID: 0, OOMScoreAdj: 1000},
		{Kind: procexit.KindOOMKill, Time: 3e9, CgroupID: serviceCgroup, PID: 77, TID: 78, Comm: "old-kernel"},
		{Kind: procexit.KindSignaled, Time: 4e9, CgroupID: serviceCgroup, PID: 80, TID: 80, Signal: 34, Comm: "rt"},
	}
	l.flush()
	require.Len(t, sink.AllLogs(), 1)
	if os.Getenv("WRITE_GOLDEN") != "" {
		golden.WriteLogs(t, filepath.Join("testdata", "process", "logs.yaml"), sink.AllLogs()[0])
	}
	want, err := golden.ReadLogs(filepath.Join("testdata", "process", "logs.yaml"))
	require.NoError(t, err)
	require.NoError(t, plogtest.CompareLogs(want, sink.AllLogs()[0],
		plogtest.IgnoreResourceLogsOrder(), plogtest.IgnoreLogRecordsOrder(), plogtest.IgnoreObservedTimestamp()))

	// Records past the consumer count as refused, never silently.
	l.setConsumer(consumertest.NewErr(assert.AnError), metadata.LogsBuilderConfig{Events: cfg.Events, ResourceAttributes: cfg.ResourceAttributes},
		receivertest.NewNopSettings(metadata.Type))
	l.pending = []procexit.Event{{Kind: procexit.KindSignaled, CgroupID: podCgroup, PID: 1, Signal: 9}}
	l.flush()
	_, refused := l.counts()
	assert.EqualValues(t, 1, refused)
}

func TestSignalName(t *testing.T) {
	assert.Equal(t, "SIGSEGV", signalName(11))
	assert.Equal(t, "SIGKILL", signalName(9))
	assert.Equal(t, "SIG34", signalName(34))
}
