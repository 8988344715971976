//go:build linux

package tcpsource

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

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
			flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.3", 8080, 0):          clientStats,
			flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "2001:db8::1", 443, 0):          timedOut,
			flow(sourcetest.ServiceCgroup, tcpconn.DirectionServer, "::ffff:198.18.0.2", 0, 80): serverStats,
			flow(sourcetest.ServiceCgroup, tcpconn.DirectionUnknown, "::ffff:198.18.0.9", 0, 0): adopted,
			flow(sourcetest.GoneCgroup, tcpconn.DirectionClient, "198.18.0.3", 5432, 0):         timedOut,
			{}: noSocket,
		},
		Lost: tcpconn.Lost{ConnsFull: 6, FlowsFull: 1},
	}
	snap.Overflow[tcpconn.DirectionServer] = kernelOverflow

	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{name: "all", modify: func(*Config) {}},
		{name: "no_rtt_histogram", modify: func(c *Config) { c.RTTHistogram = false }},
		{name: "peer_cap", modify: func(c *Config) { c.MaxPeersPerResource = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			b := newTestBuilder(cfg)
			got := buildTCP(t, b, &snap)
			sourcetest.CompareGolden(t, filepath.Join("testdata", tt.name+".yaml"), got)
		})
	}
}

// A peer folded into the overflow stays there, so that cumulative series
// never move between a flow and the overflow.
func TestTCPBuilderPeerCapIsSticky(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPeersPerResource = 2
	b := newTestBuilder(cfg)
	var st tcpconn.FlowStats
	st.Opened[tcpconn.OutcomeEstablished] = 1
	snap := tcpconn.Snapshot{Flows: map[tcpconn.Flow]tcpconn.FlowStats{
		flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.20", 80, 0): st,
		flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.30", 80, 0): st,
		flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.40", 80, 0): st,
	}}
	buildTCP(t, b, &snap)

	// A peer that sorts first arrives later: it is folded, the admitted
	// ones keep their own series.
	snap.Flows[flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.10", 80, 0)] = st
	got := buildTCP(t, b, &snap)
	sourcetest.CompareGolden(t, filepath.Join("testdata", "peer_cap_sticky.yaml"), got)
}

func newTestBuilder(cfg Config) *metrics {
	return (&Source{cfg: cfg}).NewMetrics(sourcetest.MetricsEnv()).(*metrics)
}

// buildTCP does what the scraper does with a snapshot.
func buildTCP(t *testing.T, b *metrics, snap *tcpconn.Snapshot) pmetric.Metrics {
	b.snap = *snap
	b.index()
	return sourcetest.Collect(t, source.MetricsEnv{MB: b.mb}, b)
}

// The flows of a removed cgroup are dropped from the kernel once exported
// with no connection left; a removed cgroup with a live connection stays.
func TestTCPBuilderDropsRemovedCgroups(t *testing.T) {
	b := newTestBuilder(DefaultConfig())
	var closed, open tcpconn.FlowStats
	closed.Opened[tcpconn.OutcomeEstablished], closed.Closed = 1, 1
	open.Opened[tcpconn.OutcomeEstablished] = 1
	gone := flow(sourcetest.GoneCgroup, tcpconn.DirectionClient, "198.18.0.3", 80, 0)
	live := flow(sourcetest.PodCgroup, tcpconn.DirectionClient, "198.18.0.3", 80, 0)
	snap := tcpconn.Snapshot{Flows: map[tcpconn.Flow]tcpconn.FlowStats{gone: closed, live: closed}}
	buildTCP(t, b, &snap)
	assert.Equal(t, []tcpconn.Flow{gone}, sourcetest.TakeStale(&b.stale))
	assert.Empty(t, sourcetest.TakeStale(&b.stale))

	snap.Flows[gone] = open
	buildTCP(t, b, &snap)
	assert.Empty(t, sourcetest.TakeStale(&b.stale), "a connection is still open")
}
