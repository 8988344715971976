//go:build linux

package ebpfreceiver

import (
	"cmp"
	"errors"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
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

// loadTCP loads the TCP metrics and records the status of each of their
// parts.
func loadTCP(cfg *Config, _ sourceEnv) (source, []capability, error) {
	hooks := tcpconn.Hooks()
	if !cfg.TCP.Enabled {
		return nil, disabledParts(hooks, tcpconn.Parts()), nil
	}
	tr, err := tcpconn.Load(tcpconn.Options{
		MaxConnections:    uint32(cfg.TCP.MaxConnections),
		MaxFlows:          uint32(cfg.TCP.MaxFlows),
		RTTSampleInterval: cfg.TCP.RTTSampleInterval,
		AttachTo:          cfg.tcpAttachTo,
		RejectProgram:     cfg.tcpRejectProgram,
	})
	var disabled map[string]error
	if err == nil {
		disabled = tr.Disabled()
	}
	caps, capErr := partStatus("tcp", hooks, tcpconn.Parts(), cfg.TCP.Required, err, disabled)
	if err != nil {
		return nil, caps, capErr
	}
	src := &tcpSource{tracer: tr, cfg: cfg.TCP}
	if capErr != nil {
		return nil, nil, errors.Join(capErr, src.close())
	}
	return src, caps, nil
}

// tcpSource is the TCP capability.
type tcpSource struct {
	tracer *tcpconn.Tracer
	cfg    TCPConfig
}

func (s *tcpSource) kernel() kernelObjects { return s.tracer }
func (s *tcpSource) close() error          { return s.tracer.Close() }

func (s *tcpSource) newMetrics(env metricsEnv) metricsPart {
	return newTCPMetrics(s.tracer, env, s.cfg)
}

// tcpMetrics turns kernel flow snapshots into metrics, with at most
// maxPeers series per resource.
type tcpMetrics struct {
	tracer       *tcpconn.Tracer // nil in tests that load snapshots by hand
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
	stale   staleKeys[tcpconn.Flow]
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

func newTCPMetrics(tr *tcpconn.Tracer, env metricsEnv, cfg TCPConfig) *tcpMetrics {
	return &tcpMetrics{
		tracer:       tr,
		logger:       env.logger,
		mb:           env.mb,
		start:        env.start,
		capConns:     int64(cfg.MaxConnections),
		capFlows:     int64(cfg.MaxFlows),
		removed:      env.removed,
		maxPeers:     cfg.MaxPeersPerResource,
		rttHistogram: cfg.RTTHistogram,
		admitted:     make(map[uint64]map[tcpconn.Flow]struct{}),
	}
}

func (b *tcpMetrics) snapshot() error {
	if err := b.tracer.Snapshot(&b.snap); err != nil {
		return err
	}
	b.warnLost()
	b.index()
	return nil
}

func (b *tcpMetrics) warnLost() {
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
func (b *tcpMetrics) index() {
	b.byCgroup = make(map[uint64][]tcpconn.Flow)
	for f := range b.snap.Flows {
		b.byCgroup[f.CgroupId] = append(b.byCgroup[f.CgroupId], f)
	}
	for id := range b.admitted {
		if _, ok := b.byCgroup[id]; !ok {
			delete(b.admitted, id)
		}
	}
}

// cgroups yields the cgroups that have flows. Cgroup 0, what no socket
// owns, goes on the node.
func (b *tcpMetrics) cgroups(yield func(uint64) bool) {
	for id := range b.byCgroup {
		if id != 0 && !yield(id) {
			return
		}
	}
}

// record records the flows of one cgroup, folding those past the peer cap
// into one overflow series per direction.
func (b *tcpMetrics) record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
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
		b.stale.add(flows...)
	}
}

// dropStale drops from the kernel the flows of removed cgroups, exported for
// the last time.
func (b *tcpMetrics) dropStale() error { return b.stale.drop(b.tracer.DeleteFlows) }

// recordNode records what no socket owns and what the kernel could not keep
// per flow.
func (b *tcpMetrics) recordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
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
	recordMapFill(b.mb, now, int64(b.snap.Conns), b.capConns, metadata.AttributeEbpfMapTCPConnections)
	recordMapFill(b.mb, now, int64(len(b.snap.Flows)), b.capFlows, metadata.AttributeEbpfMapTCPFlows)
	b.appendRTT(histograms, now)
}

// recordCgroup records the flows of one cgroup, folding those past the peer
// cap into one overflow series per direction.
func (b *tcpMetrics) recordCgroup(id uint64, flows []tcpconn.Flow, snap *tcpconn.Snapshot, now pcommon.Timestamp) {
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

func (b *tcpMetrics) recordSeries(s series, now pcommon.Timestamp) {
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
func (b *tcpMetrics) appendRTT(metrics pmetric.MetricSlice, now pcommon.Timestamp) {
	if len(b.rtt) == 0 {
		return
	}
	defer func() { b.rtt = b.rtt[:0] }()
	dps := newDurationHistogram(metrics, "tcp.connection.rtt",
		"Smoothed round-trip time of TCP connections, sampled at most once per connection per tcp.rtt_sample_interval.")
	for i := range b.rtt {
		s := &b.rtt[i]
		dp := dps.AppendEmpty()
		setPow2Histogram(dp, b.start, now, s.stats.RttCount, s.stats.RttSumUs*1000, s.stats.RttBuckets[:])
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
