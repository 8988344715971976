//go:build linux

package ebpfreceiver

import (
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
)

// fakePaths stands in for the cgroup resolver: the builder only reads it.
type fakePaths map[uint64]string

func (fakePaths) Refresh(iter.Seq[uint64]) error { return nil }

func (fakePaths) Resolve(iter.Seq[uint64]) error { return nil }

func (fakePaths) IsRemoved(id uint64) bool { return id == goneCgroup }

func (p fakePaths) Path(id uint64) (string, bool) {
	path, ok := p[id]
	return path, ok
}

const (
	podCgroup     = 101
	serviceCgroup = 102
	goneCgroup    = 103
	podPath       = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7a4c1e_2f3d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-5e0a3f6c2b1d4e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f.scope"
	servicePath   = "/system.slice/nginx.service"
)

var testPaths = fakePaths{podCgroup: podPath, serviceCgroup: servicePath}

func flow(cgroupID uint64, dir tcpconn.Direction, peer string, peerPort, localPort uint16) tcpconn.Flow {
	return tcpconn.Flow{
		CgroupId:  cgroupID,
		Direction: uint8(dir),
		PeerAddr:  netip.MustParseAddr(peer).As16(),
		PeerPort:  peerPort,
		LocalPort: localPort,
	}
}

func rtt(us ...uint64) (st tcpconn.FlowStats) {
	for _, v := range us {
		st.RttCount++
		st.RttSumUs += v
		b := 0
		for v > 1 && b < tcpconn.RTTBuckets-1 {
			v >>= 1
			b++
		}
		st.RttBuckets[b]++
	}
	return st
}

func TestTCPBuilder(t *testing.T) {
	clientStats := rtt(40, 90, 3000)
	clientStats.Opened[tcpconn.OutcomeEstablished] = 5
	clientStats.Opened[tcpconn.OutcomeRefused] = 1
	clientStats.Closed = 4
	clientStats.BytesSent = 1500
	clientStats.BytesReceived = 64000
	clientStats.Retransmits = 3
	clientStats.ResetsReceived = 1

	serverStats := rtt(25)
	serverStats.Opened[tcpconn.OutcomeEstablished] = 7
	serverStats.Closed = 7
	serverStats.BytesSent = 7000
	serverStats.BytesReceived = 700
	serverStats.ResetsSent = 2

	var adopted tcpconn.FlowStats
	adopted.Adopted = 1
	adopted.BytesReceived = 10

	var timedOut tcpconn.FlowStats
	timedOut.Opened[tcpconn.OutcomeTimedOut] = 2
	timedOut.Opened[tcpconn.OutcomeFailed] = 1

	var noSocket tcpconn.FlowStats
	noSocket.ResetsSent = 4

	var kernelOverflow tcpconn.FlowStats
	kernelOverflow.Opened[tcpconn.OutcomeEstablished] = 9
	kernelOverflow.BytesSent = 99

	snap := tcpconn.Snapshot{
		Flows: map[tcpconn.Flow]tcpconn.FlowStats{
			flow(podCgroup, tcpconn.DirectionClient, "198.18.0.3", 8080, 0):          clientStats,
			flow(podCgroup, tcpconn.DirectionClient, "2001:db8::1", 443, 0):          timedOut,
			flow(serviceCgroup, tcpconn.DirectionServer, "::ffff:198.18.0.2", 0, 80): serverStats,
			flow(serviceCgroup, tcpconn.DirectionUnknown, "::ffff:198.18.0.9", 0, 0): adopted,
			flow(goneCgroup, tcpconn.DirectionClient, "198.18.0.3", 5432, 0):         timedOut,
			{}: noSocket,
		},
		Lost: tcpconn.Lost{ConnsFull: 6, FlowsFull: 1},
	}
	snap.Overflow[tcpconn.DirectionServer] = kernelOverflow

	tests := []struct {
		name   string
		modify func(*TCPConfig)
	}{
		{name: "all", modify: func(*TCPConfig) {}},
		{name: "no_rtt_histogram", modify: func(c *TCPConfig) { c.RTTHistogram = false }},
		{name: "peer_cap", modify: func(c *TCPConfig) { c.MaxPeersPerResource = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tt.modify(&cfg.TCP)
			b := newTestBuilder(cfg)
			got := buildTCP(b, &snap, pcommon.NewTimestampFromTime(time.Now()))
			compareGolden(t, filepath.Join("testdata", "tcpconn", tt.name+".yaml"), got)
		})
	}
}

// A peer folded into the overflow stays there, so that cumulative series
// never move between a flow and the overflow.
func TestTCPBuilderPeerCapIsSticky(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.MaxPeersPerResource = 2
	b := newTestBuilder(cfg)
	var st tcpconn.FlowStats
	st.Opened[tcpconn.OutcomeEstablished] = 1
	snap := tcpconn.Snapshot{Flows: map[tcpconn.Flow]tcpconn.FlowStats{
		flow(podCgroup, tcpconn.DirectionClient, "198.18.0.20", 80, 0): st,
		flow(podCgroup, tcpconn.DirectionClient, "198.18.0.30", 80, 0): st,
		flow(podCgroup, tcpconn.DirectionClient, "198.18.0.40", 80, 0): st,
	}}
	now := pcommon.NewTimestampFromTime(time.Now())
	buildTCP(b, &snap, now)

	// A peer that sorts first arrives later: it is folded, the admitted
	// ones keep their own series.
	snap.Flows[flow(podCgroup, tcpconn.DirectionClient, "198.18.0.10", 80, 0)] = st
	got := buildTCP(b, &snap, now)
	compareGolden(t, filepath.Join("testdata", "tcpconn", "peer_cap_sticky.yaml"), got)
}

func newTestBuilder(cfg *Config) *tcpMetrics {
	return (&tcpSource{cfg: cfg.TCP}).newMetrics(testMetricsEnv(cfg)).(*tcpMetrics)
}

// enableMapDetail turns on the per-map metrics, off by default, so that the
// golden files cover them.
func enableMapDetail(cfg *Config) {
	cfg.Metrics.EbpfMapEntries.Enabled = true
	cfg.Metrics.EbpfMapUtilization.Enabled = true
}

// buildTCP does what the scraper does with a snapshot.
func buildTCP(b *tcpMetrics, snap *tcpconn.Snapshot, now pcommon.Timestamp) pmetric.Metrics {
	b.snap = *snap
	b.index()
	c := collector{mb: b.mb, res: testResources, parts: []metricsPart{b}}
	out, err := c.collect(now, func(pcommon.Timestamp) {})
	if err != nil {
		panic(err)
	}
	return out
}

func compareGolden(t *testing.T, path string, got pmetric.Metrics) {
	t.Helper()
	if os.Getenv("WRITE_GOLDEN") != "" {
		golden.WriteMetrics(t, path, got)
	}
	want, err := golden.ReadMetrics(path)
	require.NoError(t, err)
	require.NoError(t, pmetrictest.CompareMetrics(want, got,
		pmetrictest.IgnoreTimestamp(),
		pmetrictest.IgnoreStartTimestamp(),
		pmetrictest.IgnoreResourceMetricsOrder(),
		pmetrictest.IgnoreMetricsOrder(),
		pmetrictest.IgnoreMetricDataPointsOrder(),
	))
}

// The flows of a removed cgroup are dropped from the kernel once exported
// with no connection left; a removed cgroup with a live connection stays.
func TestTCPBuilderDropsRemovedCgroups(t *testing.T) {
	b := newTestBuilder(createDefaultConfig())
	var closed, open tcpconn.FlowStats
	closed.Opened[tcpconn.OutcomeEstablished], closed.Closed = 1, 1
	open.Opened[tcpconn.OutcomeEstablished] = 1
	gone := flow(goneCgroup, tcpconn.DirectionClient, "198.18.0.3", 80, 0)
	live := flow(podCgroup, tcpconn.DirectionClient, "198.18.0.3", 80, 0)
	snap := tcpconn.Snapshot{Flows: map[tcpconn.Flow]tcpconn.FlowStats{gone: closed, live: closed}}
	buildTCP(b, &snap, pcommon.NewTimestampFromTime(time.Now()))
	assert.Equal(t, []tcpconn.Flow{gone}, takeStale(&b.stale))
	assert.Empty(t, takeStale(&b.stale))

	snap.Flows[gone] = open
	buildTCP(b, &snap, pcommon.NewTimestampFromTime(time.Now()))
	assert.Empty(t, takeStale(&b.stale), "a connection is still open")
}
