package httpsource

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

// The reasons of ebpf.http.lost counted in user space.
const (
	lostRingBufferFull      = "ring_buffer_full"
	lostDataNotCaptured     = "data_not_captured"
	lostRequestsDropped     = "requests_dropped"
	lostConnectionTableFull = "connection_table_full"
	lostSpanQueueFull       = "span_queue_full"
	lostUnknownProtocol     = "unknown_protocol"
)

// span is a finished exchange waiting to be linked and exported.
type span struct {
	x       exchange
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
	parent  pcommon.SpanID
	// fromHeader marks ids taken from a traceparent header.
	fromHeader bool
	// parentSpan is the span on this node it is a child of, if any.
	parentSpan *span
	added      time.Time
	// sent marks a span exported before its window ended, by express: its
	// ids and parent are final, and it stays queued only so that spans
	// that end later can join its trace.
	sent bool
}

// spanQueue holds finished exchanges for linkWindow so that the client and
// server spans of one request on this node, and the calls a server makes
// while serving, can be linked into one trace; then it exports them. A
// failed or slow span goes out at once instead (express).
type spanQueue struct {
	window time.Duration
	max    int
	policy spanPolicy
	// dropped counts the spans the policy did not export.
	dropped   atomic.Uint64
	res       source.Resources
	bootNS    int64
	countLost func(reason string, n uint64)
	// clientOf tells where the client end of a connection, local then
	// remote, is.
	clientOf func(connKey) clientEnd

	mu      sync.Mutex
	next    consumer.Traces // nil while no traces pipeline uses the receiver
	pending []*span
	// clients indexes pending's client spans by connection, local then
	// remote, each connection's in the order they came, which is the order
	// of their requests: express looks up a server span's client here.
	clients map[connKey][]*span
	// notable holds the failed and slow spans of pending not yet sent.
	notable []*span

	// linking is held by what links spans and marks them sent: a flush's
	// linking and express. Building and exporting need not hold it: they
	// read sent spans, which nothing changes, so express never waits for
	// a flush's export.
	linking sync.Mutex

	wake chan struct{} // a notable span came
	stop chan struct{}
	done sync.WaitGroup
}

func newSpanQueue(cfg Config, res source.Resources, bootNS int64, countLost func(string, uint64),
	clientOf func(connKey) clientEnd) *spanQueue {
	q := &spanQueue{
		window:    cfg.LinkWindow,
		max:       cfg.MaxPendingSpans,
		policy:    newSpanPolicy(cfg.Spans),
		res:       res,
		bootNS:    bootNS,
		countLost: countLost,
		clientOf:  clientOf,
		clients:   make(map[connKey][]*span),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	q.done.Go(q.runFlush)
	q.done.Go(q.runExpress)
	return q
}

// setConsumer starts (next != nil) or stops building spans.
func (q *spanQueue) setConsumer(next consumer.Traces) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.next = next
	if next == nil {
		q.pending, q.notable = nil, nil
		clear(q.clients)
	}
}

func (q *spanQueue) add(x *exchange) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == nil {
		return
	}
	if len(q.pending) >= q.max {
		q.countLost(lostSpanQueueFull, 1)
		return
	}
	s := &span{x: *x, added: time.Now()}
	s.spanID = randomSpanID()
	s.traceID = randomTraceID()
	if tid, sid, ok := parseTraceParent(x.traceParent); ok {
		s.traceID, s.fromHeader = tid, true
		if x.role == httpflow.Server {
			s.parent = sid // the caller's span
		} else {
			s.spanID = sid // the callee will name this span its parent
		}
	}
	q.pending = append(q.pending, s)
	indexClient(q.clients, s)
	if q.policy.notable(s) {
		q.notable = append(q.notable, s)
		select {
		case q.wake <- struct{}{}:
		default: // a wake is due already
		}
	}
}

// tick is how often pending spans are flushed, and how soon the notable
// spans that wait for a client span look for it again.
func (q *spanQueue) tick() time.Duration {
	return min(max(q.window/4, 10*time.Millisecond), 250*time.Millisecond)
}

func (q *spanQueue) runFlush() {
	tick := time.NewTicker(q.tick())
	defer tick.Stop()
	for {
		select {
		case <-q.stop:
			q.flush(true)
			return
		case <-tick.C:
			q.flush(false)
		}
	}
}

func (q *spanQueue) runExpress() {
	// retry looks again for the client spans that held spans wait for; it
	// runs only while some wait.
	retry := time.NewTimer(q.tick())
	retry.Stop()
	for {
		select {
		case <-q.stop:
			return // the final flush sends what waits
		case <-q.wake:
		case <-retry.C:
		}
		if q.express() {
			retry.Reset(q.tick())
		}
	}
}

func (q *spanQueue) close() {
	close(q.stop)
	q.done.Wait()
}

// express exports the notable spans without waiting for the window, each
// with the client span on this node that sent its request. A server span
// whose client end is traced here but whose client span has not come yet
// waits for it: it comes as soon as the client reads the response. The
// spans a notable span's process started while serving it, and those that
// enclose it, are linked and exported at the window as usual; the ones
// that end after it join its trace but not as its parent, its parent id
// being out already. It reports whether some spans wait.
func (q *spanQueue) express() (held bool) {
	q.mu.Lock()
	next, waiting := q.next, q.notable
	q.notable = nil
	// The client spans of the waiting servers' connections. add only
	// appends, so these stay as they are once the lock is let go.
	clients := make(map[connKey][]*span)
	for _, s := range waiting {
		if k := (connKey{s.x.remote, s.x.local}); s.x.role == httpflow.Server {
			clients[k] = q.clients[k]
		}
	}
	q.mu.Unlock()
	if next == nil || len(waiting) == 0 {
		return false
	}
	q.linking.Lock()
	var out, hold []*span
	for _, s := range waiting {
		if s.sent {
			continue // exported by a flush meanwhile
		}
		if s.x.role == httpflow.Server && s.parentSpan == nil && !s.fromHeader {
			s.parentSpan = parentOf(s, clients, nil)
			if s.parentSpan == nil && q.awaitsClient(s) {
				hold = append(hold, s)
				continue
			}
		}
		if p := s.parentSpan; p != nil && !p.sent {
			out = append(out, send(p))
		}
		out = append(out, send(s))
	}
	q.linking.Unlock()
	if len(hold) > 0 {
		q.mu.Lock()
		if q.next != nil {
			q.notable = append(q.notable, hold...)
		}
		q.mu.Unlock()
	}
	if len(out) > 0 {
		_ = next.ConsumeTraces(context.Background(), q.build(out))
	}
	return len(hold) > 0
}

// clientEnd is where the client end of a server's connection is.
type clientEnd int

const (
	clientElsewhere clientEnd = iota // not on this node
	clientTraced                     // traced here: its span will come
	// clientMaybe: not traced yet, from an address of this node. A new
	// connection's first request write may reach the ring after its
	// answer: the client's record is submitted as its write ends, which
	// the peer's read and answer can overtake.
	clientMaybe
)

// clientGrace is how long a server span whose client may be on this node
// (clientMaybe) waits for the client's connection to be seen.
const clientGrace = 100 * time.Millisecond

// awaitsClient reports whether server span s is to wait for its client's
// span.
func (q *spanQueue) awaitsClient(s *span) bool {
	switch q.clientOf(connKey{s.x.remote, s.x.local}) {
	case clientTraced:
		return true
	case clientMaybe:
		return time.Since(s.added) < clientGrace
	}
	return false
}

// send fixes s's ids from its links so far and marks it sent.
func send(s *span) *span {
	if s.parentSpan != nil {
		s.parent = s.parentSpan.spanID
		if !s.fromHeader {
			s.traceID = rootOf(s).traceID
		}
	}
	s.sent = true
	return s
}

// flush links every pending span and exports those older than the window,
// or all of them, that the policy keeps and express has not sent. Linking
// runs outside q.mu, so that the read loop never waits for it, and the
// export outside linking, so that express never waits for that.
func (q *spanQueue) flush(all bool) {
	q.mu.Lock()
	next, pending := q.next, q.pending
	q.pending = nil
	// add only appends to a connection's list and unindex makes a new one
	// when it cuts from the middle, so the lists stay as they are.
	clients := maps.Clone(q.clients)
	q.mu.Unlock()
	if next == nil || len(pending) == 0 {
		return
	}
	q.linking.Lock()
	link(pending, clients)
	// pending is in the order spans came: those older than the window
	// lead.
	n := len(pending)
	if !all {
		cutoff := time.Now().Add(-q.window)
		n, _ = slices.BinarySearchFunc(pending, cutoff, func(s *span, t time.Time) int { return s.added.Compare(t) })
	}
	gone, keep := pending[:n], pending[n:]
	ready := make([]*span, 0, len(gone))
	for _, s := range gone {
		if !s.sent {
			s.sent = true
			ready = append(ready, s)
		}
	}
	kept := q.policy.keep(ready, pending)
	q.linking.Unlock()
	q.mu.Lock()
	if q.next != nil {
		q.pending = append(keep, q.pending...)
		q.unindex(gone)
	}
	q.mu.Unlock()
	clear(gone) // keep's array holds them no longer
	q.dropped.Add(uint64(len(ready) - len(kept)))
	for len(kept) > 0 {
		n := min(len(kept), exportBatch)
		_ = next.ConsumeTraces(context.Background(), q.build(kept[:n]))
		kept = kept[n:]
	}
}

// unindex takes the spans that left pending, in the order they came, out
// of clients. A connection's spans leave in the order they came, so each
// is at the front of its list; the search after that is a safeguard.
// q.mu is held.
func (q *spanQueue) unindex(gone []*span) {
	for _, s := range gone {
		if s.x.role != httpflow.Client {
			continue
		}
		k := connKey{s.x.local, s.x.remote}
		l := q.clients[k]
		if len(l) > 0 && l[0] == s {
			l = l[1:]
		} else if i := slices.Index(l, s); i >= 0 {
			// A new array: express may be reading this one.
			l = slices.Concat(l[:i], l[i+1:])
		}
		if len(l) == 0 {
			delete(q.clients, k)
		} else {
			q.clients[k] = l
		}
	}
}

// exportBatch is the most spans a flush hands over at once: the exporter
// held several whole windows at a time.
const exportBatch = 1024

// connKey is a connection seen from one end: local then remote.
type connKey struct{ local, remote netip.AddrPort }

// link sets each span's parent and trace from the spans on this node, with
// clients indexing the client spans (indexClient):
//   - a server span's parent is the client span of the same connection, seen
//     from the other end, that sent its request;
//   - a client span's parent is the latest server span of the same process
//     that encloses it: the request it serves.
//
// Ids from traceparent headers win over both. A span express sent keeps
// its ids: the spans that would be its parent join its trace instead.
// Spans are indexed by connection and by process, each in request start
// order, so linking costs time in proportion to the spans, not their
// square.
func link(spans []*span, clients map[connKey][]*span) {
	servers := serversByPID(spans)
	var adopt []*span // sent spans, then the parent whose trace takes theirs
	for _, s := range spans {
		if s.parentSpan != nil || (s.fromHeader && s.x.role == httpflow.Server) {
			continue
		}
		p := parentOf(s, clients, servers)
		if s.sent {
			if p != nil {
				adopt = append(adopt, s, p)
			}
			continue
		}
		s.parentSpan = p
	}
	for i := 0; i < len(adopt); i += 2 {
		if r := rootOf(adopt[i+1]); !r.sent && !r.fromHeader {
			r.traceID = adopt[i].traceID
		}
	}
	for _, s := range spans {
		if s.parentSpan == nil || s.sent {
			continue
		}
		s.parent = s.parentSpan.spanID
		if !s.fromHeader {
			s.traceID = rootOf(s).traceID
		}
	}
}

// indexClient adds s to clients if it is a client span. Spans come in
// the order their exchanges end, which on one connection is the order
// their requests start: so each connection's list is sorted by request
// start as it grows.
func indexClient(clients map[connKey][]*span, s *span) {
	if s.x.role == httpflow.Client {
		k := connKey{s.x.local, s.x.remote}
		clients[k] = append(clients[k], s)
	}
}

// byRequestStart orders spans by request start, then request number.
func byRequestStart(a, b *span) int {
	return cmp.Or(cmp.Compare(a.x.start, b.x.start), cmp.Compare(a.x.seq, b.x.seq))
}

// processServers is one process's server spans sorted by request start,
// and the longest of their durations.
type processServers struct {
	spans   []*span
	longest uint64
}

// serversByPID indexes the server spans of the processes that have client
// spans with no parent yet: only those are looked up.
func serversByPID(spans []*span) map[uint32]*processServers {
	servers := make(map[uint32]*processServers)
	for _, s := range spans {
		if s.x.role == httpflow.Client && s.parentSpan == nil && servers[s.x.pid] == nil {
			servers[s.x.pid] = &processServers{}
		}
	}
	for _, s := range spans {
		p := servers[s.x.pid]
		if p == nil || s.x.role != httpflow.Server {
			continue
		}
		p.spans = append(p.spans, s)
		p.longest = max(p.longest, uint64(s.x.duration()))
	}
	for _, p := range servers {
		slices.SortFunc(p.spans, byRequestStart)
	}
	return servers
}

// parentOf finds s's parent among the indexed spans, or nil.
func parentOf(s *span, clients map[connKey][]*span, servers map[uint32]*processServers) *span {
	if s.x.role == httpflow.Server {
		return sameRequest(s, clients[connKey{s.x.remote, s.x.local}])
	}
	p := servers[s.x.pid]
	if p == nil {
		return nil
	}
	// The latest server span that started by s's start and encloses it. No
	// server span that started before s's end minus the longest can.
	i, _ := slices.BinarySearchFunc(p.spans, s.x.start, func(o *span, t uint64) int {
		if o.x.start <= t {
			return -1
		}
		return 1
	})
	for j := i - 1; j >= 0; j-- {
		o := p.spans[j]
		if o.x.start+p.longest < s.x.end {
			break
		}
		// The server end of s's own connection is its callee, never its
		// parent, though on loopback it may seem to enclose it.
		callee := o.x.local == s.x.remote && o.x.remote == s.x.local
		if !callee && encloses(o, s) && (!s.fromHeader || o.traceID == s.traceID) {
			return o
		}
	}
	return nil
}

// sameRequest returns the client span, of those on s's connection sorted
// by request start, that sent the request server span s received: the one
// with s's request number if their requests overlap, as both ends number a
// connection's requests alike when both were traced from its start (which
// tells apart requests pipelined in one syscall); else, of those whose
// requests overlap s's, the one that started nearest to it. Enclosing is
// not required: the server's write may return after the client has read
// the answer.
func sameRequest(s *span, clients []*span) *span {
	overlaps := func(o *span) bool {
		return o.x.start <= s.x.end && s.x.start <= o.x.end
	}
	if s.x.seq != 0 {
		// Requests start in order: the numbers sort as the starts do.
		j, ok := slices.BinarySearchFunc(clients, s.x.seq, func(o *span, n uint64) int { return cmp.Compare(o.x.seq, n) })
		if ok && overlaps(clients[j]) {
			return clients[j]
		}
	}
	i, _ := slices.BinarySearchFunc(clients, s.x.start, func(o *span, t uint64) int { return cmp.Compare(o.x.start, t) })
	var best *span
	// Of those that started before s, the latest that overlaps it: on a
	// connection of sequential requests, the one just before.
	for j := i - 1; j >= 0; j-- {
		if overlaps(clients[j]) {
			best = clients[j]
			break
		}
	}
	// Of those that started since, the first, if it started within s and
	// nearer than best.
	if i < len(clients) && clients[i].x.start <= s.x.end &&
		(best == nil || clients[i].x.start-s.x.start < s.x.start-best.x.start) {
		best = clients[i]
	}
	return best
}

// encloses reports whether o's request began before s's and ended after.
func encloses(o, s *span) bool {
	return o.x.start <= s.x.start && s.x.end <= o.x.end
}

// rootOf follows parents to the top of s's chain on this node, or to the
// first sent span on it, whose trace is out already.
func rootOf(s *span) *span {
	for range 64 { // a chain is as deep as the calls; bound it anyway
		if s.parentSpan == nil || s.fromHeader || s.sent {
			return s
		}
		s = s.parentSpan
	}
	return s
}

// build turns spans into OTLP traces, one Resource per cgroup.
func (q *spanQueue) build(spans []*span) ptrace.Traces {
	byCgroup := make(map[uint64][]*span)
	for _, s := range spans {
		byCgroup[s.x.cgroupID] = append(byCgroup[s.x.cgroupID], s)
	}
	_ = q.res.Paths.Resolve(maps.Keys(byCgroup)) // a failure leaves paths out, never spans
	td := ptrace.NewTraces()
	addrs := addrStrings{}
	for _, id := range slices.Sorted(maps.Keys(byCgroup)) {
		rs := td.ResourceSpans().AppendEmpty()
		q.res.Cgroup(id).MoveTo(rs.Resource())
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName(metadata.ScopeName)
		ss.Spans().EnsureCapacity(len(byCgroup[id]))
		for _, s := range byCgroup[id] {
			q.fill(ss.Spans().AppendEmpty(), s, addrs)
		}
	}
	return td
}

// addrStrings formats each address once per batch: its spans share a few
// peers.
type addrStrings map[netip.Addr]string

func (m addrStrings) of(a netip.Addr) string {
	s, ok := m[a]
	if !ok {
		s = a.String()
		m[a] = s
	}
	return s
}

func (q *spanQueue) fill(out ptrace.Span, s *span, addrs addrStrings) {
	x := &s.x
	out.SetTraceID(s.traceID)
	out.SetSpanID(s.spanID)
	out.SetParentSpanID(s.parent)
	out.SetStartTimestamp(pcommon.Timestamp(q.bootNS + int64(x.start)))
	out.SetEndTimestamp(pcommon.Timestamp(q.bootNS + int64(x.end)))
	a := out.Attributes()
	// The room these attributes take is most of a span's memory: make just
	// enough.
	proto := protocols[x.protocol]
	n := 7 + proto.spanAttributes // with server.address and port
	if x.exe == "" {
		n -= 2
	}
	if x.role == httpflow.Server {
		n++
	}
	if x.errType != "" {
		n++
	}
	a.EnsureCapacity(n)
	remote := addrs.of(x.remote.Addr())
	a.PutStr("network.peer.address", remote)
	a.PutInt("network.peer.port", int64(x.remote.Port()))
	a.PutInt("process.pid", int64(x.pid))
	if x.exe != "" {
		a.PutStr("process.executable.name", x.exe)
		a.PutStr("process.command", x.command)
	}
	// server.address is the server's IP, never a header's value.
	serverAddr, serverPort := remote, x.remote.Port()
	if x.role == httpflow.Server {
		out.SetKind(ptrace.SpanKindServer)
		a.PutStr("client.address", remote)
		serverAddr, serverPort = addrs.of(x.local.Addr()), x.local.Port()
	} else {
		out.SetKind(ptrace.SpanKindClient)
	}
	a.PutStr("server.address", serverAddr)
	a.PutInt("server.port", int64(serverPort))
	if x.errType != "" {
		a.PutStr("error.type", x.errType)
		out.Status().SetCode(ptrace.StatusCodeError)
		if x.err != nil {
			out.Status().SetMessage(x.err.Error())
		}
	}
	proto.fillSpan(out, x, addrs)
}

// parseTraceParent reads the trace and parent span ids of a W3C
// traceparent header, "00-<32 hex>-<16 hex>-<2 hex>".
func parseTraceParent(h string) (pcommon.TraceID, pcommon.SpanID, bool) {
	var tid pcommon.TraceID
	var sid pcommon.SpanID
	if len(h) != 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return tid, sid, false
	}
	if _, err := hex.Decode(tid[:], []byte(h[3:35])); err != nil {
		return tid, sid, false
	}
	if _, err := hex.Decode(sid[:], []byte(h[36:52])); err != nil {
		return tid, sid, false
	}
	return tid, sid, !tid.IsEmpty() && !sid.IsEmpty()
}

func randomTraceID() (id pcommon.TraceID) {
	for id.IsEmpty() {
		binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func randomSpanID() (id pcommon.SpanID) {
	for id.IsEmpty() {
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
