//go:build linux

package tcpsource

import (
	"cmp"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

var (
	directions = map[tcpconn.Direction]metadata.AttributeTCPConnectionDirection{
		tcpconn.DirectionClient:  metadata.AttributeTCPConnectionDirectionClient,
		tcpconn.DirectionServer:  metadata.AttributeTCPConnectionDirectionServer,
		tcpconn.DirectionUnknown: metadata.AttributeTCPConnectionDirectionUnknown,
	}
	outcomes = [tcpconn.OutcomeCount]metadata.AttributeTCPConnectionOutcome{
		tcpconn.OutcomeEstablished: metadata.AttributeTCPConnectionOutcomeEstablished,
		tcpconn.OutcomeRefused:     metadata.AttributeTCPConnectionOutcomeRefused,
		tcpconn.OutcomeTimedOut:    metadata.AttributeTCPConnectionOutcomeTimedOut,
		tcpconn.OutcomeReset:       metadata.AttributeTCPConnectionOutcomeReset,
		tcpconn.OutcomeFailed:      metadata.AttributeTCPConnectionOutcomeFailed,
	}
)

// series is one exported set of TCP data points: a flow, or the overflow of
// a resource and direction.
type series struct {
	direction tcpconn.Direction
	peer      string
	peerPort  int64
	localPort int64
	overflow  bool
	stats     tcpconn.FlowStats
}

// Load loads the TCP metrics and records the status of each of their
// parts.
func Load(cfg Config, _ source.Env) (source.Source, []source.Capability, error) {
	tr, caps, err := source.LoadParts("tcp", tcpconn.Hooks, tcpconn.Parts(), cfg.Enabled, cfg.Required, func() (*tcpconn.Tracer, error) {
		return tcpconn.Load(tcpconn.Options{
			MaxConnections:    uint32(cfg.MaxConnections),
			MaxFlows:          uint32(cfg.MaxFlows),
			RTTSampleInterval: cfg.RTTSampleInterval,
			AttachTo:          cfg.Faults.AttachTo,
			RejectProgram:     cfg.Faults.RejectProgram,
		})
	})
	if tr == nil {
		return nil, caps, err
	}
	return &Source{tracer: tr, cfg: cfg}, caps, nil
}

// Source is the loaded TCP capability.
type Source struct {
	tracer *tcpconn.Tracer
	cfg    Config
}

func (s *Source) Kernel() source.KernelObjects { return s.tracer }
func (s *Source) Close() error                 { return s.tracer.Close() }

// Tracer is the loaded kernel side, for tests that read its maps.
func (s *Source) Tracer() *tcpconn.Tracer { return s.tracer }

func (s *Source) NewMetrics(env source.MetricsEnv) source.MetricsPart {
	return &metrics{
		tracer:       s.tracer,
		logger:       env.Logger,
		mb:           env.MB,
		start:        env.Start,
		capConns:     int64(s.cfg.MaxConnections),
		capFlows:     int64(s.cfg.MaxFlows),
		removed:      env.Removed,
		maxPeers:     s.cfg.MaxPeersPerResource,
		rttHistogram: s.cfg.RTTHistogram,
		admitted:     make(map[uint64]map[tcpconn.Flow]struct{}),
	}
}

// metrics turns kernel flow snapshots into metrics, with at most
// maxPeers series per resource.
type metrics struct {
	tracer       *tcpconn.Tracer // nil in tests that set snapshots by hand
	logger       *zap.Logger
	mb           *metadata.MetricsBuilder
	start        pcommon.Timestamp
	maxPeers     int
	rttHistogram bool
	capConns     int64
	capFlows     int64
	// removed reports a removed cgroup; its flows are dropped from the
	// kernel once exported with no connection left.
	removed func(id uint64) bool
	stale   source.StaleKeys[tcpconn.Flow]
	// admitted holds, per cgroup, the flows exported as their own series.
	// Admission is sticky so that cumulative series never move between a
	// flow and the overflow.
	admitted map[uint64]map[tcpconn.Flow]struct{}
	// snap is the snapshot being recorded, and byCgroup its flows.
	snap     tcpconn.Snapshot
	byCgroup map[uint64][]tcpconn.Flow
	// lost is what the last collection reported lost, to warn of growth.
	lost tcpconn.Lost
	// rtt holds the series of the resource being recorded that have RTT
	// samples: mdatagen cannot build histograms, so appendHistograms does.
	rtt []series
}

func (b *metrics) Snapshot() error {
	if err := b.tracer.Snapshot(&b.snap); err != nil {
		return err
	}
	b.warnLost()
	b.index()
	return nil
}

func (b *metrics) warnLost() {
	if b.snap.Lost == b.lost {
		return
	}
	b.logger.Warn("tcp kernel maps are full; see ebpf.tcp.lost",
		zap.Uint64("connections_untracked", b.snap.Lost.ConnsFull-b.lost.ConnsFull),
		zap.Uint64("flow_updates_in_overflow", b.snap.Lost.FlowsFull-b.lost.FlowsFull))
	b.lost = b.snap.Lost
}

// index groups the snapshot's flows by cgroup and forgets the admissions of
// cgroups gone from it.
func (b *metrics) index() {
	b.byCgroup = source.ByCgroup(b.snap.Flows, func(f tcpconn.Flow) uint64 { return f.CgroupId })
	for id := range b.admitted {
		if _, ok := b.byCgroup[id]; !ok {
			delete(b.admitted, id)
		}
	}
}

// cgroups yields the cgroups that have flows. Cgroup 0, what no socket
// owns, goes on the node.
func (b *metrics) Cgroups(yield func(uint64) bool) {
	for id := range b.byCgroup {
		if id != 0 && !yield(id) {
			return
		}
	}
}

// record records the flows of one cgroup, folding those past the peer cap
// into one overflow series per direction.
func (b *metrics) Record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	flows := b.byCgroup[id]
	if len(flows) == 0 {
		return
	}
	slices.SortFunc(flows, compareFlows)
	b.recordCgroup(id, flows, &b.snap, now)
	b.appendRTT(histograms, now)
	if b.removed(id) && !slices.ContainsFunc(flows, func(f tcpconn.Flow) bool {
		st := b.snap.Flows[f]
		return st.Active() > 0
	}) {
		b.stale.Add(flows...)
	}
}

// dropStale drops from the kernel the flows of removed cgroups, exported for
// the last time.
func (b *metrics) DropStale() error { return b.stale.Drop(b.tracer.DeleteFlows) }

// recordNode records what no socket owns and what the kernel could not keep
// per flow.
func (b *metrics) RecordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	for _, f := range b.byCgroup[0] {
		b.recordSeries(series{direction: tcpconn.Direction(f.Direction), stats: b.snap.Flows[f]}, now)
	}
	for d, st := range b.snap.Overflow {
		if st != (tcpconn.FlowStats{}) {
			b.recordSeries(series{direction: tcpconn.Direction(d), overflow: true, stats: st}, now)
		}
	}
	b.mb.RecordEbpfTCPLostDataPoint(now, int64(b.snap.Lost.ConnsFull), metadata.AttributeEbpfLostReasonConnectionsMapFull)
	b.mb.RecordEbpfTCPLostDataPoint(now, int64(b.snap.Lost.FlowsFull), metadata.AttributeEbpfLostReasonFlowsMapFull)
	source.RecordMapFill(b.mb, now, int64(b.snap.Conns), b.capConns, metadata.AttributeEbpfMapTCPConnections)
	source.RecordMapFill(b.mb, now, int64(len(b.snap.Flows)), b.capFlows, metadata.AttributeEbpfMapTCPFlows)
	b.appendRTT(histograms, now)
}

// recordCgroup records the flows of one cgroup, folding those past the peer
// cap into one overflow series per direction.
func (b *metrics) recordCgroup(id uint64, flows []tcpconn.Flow, snap *tcpconn.Snapshot, now pcommon.Timestamp) {
	admitted := b.admitted[id]
	if admitted == nil {
		admitted = make(map[tcpconn.Flow]struct{})
		b.admitted[id] = admitted
	}
	var folded [3]series
	var foldedPeers [3]int64
	for _, f := range flows {
		if _, ok := admitted[f]; !ok && len(admitted) < b.maxPeers {
			admitted[f] = struct{}{}
			ok = true
		}
		st := snap.Flows[f]
		if _, ok := admitted[f]; ok {
			b.recordSeries(flowSeries(f, st), now)
			continue
		}
		d := int(f.Direction) % len(folded)
		folded[d].direction = tcpconn.Direction(f.Direction)
		folded[d].overflow = true
		folded[d].stats.Add(&st)
		foldedPeers[d]++
	}
	for d := range folded {
		if foldedPeers[d] > 0 {
			b.recordSeries(folded[d], now)
			b.mb.RecordTCPConnectionPeersFoldedDataPoint(now, foldedPeers[d], directions[folded[d].direction])
		}
	}
}

func flowSeries(f tcpconn.Flow, st tcpconn.FlowStats) series {
	s := series{direction: tcpconn.Direction(f.Direction), stats: st}
	if a := f.Peer(); a.IsValid() {
		s.peer = a.String()
	}
	// The kernel sets only the port that belongs to the direction.
	s.peerPort = int64(f.PeerPort)
	s.localPort = int64(f.LocalPort)
	return s
}

func (b *metrics) recordSeries(s series, now pcommon.Timestamp) {
	dir := directions[s.direction]
	st := &s.stats
	for o, n := range st.Opened {
		if n > 0 {
			b.mb.RecordTCPConnectionOpenedDataPoint(now, int64(n), dir, outcomes[o], s.peer, s.peerPort, s.localPort, s.overflow)
		}
	}
	if st.Opened[tcpconn.OutcomeEstablished]+st.Adopted > 0 {
		b.mb.RecordTCPConnectionActiveDataPoint(now, st.Active(), dir, s.peer, s.peerPort, s.localPort, s.overflow)
	}
	for _, v := range []struct {
		n   uint64
		dir metadata.AttributeNetworkIoDirection
	}{
		{st.BytesSent, metadata.AttributeNetworkIoDirectionTransmit},
		{st.BytesReceived, metadata.AttributeNetworkIoDirectionReceive},
	} {
		if v.n > 0 {
			b.mb.RecordTCPConnectionIoDataPoint(now, int64(v.n), dir, v.dir, s.peer, s.peerPort, s.localPort, s.overflow)
		}
	}
	if st.Retransmits > 0 {
		b.mb.RecordTCPConnectionRetransmitsDataPoint(now, int64(st.Retransmits), dir, s.peer, s.peerPort, s.localPort, s.overflow)
	}
	if st.ResetsSent > 0 {
		b.mb.RecordTCPConnectionResetsDataPoint(now, int64(st.ResetsSent), dir, metadata.AttributeNetworkIoDirectionTransmit, s.peer, s.peerPort, s.localPort, s.overflow)
	}
	if st.ResetsReceived > 0 {
		b.mb.RecordTCPConnectionResetsDataPoint(now, int64(st.ResetsReceived), dir, metadata.AttributeNetworkIoDirectionReceive, s.peer, s.peerPort, s.localPort, s.overflow)
	}
	if b.rttHistogram && st.RttCount > 0 {
		b.rtt = append(b.rtt, s)
	}
}

func compareFlows(a, b tcpconn.Flow) int {
	return cmp.Or(
		cmp.Compare(a.Direction, b.Direction),
		slices.Compare(a.PeerAddr[:], b.PeerAddr[:]),
		cmp.Compare(a.PeerPort, b.PeerPort),
		cmp.Compare(a.LocalPort, b.LocalPort),
	)
}

// appendRTT adds the tcp.connection.rtt histogram of the series recorded
// since the last call.
func (b *metrics) appendRTT(metrics pmetric.MetricSlice, now pcommon.Timestamp) {
	if len(b.rtt) == 0 {
		return
	}
	defer func() { b.rtt = b.rtt[:0] }()
	dps := source.NewDurationHistogram(metrics, "tcp.connection.rtt",
		"Smoothed round-trip time of TCP connections, sampled at most once per connection per tcp.rtt_sample_interval.")
	for i := range b.rtt {
		s := &b.rtt[i]
		dp := dps.AppendEmpty()
		source.SetPow2Histogram(dp, b.start, now, s.stats.RttCount, s.stats.RttSumUs*1000, s.stats.RttBuckets[:])
		attrs := dp.Attributes()
		attrs.PutStr("tcp.connection.direction", directions[s.direction].String())
		if s.peer != "" {
			attrs.PutStr("network.peer.address", s.peer)
		}
		if s.peerPort != 0 {
			attrs.PutInt("network.peer.port", s.peerPort)
		}
		if s.localPort != 0 {
			attrs.PutInt("network.local.port", s.localPort)
		}
		if s.overflow {
			attrs.PutBool("otel.metric.overflow", true)
		}
	}
}
