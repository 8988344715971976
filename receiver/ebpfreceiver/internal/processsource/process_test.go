//go:build linux

package processsource

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
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/procexit"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestMetrics(t *testing.T) {
	env := sourcetest.MetricsEnv()
	src := &Source{cfg: DefaultConfig(), logs: &logs{events: 9, refused: 1}}
	s := src.NewMetrics(env).(*metrics)
	s.snap = procexit.Snapshot{
		Exits: map[procexit.ExitKey]uint64{
			{CgroupId: sourcetest.PodCgroup, Signal: 11}:    2,
			{CgroupId: sourcetest.PodCgroup, Signal: 9}:     1,
			{CgroupId: sourcetest.PodCgroup, Status: 3}:     4,
			{CgroupId: sourcetest.ServiceCgroup, Status: 1}: 1,
		},
		OOMKills: map[uint64]uint64{sourcetest.PodCgroup: 1, sourcetest.GoneCgroup: 1},
		Overflow: struct{ Exits, OOMKills uint64 }{Exits: 6},
		Lost:     procexit.Lost{SeriesFull: 6, RateLimited: 20, RingbufFull: 0},
	}
	s.index()
	got := sourcetest.Collect(t, env, s)
	sourcetest.CompareGolden(t, filepath.Join("testdata", "all.yaml"), got)
	assert.Equal(t, []uint64{sourcetest.GoneCgroup}, sourcetest.TakeStale(&s.stale))
}

func TestLogs(t *testing.T) {
	sink := new(consumertest.LogsSink)
	l := &logs{
		res:    sourcetest.Resources,
		logger: zap.NewNop(),
		bootNS: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano(),
	}
	lbc := metadata.LogsBuilderConfig{Events: metadata.DefaultEventsConfig(), ResourceAttributes: metadata.DefaultResourceAttributesConfig()}
	l.setConsumer(sink, lbc,
		receivertest.NewNopSettings(metadata.Type))
	l.pending = []procexit.Event{
		{Kind: procexit.KindSignaled, Time: 1e9, CgroupID: sourcetest.PodCgroup, PID: 4242, TID: 4243, Signal: 11, CoreDumped: true, Comm: "crasher"},
		{Kind: procexit.KindOOMKill, Time: 2e9, CgroupID: sourcetest.PodCgroup, PID: 4300, TID: 4300, Comm: "hog",
			HasFigures: true, TotalVMKB: 70000, AnonRSSKB: 65000, FileRSSKB: 100, ShmemRSSKB: 0, PgtablesKB: 160, UID: 0, OOMScoreAdj: 1000},
		{Kind: procexit.KindOOMKill, Time: 3e9, CgroupID: sourcetest.ServiceCgroup, PID: 77, TID: 78, Comm: "old-kernel"},
		{Kind: procexit.KindSignaled, Time: 4e9, CgroupID: sourcetest.ServiceCgroup, PID: 80, TID: 80, Signal: 34, Comm: "rt"},
	}
	l.flush()
	require.Len(t, sink.AllLogs(), 1)
	if os.Getenv("WRITE_GOLDEN") != "" {
		golden.WriteLogs(t, filepath.Join("testdata", "logs.yaml"), sink.AllLogs()[0])
	}
	want, err := golden.ReadLogs(filepath.Join("testdata", "logs.yaml"))
	require.NoError(t, err)
	require.NoError(t, plogtest.CompareLogs(want, sink.AllLogs()[0],
		plogtest.IgnoreResourceLogsOrder(), plogtest.IgnoreLogRecordsOrder(), plogtest.IgnoreObservedTimestamp()))

	// Records past the consumer count as refused, never silently.
	l.setConsumer(consumertest.NewErr(assert.AnError), lbc,
		receivertest.NewNopSettings(metadata.Type))
	l.pending = []procexit.Event{{Kind: procexit.KindSignaled, CgroupID: sourcetest.PodCgroup, PID: 1, Signal: 9}}
	l.flush()
	_, refused := l.counts()
	assert.EqualValues(t, 1, refused)
}

func TestSignalName(t *testing.T) {
	assert.Equal(t, "SIGSEGV", signalName(11))
	assert.Equal(t, "SIGKILL", signalName(9))
	assert.Equal(t, "SIG34", signalName(34))
}
