package httpsource

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
)

var (
	clientAddr = netip.MustParseAddrPort("198.18.0.1:40000")
	serverAddr = netip.MustParseAddrPort("198.18.0.2:80")
)

func testSpan(role httpflow.Role, pid uint32, reqStart, respEnd uint64) *span {
	x := exchange{role: role, pid: pid, local: clientAddr, remote: serverAddr}
	if role == httpflow.Server {
		x.local, x.remote = serverAddr, clientAddr
	}
	x.RequestStart, x.ResponseEnd = reqStart, respEnd
	return &span{x: x, traceID: randomTraceID(), spanID: randomSpanID()}
}

// Three requests on one keep-alive connection over loopback, where the
// server returns from its reads and the client from its writes in either
// order: each server span is the child of the client span that sent it.
func TestLinkSameConnection(t *testing.T) {
	var clients, servers []*span
	for i, skew := range []int64{-3_000, 0, 2_000} { // server start minus client start, ns
		start := uint64(1_000_000 * (i + 1))
		clients = append(clients, testSpan(httpflow.Client, 1, start, start+500_000))
		servers = append(servers, testSpan(httpflow.Server, 2, uint64(int64(start)+skew), start+500_000+uint64(skew)))
	}
	link(append(append([]*span{}, servers...), clients...))
	for i := range servers {
		assert.Same(t, clients[i], servers[i].parentSpan, "request %d", i)
		assert.Equal(t, clients[i].spanID, servers[i].parent, "request %d", i)
		assert.Equal(t, clients[i].traceID, servers[i].traceID, "request %d", i)
		assert.Nil(t, clients[i].parentSpan, "request %d", i)
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
	link([]*span{outer, inner, call, late})
	assert.Same(t, inner, call.parentSpan)
	assert.Equal(t, inner.traceID, call.traceID)
	assert.Nil(t, late.parentSpan)
	assert.Nil(t, outer.parentSpan, "no client span sent it")
}
