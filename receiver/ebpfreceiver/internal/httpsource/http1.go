//go:build linux

package httpsource

import (
	"strconv"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/l7trace"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
)

// http1 is HTTP/1.0 and HTTP/1.1 on the engine: httpflow parses, and the
// RED metrics (red.go) count every exchange.
var http1 = protocol{roleOf: http1RoleOf, newParser: newHTTP1Parser, fillSpan: fillHTTP1Span, spanAttributes: 6}

// http1RoleOf tells from a connection's first captured bytes which end the
// process is: a request it received or a response it sent makes it the
// server.
func http1RoleOf(e *l7trace.Event) (httpflow.Role, bool) {
	if len(e.Data) < 5 {
		return 0, false
	}
	response := string(e.Data[:5]) == "HTTP/"
	if response == (e.Dir == l7trace.DirEgress) {
		return httpflow.Server, true
	}
	return httpflow.Client, true
}

// http1Parser is httpflow's parser behind the engine's interface.
type http1Parser struct {
	conn *httpflow.Conn
	role httpflow.Role
	// traceOTLP keeps OTLP/HTTP export requests; else they are counted in
	// excluded.
	traceOTLP bool
	excluded  uint64
	x         exchange
	out       func(*exchange)
	onEx      func(httpflow.Exchange) // h.onExchange, bound once
}

func newHTTP1Parser(role httpflow.Role, cfg Config) parser {
	h := &http1Parser{conn: httpflow.NewConn(role, httpflow.Options{}), role: role, traceOTLP: cfg.TraceOTLPExports}
	h.onEx = h.onExchange
	return h
}

func (h *http1Parser) Feed(dir httpflow.Dir, ts uint64, prefix []byte, size int, emit func(*exchange)) {
	h.out = emit
	h.conn.Feed(dir, ts, prefix, size, h.onEx)
}

func (h *http1Parser) Early(dir httpflow.Dir) bool {
	return h.role == httpflow.Client && dir == httpflow.Ingress && !h.conn.AwaitingResponse()
}

func (h *http1Parser) Flush(emit func(*exchange)) {
	h.out = emit
	h.conn.Flush(h.onEx)
}

func (h *http1Parser) Close(ts uint64, emit func(*exchange)) {
	h.out = emit
	h.conn.Close(ts, h.onEx)
}

func (h *http1Parser) Stats() parserStats {
	return parserStats{Dropped: h.conn.Stats().Dropped, Excluded: h.excluded}
}

func (h *http1Parser) onExchange(e httpflow.Exchange) {
	if e.OTLPExport && !h.traceOTLP {
		h.excluded++
		return
	}
	h.x = newHTTP1Exchange(h.role, e)
	h.out(&h.x)
}

// http1Fields is what HTTP/1 spans and metrics read of an exchange. It is
// kept small: every span waits a link window with it.
type http1Fields struct {
	method, path, version string
	status                int
}

// newHTTP1Exchange is e as the engine's exchange, with no place yet.
func newHTTP1Exchange(role httpflow.Role, e httpflow.Exchange) exchange {
	return exchange{protocol: l7trace.ProtocolHTTP1, role: role, seq: e.Seq, start: e.RequestStart, end: e.ResponseEnd,
		traceParent: e.TraceParent, errType: http1ErrorType(role, e), err: e.Err,
		http: http1Fields{method: e.Method, path: e.Path(), version: e.Version, status: e.Status}}
}

// http1ErrorType is error.type per the semantic conventions: the status
// code of a failed request, or why no response came.
func http1ErrorType(role httpflow.Role, e httpflow.Exchange) string {
	switch {
	case e.Err != nil:
		return "connection_closed"
	case e.Status >= 500, e.Status >= 400 && role == httpflow.Client:
		return strconv.Itoa(e.Status)
	}
	return ""
}

func fillHTTP1Span(out ptrace.Span, x *exchange, addrs addrStrings) {
	h := &x.http
	a := out.Attributes()
	a.PutStr("http.request.method", h.method)
	a.PutStr("url.path", h.path)
	if h.status != 0 {
		a.PutInt("http.response.status_code", int64(h.status))
	}
	a.PutStr("network.protocol.version", h.version)
	if x.role == httpflow.Server {
		route := routeOf(h.path)
		out.SetName(h.method + " " + route)
		a.PutStr("http.route", route)
		a.PutStr("url.scheme", "http")
		return
	}
	out.SetName(h.method)
	// Required on client spans. Built from the peer's address and the
	// path: the Host header's value is not exported, and the query string
	// is left out, as url.path leaves it out on server spans.
	a.PutStr("url.full", "http://"+x.remote.String()+h.path)
}
