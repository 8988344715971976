package httpsource

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

var (
	clientAddr = netip.MustParseAddrPort("198.18.0.1:40000")
	serverAddr = netip.MustParseAddrPort("198.18.0.2:80")
)

func testSpan(role httpflow.Role, pid uint32, reqStart, respEnd uint64) *span {
	x := newHTTP1Exchange(role, httpflow.Exchange{RequestStart: reqStart, ResponseEnd: respEnd})
	x.pid, x.local, x.remote = pid, clientAddr, serverAddr
	if role == httpflow.Server {
		x.local, x.remote = serverAddr, clientAddr
	}
	return &span{x: x, traceID: randomTraceID(), spanID: randomSpanID()}
}

// setHTTP changes the HTTP fields of x with f, keeping its place, times
// and request number unless f sets them.
func setHTTP(x *exchange, f func(*httpflow.Exchange)) {
	e := httpflow.Exchange{Method: x.http.method, Target: x.http.path, Version: x.http.version, Status: x.http.status,
		TraceParent: x.traceParent, Err: x.err, RequestStart: x.start, ResponseEnd: x.end, Seq: x.seq}
	f(&e)
	place := *x
	*x = newHTTP1Exchange(x.role, e)
	x.local, x.remote, x.cgroupID, x.pid, x.exe, x.command = place.local, place.remote, place.cgroupID, place.pid, place.exe, place.command
}

// clientIndex indexes the client spans of spans in the order given, as
// the queue's add does.
func clientIndex(spans []*span) map[connKey][]*span {
	clients := make(map[connKey][]*span)
	for _, s := range spans {
		indexClient(clients, s)
	}
	return clients
}

func linkAll(spans []*span) { link(spans, clientIndex(spans)) }

// Three requests on one keep-alive connection, the server reading each
// after the client began to write it and returning from its answer's write
// before or after the client read the answer: each server span is the
// child of the client span that sent it.
func TestLinkSameConnection(t *testing.T) {
	var clients, servers []*span
	for i, skew := range []int64{3_000, 20_000, -2_000} { // server end minus client end, ns
		start := uint64(1_000_000 * (i + 1))
		clients = append(clients, testSpan(httpflow.Client, 1, start, start+500_000))
		servers = append(servers, testSpan(httpflow.Server, 2, start+1_000, uint64(int64(start)+500_000+skew)))
	}
	linkAll(append(append([]*span{}, servers...), clients...))
	for i := range servers {
		assert.Same(t, clients[i], servers[i].parentSpan, "request %d", i)
		assert.Equal(t, clients[i].spanID, servers[i].parent, "request %d", i)
		assert.Equal(t, clients[i].traceID, servers[i].traceID, "request %d", i)
		assert.Nil(t, clients[i].parentSpan, "request %d", i)
	}
}

// Two requests pipelined in one write, whose responses the client read in
// one call: both client spans have the same times, and each server span is
// the child of the one with its request number.
func TestLinkPipelined(t *testing.T) {
	var clients, servers []*span
	for i := range 2 {
		c := testSpan(httpflow.Client, 1, 1_000, 9_000)
		c.x.seq = uint64(i + 1)
		clients = append(clients, c)
		s := testSpan(httpflow.Server, 2, 2_000, uint64(4_000+2_000*i))
		s.x.seq = uint64(i + 1)
		servers = append(servers, s)
	}
	linkAll([]*span{servers[1], servers[0], clients[0], clients[1]})
	for i := range servers {
		assert.Same(t, clients[i], servers[i].parentSpan, "request %d", i+1)
	}
}

// A client span's parent is the innermost server span of its process that
// encloses it; a span on another connection or outside every server span
// stays a root.
func TestLinkCallsWhileServing(t *testing.T) {
	outer := testSpan(httpflow.Server, 7, 100, 1_000)
	inner := testSpan(httpflow.Server, 7, 200, 900)
	call := testSpan(httpflow.Client, 7, 300, 400)
	call.x.local = netip.MustParseAddrPort("198.18.0.2:41000")
	late := testSpan(httpflow.Client, 7, 2_000, 2_100)
	late.x.local = netip.MustParseAddrPort("198.18.0.2:41001")
	linkAll([]*span{outer, inner, call, late})
	assert.Same(t, inner, call.parentSpan)
	assert.Equal(t, inner.traceID, call.traceID)
	assert.Nil(t, late.parentSpan)
	assert.Nil(t, outer.parentSpan, "no client span sent it")
}

// A busy server: of thousands of server spans in one process, a call's
// parent is the latest that encloses it, however long ago the longest one
// started, and those that started after it or ended before it are passed.
func TestLinkBusyServer(t *testing.T) {
	long := testSpan(httpflow.Server, 7, 0, 1_000_000)
	spans := []*span{long}
	for i := range 5_000 {
		start := uint64(100 + 190*i)
		spans = append(spans, testSpan(httpflow.Server, 7, start, start+150))
	}
	nested := testSpan(httpflow.Server, 7, 890_000, 920_000)
	// The calls fall between two short spans.
	callInNested := testSpan(httpflow.Client, 7, 900_095, 900_105)
	before := testSpan(httpflow.Server, 7, 899_000, 900_100) // ends before the call
	after := testSpan(httpflow.Server, 7, 900_101, 949_000)  // starts after it
	callInLong := testSpan(httpflow.Client, 7, 949_690, 949_700)
	for _, c := range []*span{callInLong, callInNested} {
		c.x.local = netip.MustParseAddrPort("198.18.0.2:41000")
	}
	spans = append(spans, nested, before, after, callInNested, callInLong)
	linkAll(spans)
	assert.Same(t, nested, callInNested.parentSpan)
	assert.Same(t, long, callInLong.parentSpan)
}

// fixedSpan is a span of the pod's process with the given ids.
func fixedSpan(role httpflow.Role, local, remote, method, target string, status int, start, end uint64,
	traceID pcommon.TraceID, spanID pcommon.SpanID) *span {
	x := newHTTP1Exchange(role, httpflow.Exchange{Method: method, Target: target, Version: "1.1", Status: status,
		RequestStart: start, ResponseEnd: end})
	x.cgroupID, x.pid, x.exe, x.command = sourcetest.PodCgroup, 4242, "api", "/usr/local/bin/api"
	x.local, x.remote = netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	return &span{x: x, traceID: traceID, spanID: spanID}
}

// A server span with a traceparent and the call it made while serving
// share the caller's trace; a failed call and a request whose client went
// away are roots with error statuses.
func TestBuild(t *testing.T) {
	const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	served := fixedSpan(httpflow.Server, "198.18.0.2:8080", "198.18.0.1:40000", "GET", "/users/42?full=1", 200,
		1_000_000, 9_000_000, pcommon.TraceID{}, pcommon.SpanID{7: 1})
	setHTTP(&served.x, func(e *httpflow.Exchange) { e.TraceParent = traceParent })
	var ok bool
	served.traceID, served.parent, ok = parseTraceParent(traceParent)
	require.True(t, ok)
	served.fromHeader = true
	call := fixedSpan(httpflow.Client, "198.18.0.2:41000", "198.18.0.3:9000", "GET", "/accounts/42?fields=all", 200,
		2_000_000, 5_000_000, pcommon.TraceID{15: 2}, pcommon.SpanID{7: 2})
	failed := fixedSpan(httpflow.Client, "198.18.0.2:41001", "[2001:db8::1]:8443", "POST", "/v2/charges", 503,
		20_000_000, 35_000_000, pcommon.TraceID{15: 3}, pcommon.SpanID{7: 3})
	closed := fixedSpan(httpflow.Server, "198.18.0.2:80", "198.18.0.9:51000", "PUT", "/upload", 0,
		40_000_000, 70_000_000, pcommon.TraceID{15: 4}, pcommon.SpanID{7: 4})
	closed.x.cgroupID, closed.x.pid, closed.x.exe, closed.x.command = sourcetest.ServiceCgroup, 777, "nginx", "nginx: worker process"
	setHTTP(&closed.x, func(e *httpflow.Exchange) { e.Err = httpflow.ErrClosed })

	spans := []*span{served, call, failed, closed}
	linkAll(spans)
	q := &spanQueue{res: sourcetest.Resources, bootNS: 1_700_000_000_000_000_000}
	compareGoldenTraces(t, filepath.Join("testdata", "spans.yaml"), q.build(spans))
}

// compareGoldenTraces is sourcetest.CompareGolden for traces.
func compareGoldenTraces(t *testing.T, path string, got ptrace.Traces) {
	t.Helper()
	if os.Getenv("WRITE_GOLDEN") != "" {
		require.NoError(t, golden.WriteTraces(t, path, got))
	}
	want, err := golden.ReadTraces(path)
	require.NoError(t, err)
	require.NoError(t, ptracetest.CompareTraces(want, got))
}

// A process that calls itself over loopback: its server span may seem to
// enclose the client span that sent the request, as the kernel's read and
// write return in either order. The client span stays the parent and the
// trace has no cycle.
func TestLinkSelfCall(t *testing.T) {
	client := testSpan(httpflow.Client, 7, 1_000, 2_000)
	server := testSpan(httpflow.Server, 7, 990, 2_010) // same pid, encloses the client
	linkAll([]*span{client, server})
	assert.Same(t, client, server.parentSpan)
	assert.Nil(t, client.parentSpan)
	assert.Equal(t, client.traceID, server.traceID)
}

// A server that reads its request late: the client's next request starts
// nearer to the server span than the one that sent it, but does not
// overlap it.
func TestLinkLateRead(t *testing.T) {
	first := testSpan(httpflow.Client, 1, 1_000, 1_200)
	served := testSpan(httpflow.Server, 2, 1_170, 1_190)
	next := testSpan(httpflow.Client, 1, 1_205, 1_400)
	nextServed := testSpan(httpflow.Server, 2, 1_207, 1_390)
	linkAll([]*span{served, nextServed, first, next})
	assert.Same(t, first, served.parentSpan)
	assert.Same(t, next, nextServed.parentSpan)
}

// expressQueue is a span queue without its goroutines, so that a test runs
// express and flush itself; client answers clientOf for every connection.
func expressQueue(sink *consumertest.TracesSink, client clientEnd) *spanQueue {
	return &spanQueue{
		window: time.Hour, max: 100,
		policy:    newSpanPolicy(SpansConfig{SlowThreshold: time.Second, KeepPercent: 100}),
		res:       sourcetest.Resources,
		countLost: func(string, uint64) {},
		clientOf:  func(connKey) clientEnd { return client },
		clients:   make(map[connKey][]*span),
		next:      sink,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
}

// exchangeOf is testSpan's exchange answered with status.
func exchangeOf(role httpflow.Role, pid uint32, reqStart, respEnd uint64, status int) *exchange {
	x := testSpan(role, pid, reqStart, respEnd).x
	setHTTP(&x, func(e *httpflow.Exchange) { e.Method, e.Target, e.Version, e.Status = "GET", "/", "1.1", status })
	return &x
}

// allSpans is every span of td, in order.
func allSpans(td ptrace.Traces) []ptrace.Span {
	var out []ptrace.Span
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				out = append(out, s)
			}
		}
	}
	return out
}

// exported is every span the sink got, by kind.
func exported(sink *consumertest.TracesSink) map[ptrace.SpanKind][]ptrace.Span {
	out := map[ptrace.SpanKind][]ptrace.Span{}
	for _, td := range sink.AllTraces() {
		for _, s := range allSpans(td) {
			out[s.Kind()] = append(out[s.Kind()], s)
		}
	}
	return out
}

// A failed span goes out at once, long before its window ends; a span
// that ended before it, in its process, goes at the window, as its child.
func TestExpress(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientElsewhere)
	call := exchangeOf(httpflow.Client, 2, 2_000, 3_000, 200) // made while serving
	call.local, call.remote = netip.MustParseAddrPort("198.18.0.2:41000"), netip.MustParseAddrPort("198.18.0.3:9000")
	q.add(call)
	q.add(exchangeOf(httpflow.Server, 2, 1_000, 4_000, 500))
	q.express()
	got := exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 1)
	assert.Empty(t, got[ptrace.SpanKindClient], "the call waits for the window")
	failed := got[ptrace.SpanKindServer][0]
	assert.Equal(t, ptrace.StatusCodeError, failed.Status().Code())

	q.flush(true)
	got = exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 1, "sent once")
	require.Len(t, got[ptrace.SpanKindClient], 1)
	callSpan := got[ptrace.SpanKindClient][0]
	assert.Equal(t, failed.SpanID(), callSpan.ParentSpanID())
	assert.Equal(t, failed.TraceID(), callSpan.TraceID())
}

// A failed server span whose client end is traced on this node waits for
// the client span, then goes out with it as its parent.
func TestExpressWaitsForClient(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientTraced)
	q.add(exchangeOf(httpflow.Server, 2, 1_000, 4_000, 503))
	q.express()
	assert.Zero(t, sink.SpanCount(), "the client span has not come")
	q.add(exchangeOf(httpflow.Client, 1, 900, 4_100, 503))
	q.express()
	got := exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 1)
	require.Len(t, got[ptrace.SpanKindClient], 1)
	server, client := got[ptrace.SpanKindServer][0], got[ptrace.SpanKindClient][0]
	assert.Equal(t, client.SpanID(), server.ParentSpanID())
	assert.Equal(t, client.TraceID(), server.TraceID())
	q.flush(true)
	assert.Equal(t, 2, sink.SpanCount(), "nothing is sent twice")
	assert.Empty(t, q.clients, "the client index forgets the spans that left")
}

// A failed server span whose client may be on this node, a connection not
// seen yet from a node address, waits for the client span as long as
// clientGrace, then goes out alone.
func TestExpressGraceForLocalClient(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientMaybe)
	q.add(exchangeOf(httpflow.Server, 2, 1_000, 4_000, 503))
	q.add(exchangeOf(httpflow.Server, 2, 5_000, 8_000, 503))
	q.express()
	assert.Zero(t, sink.SpanCount(), "within the grace")
	q.add(exchangeOf(httpflow.Client, 1, 900, 4_100, 503))
	q.express()
	got := exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 1, "the one whose client came")
	assert.Equal(t, got[ptrace.SpanKindClient][0].SpanID(), got[ptrace.SpanKindServer][0].ParentSpanID())

	q.notable[0].added = time.Now().Add(-clientGrace) // the other's grace is over
	q.express()
	got = exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 2)
	assert.True(t, got[ptrace.SpanKindServer][1].ParentSpanID().IsEmpty(), "no client span to name")
}

// A failed server span that waits for a client span whose coming wakes
// nothing (it did not fail) goes out with it at the next retry.
func TestExpressRetries(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientTraced)
	q.done.Go(q.runExpress)
	defer q.close()
	q.add(exchangeOf(httpflow.Server, 2, 1_000, 4_000, 503))
	time.Sleep(10 * time.Millisecond) // express holds it
	q.add(exchangeOf(httpflow.Client, 1, 900, 4_100, 200))
	require.Eventually(t, func() bool { return sink.SpanCount() == 2 }, 5*time.Second, 10*time.Millisecond)
	got := exported(sink)
	assert.Equal(t, got[ptrace.SpanKindClient][0].SpanID(), got[ptrace.SpanKindServer][0].ParentSpanID())
}

// A failed call goes out before the request it serves has ended: that
// request's span, and the span of the client that sent it, join the
// call's trace when they end.
func TestExpressAdopted(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientElsewhere)
	q.add(exchangeOf(httpflow.Client, 2, 2_000, 3_000, 500)) // the failed call; its local end is 198.18.0.1:40000
	q.express()
	require.Equal(t, 1, sink.SpanCount())
	call := exported(sink)[ptrace.SpanKindClient][0]

	served := exchangeOf(httpflow.Server, 2, 1_000, 4_000, 200)
	served.local = netip.MustParseAddrPort("198.18.0.1:8080")
	served.remote = netip.MustParseAddrPort("198.18.0.5:50000")
	q.add(served)
	caller := exchangeOf(httpflow.Client, 5, 900, 4_100, 200)
	caller.local, caller.remote = served.remote, served.local
	q.add(caller)
	q.flush(true)
	got := exported(sink)
	require.Len(t, got[ptrace.SpanKindServer], 1)
	require.Len(t, got[ptrace.SpanKindClient], 2)
	server := got[ptrace.SpanKindServer][0]
	assert.Equal(t, call.TraceID(), server.TraceID(), "the served request joins the call's trace")
	assert.True(t, call.ParentSpanID().IsEmpty(), "the call's parent was not known when it went out")
	for _, c := range got[ptrace.SpanKindClient] {
		assert.Equal(t, call.TraceID(), c.TraceID())
	}
}

// A flush hands its spans over in pieces of exportBatch, and a failed span
// that comes while it exports goes out without waiting for it.
func TestExpressDuringFlush(t *testing.T) {
	var q *spanQueue
	var pieces []int
	sent := make(chan ptrace.Span, 1)
	next, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		if s := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0); s.Status().Code() == ptrace.StatusCodeError {
			sent <- s // by express
			return nil
		}
		pieces = append(pieces, td.SpanCount()) // by the flush
		if len(pieces) == 1 {
			q.add(exchangeOf(httpflow.Server, 3, 5_000, 6_000, 500))
			select {
			case <-sent:
			case <-time.After(10 * time.Second):
				t.Error("the failed span waited for the flush")
			}
		}
		return nil
	})
	require.NoError(t, err)
	q = expressQueue(nil, clientElsewhere)
	q.next, q.max = next, 4*exportBatch
	for i := range 2*exportBatch + 1 {
		q.add(exchangeOf(httpflow.Server, 2, uint64(i), uint64(i+1), 200))
	}
	q.done.Go(q.runExpress)
	q.flush(true)
	q.close()
	assert.Equal(t, []int{exportBatch, exportBatch, 1}, pieces)
}

// A flush takes the client spans that leave with it out of the index that
// express reads, and keeps the others there.
func TestFlushUnindexes(t *testing.T) {
	sink := new(consumertest.TracesSink)
	q := expressQueue(sink, clientElsewhere)
	for i := range 3 {
		q.add(exchangeOf(httpflow.Client, 1, uint64(1_000*i), uint64(1_000*i+500), 200))
	}
	q.pending[0].added = q.pending[0].added.Add(-2 * q.window) // past its window
	q.flush(false)
	assert.Equal(t, 1, sink.SpanCount())
	k := connKey{clientAddr, serverAddr}
	assert.Equal(t, q.pending, q.clients[k], "the two in their window, in order")
	q.flush(true)
	assert.Empty(t, q.clients)
}
