package httpflow

import (
	"errors"
	"strings"
)

// Role says which end of the connection the traced process is.
type Role int

const (
	// Server: the process accepted the connection; ingress bytes are requests.
	Server Role = iota
	// Client: the process connected; egress bytes are requests.
	Client
)

// Dir is the direction of a syscall's bytes, seen from the process.
type Dir int

const (
	// Ingress is bytes the process received.
	Ingress Dir = iota
	// Egress is bytes the process sent.
	Egress
)

// Defaults for zero Options fields.
const (
	DefaultMaxPending     = 16
	DefaultMaxHeaderBytes = 4096
)

// Options bound a Conn's memory.
type Options struct {
	// MaxPending is how many requests may await a response; more are
	// dropped (Stats.Dropped) until the queue drains.
	MaxPending int
	// MaxHeaderBytes bounds a start line plus header section, and the bytes
	// buffered for it across syscalls.
	MaxHeaderBytes int
}

// ErrClosed is the Err of an Exchange whose connection closed before its
// response completed.
var ErrClosed = errors.New("connection closed before the response completed")

// Exchange is one request and its response.
type Exchange struct {
	// Method is the request method; Target the request-target as sent.
	Method, Target string
	// Version is "1.0" or "1.1", from the request line.
	Version string
	// Status is the final status code; 1xx interim responses are skipped.
	// It is 0 if no response started.
	Status int
	// Kernel timestamps of the syscalls that carried the first and last
	// byte of each message. ResponseStart is 0 if no response started;
	// ResponseEnd is the close timestamp when Err is ErrClosed.
	RequestStart, RequestEnd, ResponseStart, ResponseEnd uint64
	// Seq numbers the requests of the connection from 1, in the order they
	// started, those dropped included. Both ends of a connection traced
	// from its first request number them alike.
	Seq uint64
	// TraceParent is the request's valid W3C traceparent header, if any.
	TraceParent string
	// OTLPExport reports an OTLP/HTTP export request: a POST to
	// /v1/traces, /v1/metrics, /v1/logs or /v1development/profiles with an
	// OTLP content type.
	OTLPExport bool
	// Partial reports that a header section was not fully captured or a
	// message lost sync: TraceParent may be missing and an end
	// timestamp is the last syscall before the next message.
	Partial bool
	// Err is ErrClosed if the connection closed before the response
	// completed.
	Err error
}

// Path returns the path of Target: without query, and without scheme and
// authority for an absolute-form target.
func (e Exchange) Path() string {
	t := e.Target
	if i := strings.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	for _, scheme := range [...]string{"http://", "https://"} {
		if len(t) >= len(scheme) && strings.EqualFold(t[:len(scheme)], scheme) {
			rest := t[len(scheme):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				return rest[i:]
			}
			return "/"
		}
	}
	return t
}

// Stats count what a Conn saw, so that nothing is lost silently.
type Stats struct {
	// Exchanges is the Exchanges emitted, with or without Err.
	Exchanges uint64
	// Dropped is the requests that will produce no Exchange: pending queue
	// full, header section too long, or start line not captured.
	Dropped uint64
	// HeaderTooLong is the messages whose header section exceeded
	// MaxHeaderBytes.
	HeaderTooLong uint64
	// Unmatched is the responses with no request to pair with.
	Unmatched uint64
	// ParseErrors is the malformed bytes where a message or its framing
	// was expected.
	ParseErrors uint64
	// Lost is the times message boundaries lay in uncaptured bytes.
	Lost uint64
	// NonHTTP is 1 if the connection was judged not to speak HTTP/1.x.
	NonHTTP uint64
}

// Add adds o to s.
func (s *Stats) Add(o Stats) {
	s.Exchanges += o.Exchanges
	s.Dropped += o.Dropped
	s.HeaderTooLong += o.HeaderTooLong
	s.Unmatched += o.Unmatched
	s.ParseErrors += o.ParseErrors
	s.Lost += o.Lost
	s.NonHTTP += o.NonHTTP
}
