//go:build linux

package httpsource

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/l7trace"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
)

// exchange is one finished request and its response, of any protocol, with
// where it happened. The engine (connection table, span queue, linking and
// span policy) reads only the fields up to http; the protocol's own field
// names the span and fills its attributes and metrics.
type exchange struct {
	protocol l7trace.Protocol
	role     httpflow.Role
	// seq numbers the connection's requests from 1; both ends of a
	// connection traced from its first request number them alike.
	seq uint64
	// start and end are the kernel timestamps of the request's first byte
	// and of the response's last.
	start, end  uint64
	traceParent string // the request's W3C traceparent, if any
	errType     string // error.type; "" when the request succeeded
	err         error  // why no response came, if so

	local    netip.AddrPort
	remote   netip.AddrPort
	cgroupID uint64
	pid      uint32
	exe      string
	command  string

	http http1Fields // l7trace.ProtocolHTTP1
}

// duration is from the request's first byte to the response's last.
func (x *exchange) duration() time.Duration {
	if x.end < x.start {
		return 0
	}
	return time.Duration(x.end - x.start)
}

// parser rebuilds one protocol's exchanges from one connection's records,
// in the order their syscalls happened. emit's exchange is reused after it
// returns.
type parser interface {
	Feed(dir httpflow.Dir, ts uint64, prefix []byte, size int, emit func(*exchange))
	// Early reports whether bytes in dir now would answer no request seen
	// yet: on a client, an answer read before its request's record came.
	Early(dir httpflow.Dir) bool
	// Flush ends what only the connection's silence can end.
	Flush(emit func(*exchange))
	Close(ts uint64, emit func(*exchange))
	Stats() parserStats
}

// parserStats count what a parser left out, so that nothing is lost
// silently.
type parserStats struct {
	// Dropped is the requests that will give no exchange.
	Dropped uint64
	// Excluded is the exchanges left out by design: OTLP exports.
	Excluded uint64
}

// protocol is what the engine needs of one application protocol.
type protocol struct {
	// roleOf tells from a connection's first record which end the process
	// is, or false when the record cannot tell.
	roleOf    func(*l7trace.Event) (httpflow.Role, bool)
	newParser func(httpflow.Role, Config) parser
	// fillSpan names the span and puts the protocol's attributes, at most
	// spanAttributes of them.
	fillSpan       func(out ptrace.Span, x *exchange, addrs addrStrings)
	spanAttributes int
}

// protocols holds a parser for every protocol the kernel's classifier
// names.
var protocols = map[l7trace.Protocol]protocol{
	l7trace.ProtocolHTTP1: http1,
}
