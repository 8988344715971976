package httpflow

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ev is one syscall (or the close, if end is set). data is all the bytes it
// moved; run captures the first capture bytes of it.
type ev struct {
	dir  Dir
	ts   uint64
	data string
	end  bool
}

func in(ts uint64, data string) ev  { return ev{dir: Ingress, ts: ts, data: data} }
func out(ts uint64, data string) ev { return ev{dir: Egress, ts: ts, data: data} }
func closeAt(ts uint64) ev          { return ev{ts: ts, end: true} }

// run feeds evs to a new Conn, capturing at most capture bytes of each
// syscall (0: all), and returns what it emitted.
func run(t testing.TB, role Role, opts Options, capture int, evs []ev) ([]Exchange, *Conn) {
	t.Helper()
	c := NewConn(role, opts)
	var got []Exchange
	emit := func(e Exchange) { got = append(got, e) }
	for _, e := range evs {
		if e.end {
			c.Close(e.ts, emit)
			continue
		}
		p := []byte(e.data)
		if capture > 0 && len(p) > capture {
			p = p[:capture]
		}
		c.Feed(e.dir, e.ts, p, len(e.data), emit)
		checkBounds(t, c)
	}
	// Request numbers rise; TestSeq checks their values, the cases the rest.
	for i := range got {
		if got[i].Seq == 0 || i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Fatalf("exchange %d: request number %d after %+v", i, got[i].Seq, got[:i])
		}
		got[i].Seq = 0
	}
	return got, c
}

// Requests are numbered in the order they start, the dropped ones too, so
// that both ends of a connection number them alike.
func TestSeq(t *testing.T) {
	c := NewConn(Server, Options{MaxPending: 2})
	var seqs []uint64
	emit := func(e Exchange) { seqs = append(seqs, e.Seq) }
	for _, e := range []ev{in(1, get+getB+getC+get), out(2, nf), out(3, nf), out(4, nf), out(5, nf), in(6, getC), out(7, ok5)} {
		c.Feed(e.dir, e.ts, []byte(e.data), len(e.data), emit)
	}
	assert.Equal(t, []uint64{1, 2, 5}, seqs, "the third and fourth requests were dropped: queue full")
}

// checkBounds asserts the memory bounds of c.
func checkBounds(t testing.TB, c *Conn) {
	t.Helper()
	for _, h := range []*half{&c.req, &c.resp} {
		if cap(h.buf) > c.maxHeader {
			t.Fatalf("buffer cap %d > MaxHeaderBytes %d", cap(h.buf), c.maxHeader)
		}
	}
	if c.pending() > c.maxPend {
		t.Fatalf("%d pending > MaxPending %d", c.pending(), c.maxPend)
	}
	if cap(c.q) > 2*c.maxPend+1 {
		t.Fatalf("queue cap %d for MaxPending %d", cap(c.q), c.maxPend)
	}
}

const (
	tp    = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	get   = "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
	getB  = "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"
	getC  = "GET /c HTTP/1.1\r\nHost: example.com\r\n\r\n"
	ok5   = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	nf    = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	chunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n" + "1a;name=val\r\nabcdefghijklmnopqrstuvwxyz\r\n" + "0\r\nX-Trailer: 1\r\n\r\n"
)

// bigChunks is a chunked response whose third chunk-size line lies past an
// 80-byte capture.
var bigChunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + strings.Repeat("d", 16) + "\r\n" +
	"400\r\n" + strings.Repeat("d", 1024) + "\r\n" + "20\r\n" + strings.Repeat("d", 32) + "\r\n"

func ex(method, target string, status int, rs, re, ss, se uint64) Exchange {
	return Exchange{
		Method: method, Target: target, Version: "1.1", Status: status,
		RequestStart: rs, RequestEnd: re, ResponseStart: ss, ResponseEnd: se,
	}
}

func with(e Exchange, f func(*Exchange)) Exchange { f(&e); return e }

type connCase struct {
	name    string
	role    Role
	opts    Options
	capture int
	evs     []ev
	want    []Exchange
	stats   Stats
	// noBytewise is set when one byte per syscall changes the outcome:
	// the non-HTTP judgement counts syscalls.
	noBytewise bool
}

var connCases = []connCase{
	{
		name: "one exchange",
		evs:  []ev{in(1, get), out(2, ok5)},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 2, 2)},
	},
	{
		name: "keep-alive",
		evs:  []ev{in(1, get), out(2, ok5), in(3, getB), out(4, nf), in(5, getC), out(6, ok5), closeAt(7)},
		want: []Exchange{
			ex("GET", "/a?x=1", 200, 1, 1, 2, 2),
			ex("GET", "/b", 404, 3, 3, 4, 4),
			ex("GET", "/c", 200, 5, 5, 6, 6),
		},
	},
	{
		name: "pipelined, responses one by one",
		evs:  []ev{in(1, get+getB+getC), out(2, ok5), out(3, nf), out(4, ok5)},
		want: []Exchange{
			ex("GET", "/a?x=1", 200, 1, 1, 2, 2),
			ex("GET", "/b", 404, 1, 1, 3, 3),
			ex("GET", "/c", 200, 1, 1, 4, 4),
		},
	},
	{
		name: "pipelined, responses in one write",
		evs:  []ev{in(1, get+getB), in(2, getC), out(3, ok5+nf+chunk)},
		want: []Exchange{
			ex("GET", "/a?x=1", 200, 1, 1, 3, 3),
			ex("GET", "/b", 404, 1, 1, 3, 3),
			ex("GET", "/c", 200, 2, 2, 3, 3),
		},
	},
	{
		name: "head split across reads",
		evs: []ev{
			in(1, "GE"), in(2, "T /p HTTP/1.1\r"), in(3, "\nHost: example.com\r\n\r"), in(4, "\n"),
			out(5, "HTTP/1.1 200 OK\r\nContent-"), out(6, "Length: 2\r\n\r\nhi"),
		},
		want: []Exchange{ex("GET", "/p", 200, 1, 4, 5, 6)},
	},
	{
		name: "content-length body beyond the capture",
		// The capture covers the header only: 1000 body bytes are
		// skipped by size, so the next exchange parses.
		capture: 64,
		evs: []ev{
			in(1, get), out(2, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 1000)),
			in(3, getB), out(4, nf),
		},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 2, 2), ex("GET", "/b", 404, 3, 3, 4, 4)},
	},
	{
		name:    "body across many syscalls",
		capture: 64,
		evs: func() []ev {
			evs := []ev{in(1, "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1000\r\n\r\n")}
			for i := range 10 {
				evs = append(evs, in(uint64(2+i), strings.Repeat("b", 100)))
			}
			evs = append(evs, out(20, "HTTP/1.1 201 Created\r\nContent-Length: 4000\r\n\r\n"))
			for i := range 4 {
				evs = append(evs, out(uint64(21+i), strings.Repeat("r", 1000)))
			}
			return append(evs, in(30, getB), out(31, nf))
		}(),
		want: []Exchange{ex("POST", "/up", 201, 1, 11, 20, 24), ex("GET", "/b", 404, 30, 30, 31, 31)},
	},
	{
		name: "body across many syscalls, head captured",
		evs: func() []ev {
			evs := []ev{in(1, "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 300\r\n\r\n")}
			for i := range 10 {
				evs = append(evs, in(uint64(2+i), strings.Repeat("b", 30)))
			}
			return append(evs, out(20, ok5), in(21, getB), out(22, nf))
		}(),
		want: []Exchange{ex("POST", "/up", 200, 1, 11, 20, 20), ex("GET", "/b", 404, 21, 21, 22, 22)},
	},
	{
		name: "chunked with trailers",
		evs:  []ev{in(1, get), out(2, chunk), in(3, getB), out(4, nf)},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 2, 2), ex("GET", "/b", 404, 3, 3, 4, 4)},
	},
	{
		name:    "chunked, chunk data not captured",
		capture: 8,
		evs: []ev{
			in(1, get), out(2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
			out(3, "400\r\n"+strings.Repeat("d", 1024)+"\r\n"),
			out(4, "10\r\n"+strings.Repeat("d", 16)+"\r\n"),
			out(5, "0\r\n\r\n"),
			in(6, getB), out(7, nf),
		},
		// The 8-byte capture cuts the start lines: no Exchange.
		stats: Stats{Dropped: 2, Lost: 4},
	},
	{
		name:    "chunked, chunk data not captured, heads captured",
		capture: 80,
		evs: []ev{
			in(1, get), out(2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
			out(3, "400\r\n"+strings.Repeat("d", 1024)+"\r\n"),
			out(4, "10\r\n"+strings.Repeat("d", 16)+"\r\n"),
			out(5, "0\r\n\r\n"),
			in(6, getB), out(7, nf),
		},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 2, 5), ex("GET", "/b", 404, 6, 6, 7, 7)},
	},
	{
		name:    "chunked, size line not captured: resync at the next request",
		capture: 80,
		evs: []ev{
			in(1, get),
			out(2, bigChunks),
			out(3, strings.Repeat("d", 100)),
			out(4, "0\r\n\r\n"),
			in(5, getB), out(6, nf),
		},
		want: []Exchange{
			with(ex("GET", "/a?x=1", 200, 1, 1, 2, 4), func(e *Exchange) { e.Partial = true }),
			ex("GET", "/b", 404, 5, 5, 6, 6),
		},
		stats: Stats{Exchanges: 2, Lost: 1},
	},
	{
		name:    "chunked, size line not captured: resync at the next status line",
		role:    Client,
		capture: 80,
		evs: []ev{
			out(1, get+getB),
			in(2, bigChunks),
			in(3, "0\r\n\r\n"+nf),
		},
		want: []Exchange{
			with(ex("GET", "/a?x=1", 200, 1, 1, 2, 3), func(e *Exchange) { e.Partial = true }),
			ex("GET", "/b", 404, 1, 1, 3, 3),
		},
		stats: Stats{Exchanges: 2, Lost: 1},
	},
	{
		name: "bad chunk size: resync at the next status line",
		role: Client,
		evs: []ev{
			out(1, get), in(2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), in(3, "junk\r\n"),
			out(4, getB), in(5, nf),
		},
		want: []Exchange{
			with(ex("GET", "/a?x=1", 200, 1, 1, 2, 3), func(e *Exchange) { e.Partial = true }),
			ex("GET", "/b", 404, 4, 4, 5, 5),
		},
		stats: Stats{Exchanges: 2, ParseErrors: 1},
	},
	{
		name: "100 continue",
		evs: []ev{
			in(1, "PUT /f HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
			out(2, "HTTP/1.1 100 Continue\r\n\r\n"), in(3, "0123456789"), out(4, nf),
		},
		want: []Exchange{ex("PUT", "/f", 404, 1, 3, 4, 4)},
	},
	{
		name: "interim responses in the same write",
		evs:  []ev{in(1, get), out(2, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"), out(3, ok5)},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 3, 3)},
	},
	{
		name: "expect 100-continue refused, body never sent",
		evs: []ev{
			in(1, "PUT /f HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
			out(2, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
			in(3, getB), out(4, nf),
		},
		want: []Exchange{ex("PUT", "/f", 417, 1, 1, 2, 2), ex("GET", "/b", 404, 3, 3, 4, 4)},
	},
	{
		name: "HEAD, 204 and 304 have no body",
		evs: []ev{
			in(1, "HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n"), out(2, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
			in(3, getB), out(4, "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"),
			in(5, getC), out(6, "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"),
			in(7, get), out(8, ok5),
		},
		want: []Exchange{
			ex("HEAD", "/h", 200, 1, 1, 2, 2),
			ex("GET", "/b", 204, 3, 3, 4, 4),
			ex("GET", "/c", 304, 5, 5, 6, 6),
			ex("GET", "/a?x=1", 200, 7, 7, 8, 8),
		},
	},
	{
		name: "HTTP/1.0 response delimited by close",
		evs: []ev{
			in(1, "GET /old HTTP/1.0\r\n\r\n"),
			out(2, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome"), out(3, " more"), closeAt(9),
		},
		want: []Exchange{{Method: "GET", Target: "/old", Version: "1.0", Status: 200, RequestStart: 1, RequestEnd: 1, ResponseStart: 2, ResponseEnd: 3}},
	},
	{
		name: "closed before the response",
		evs:  []ev{in(1, get), closeAt(5)},
		want: []Exchange{with(ex("GET", "/a?x=1", 0, 1, 1, 0, 5), func(e *Exchange) { e.Err = ErrClosed })},
	},
	{
		name: "closed mid-request",
		evs:  []ev{in(1, "POST /p HTTP/1.1\r\nHost: exa"), closeAt(5)},
		want: []Exchange{{Method: "POST", Target: "/p", Version: "1.1", RequestStart: 1, RequestEnd: 1, ResponseEnd: 5, Err: ErrClosed}},
	},
	{
		name: "closed mid-request body",
		evs:  []ev{in(1, "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\n"), in(2, "01234"), closeAt(5)},
		want: []Exchange{with(ex("POST", "/p", 0, 1, 2, 0, 5), func(e *Exchange) { e.Err = ErrClosed })},
	},
	{
		name: "closed mid-response body",
		evs:  []ev{in(1, get), out(2, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"), closeAt(5)},
		want: []Exchange{with(ex("GET", "/a?x=1", 200, 1, 1, 2, 5), func(e *Exchange) { e.Err = ErrClosed })},
	},
	{
		name: "closed before the request line ends",
		evs:  []ev{in(1, "GET /p HT"), closeAt(5)},
	},
	{
		name: "traceparent kept, other headers not",
		evs: []ev{
			in(1, "GET /t HTTP/1.1\r\nhost: example.com\r\nTRACEPARENT:  "+tp+" \r\nCookie: secret\r\n\r\n"),
			out(2, nf),
		},
		want: []Exchange{with(ex("GET", "/t", 404, 1, 1, 2, 2), func(e *Exchange) { e.TraceParent = tp })},
	},
	{
		name: "invalid traceparents dropped",
		evs: []ev{
			in(1, "GET /1 HTTP/1.1\r\nHost: example.com\r\ntraceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n\r\n"),
			out(2, nf),
			in(3, "GET /2 HTTP/1.1\r\nHost: example.com\r\ntraceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n\r\n"),
			out(4, nf),
			in(5, "GET /3 HTTP/1.1\r\nHost: example.com\r\ntraceparent: "+tp+"\r\ntraceparent: "+tp+"\r\n\r\n"),
			out(6, nf),
		},
		want: []Exchange{ex("GET", "/1", 404, 1, 1, 2, 2), ex("GET", "/2", 404, 3, 3, 4, 4), ex("GET", "/3", 404, 5, 5, 6, 6)},
	},
	{
		name:    "head cut by the capture keeps the captured lines",
		capture: 110,
		evs: []ev{
			in(1, "GET /big HTTP/1.1\r\nHost: example.com\r\ntraceparent: "+tp+"\r\nCookie: "+strings.Repeat("c", 500)+"\r\n\r\n"),
			out(2, "HTTP/1.1 200 OK\r\nX-Long: "+strings.Repeat("l", 500)+"\r\nContent-Length: 5\r\n\r\nhello"),
			out(3, "more of the response"),
			in(4, getB), out(5, nf),
		},
		want: []Exchange{
			with(ex("GET", "/big", 200, 1, 1, 2, 3), func(e *Exchange) { e.TraceParent, e.Partial = tp, true }),
			ex("GET", "/b", 404, 4, 4, 5, 5),
		},
		stats: Stats{Exchanges: 2, Lost: 2},
	},
	{
		name: "header section too long",
		opts: Options{MaxHeaderBytes: 128},
		evs: []ev{
			in(1, "GET /long HTTP/1.1\r\n"), in(2, "Cookie: "+strings.Repeat("c", 200)+"\r\n"), in(3, "Host: example.com\r\n\r\n"),
			out(4, ok5), in(5, getB), out(6, nf),
		},
		want:  []Exchange{ex("GET", "/b", 404, 5, 5, 6, 6)},
		stats: Stats{Exchanges: 1, Dropped: 1, HeaderTooLong: 1},
	},
	{
		name: "response header section too long",
		opts: Options{MaxHeaderBytes: 128},
		evs: []ev{
			in(1, get), out(2, "HTTP/1.1 200 OK\r\nX-Long: "+strings.Repeat("l", 200)+"\r\nContent-Length: 0\r\n\r\n"),
			in(3, getB), out(4, nf),
		},
		want:  []Exchange{ex("GET", "/b", 404, 3, 3, 4, 4)},
		stats: Stats{Exchanges: 1, Dropped: 1, HeaderTooLong: 1},
	},
	{
		name: "pending queue full",
		opts: Options{MaxPending: 2},
		evs:  []ev{in(1, get+getB+getC+get), out(2, nf), out(3, nf), out(4, nf), out(5, nf), in(6, getC), out(7, ok5)},
		want: []Exchange{
			ex("GET", "/a?x=1", 404, 1, 1, 2, 2),
			ex("GET", "/b", 404, 1, 1, 3, 3),
			ex("GET", "/c", 200, 6, 6, 7, 7),
		},
		stats: Stats{Exchanges: 3, Dropped: 2},
	},
	{
		name:  "response without request",
		evs:   []ev{out(1, ok5), in(2, get), out(3, nf)},
		want:  []Exchange{ex("GET", "/a?x=1", 404, 2, 2, 3, 3)},
		stats: Stats{Exchanges: 1, Unmatched: 1},
	},
	{
		name: "client role",
		role: Client,
		evs:  []ev{out(10, get), in(20, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe"), in(30, "llo"), out(40, getB), in(50, nf)},
		want: []Exchange{ex("GET", "/a?x=1", 200, 10, 10, 20, 30), ex("GET", "/b", 404, 40, 40, 50, 50)},
	},
	{
		name: "chunked request",
		evs: []ev{
			in(1, "POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n"),
			in(2, "0\r\n\r\n"), out(3, nf), in(4, getB), out(5, nf),
		},
		want: []Exchange{ex("POST", "/c", 404, 1, 2, 3, 3), ex("GET", "/b", 404, 4, 4, 5, 5)},
	},
	{
		name: "upgrade stops parsing",
		evs: []ev{
			in(1, "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
			out(2, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
			in(3, getB), out(4, nf), closeAt(5),
		},
		want: []Exchange{ex("GET", "/ws", 101, 1, 1, 2, 2)},
	},
	{
		name: "CONNECT tunnel stops parsing",
		role: Client,
		evs: []ev{
			out(1, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
			in(2, "HTTP/1.1 200 Connection established\r\n\r\n"),
			out(3, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), in(4, "\x16\x03\x03\x00\x7a"), closeAt(5),
		},
		want: []Exchange{ex("CONNECT", "example.com:443", 200, 1, 1, 2, 2)},
	},
	{
		name: "empty lines between messages",
		evs:  []ev{in(1, "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi\r\n"), out(2, nf), in(3, "\r\n"+getB), out(4, nf)},
		want: []Exchange{ex("POST", "/p", 404, 1, 1, 2, 2), ex("GET", "/b", 404, 3, 3, 4, 4)},
	},
	{
		name:    "resync on a status line split across reads",
		role:    Client,
		capture: 80,
		evs: []ev{
			out(1, get+getB), in(2, bigChunks), in(3, "0\r\n\r\nHTTP/1.1 40"), in(4, "4 Not Found\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []Exchange{
			with(ex("GET", "/a?x=1", 200, 1, 1, 2, 3), func(e *Exchange) { e.Partial = true }),
			ex("GET", "/b", 404, 1, 1, 3, 4),
		},
		stats: Stats{Exchanges: 2, Lost: 1},
	},
	{
		name: "joined mid-body",
		evs: []ev{
			in(1, "tail of an upload\r\nmore"), out(2, "tail of a download"), in(3, getB), out(4, nf),
		},
		want:       []Exchange{ex("GET", "/b", 404, 3, 3, 4, 4)},
		stats:      Stats{Exchanges: 1, ParseErrors: 2},
		noBytewise: true,
	},
	{
		name: "response without length ends at the next request",
		evs: []ev{
			in(1, get), out(2, "HTTP/1.1 200 OK\r\n\r\nbody"), out(3, "more"), in(4, getB), out(5, nf),
		},
		want: []Exchange{ex("GET", "/a?x=1", 200, 1, 1, 2, 3), ex("GET", "/b", 404, 4, 4, 5, 5)},
	},
	{
		name: "expect 100-continue refused, body sent anyway",
		evs: []ev{
			in(1, "PUT /f HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
			out(2, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
			in(3, "0123456789"), in(4, getB), out(5, nf),
		},
		want: []Exchange{ex("PUT", "/f", 401, 1, 1, 2, 2), ex("GET", "/b", 404, 4, 4, 5, 5)},
	},
	{
		name:    "request line cut by the capture",
		capture: 32,
		evs: []ev{
			in(1, "POST /"+strings.Repeat("u", 100)+" HTTP/1.1\r\nContent-Length: 600\r\n\r\n"),
			in(2, strings.Repeat("b", 100)), in(3, strings.Repeat("b", 100)), in(4, strings.Repeat("b", 100)),
			in(5, strings.Repeat("b", 100)), in(6, strings.Repeat("b", 100)), in(7, strings.Repeat("b", 100)),
			out(8, nf), in(9, getB), out(10, nf), closeAt(11),
		},
		want: []Exchange{
			with(ex("GET", "/b", 404, 9, 9, 10, 10), func(e *Exchange) { e.Partial = true }),
		},
		stats: Stats{Exchanges: 1, Dropped: 1, Lost: 4},
	},
	{
		name:    "status lines cut by the capture after the code",
		capture: 20,
		evs: []ev{
			in(1, "GET /a HTTP/1.1\r\n\r\n"), out(2, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"),
			out(3, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
			in(4, "GET /b HTTP/1.1\r\n\r\n"), out(5, "HTTP/1.1 204 No Content\r\n\r\n"), closeAt(6),
		},
		want: []Exchange{
			{Method: "GET", Target: "/a", Version: "1.1", Status: 200, RequestStart: 1, RequestEnd: 1, ResponseStart: 3, ResponseEnd: 3, Partial: true},
			{Method: "GET", Target: "/b", Version: "1.1", Status: 204, RequestStart: 4, RequestEnd: 4, ResponseStart: 5, ResponseEnd: 5, Partial: true},
		},
		stats: Stats{Exchanges: 2, Lost: 3},
	},
	{
		name: "request body lost, response still paired",
		evs: []ev{
			in(1, "POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nnot hex\r\n"),
			in(2, "more body"), out(3, nf), in(4, getB), out(5, nf),
		},
		want: []Exchange{
			with(ex("POST", "/p", 404, 1, 2, 3, 3), func(e *Exchange) { e.Partial = true }),
			ex("GET", "/b", 404, 4, 4, 5, 5),
		},
		stats: Stats{Exchanges: 2, ParseErrors: 1},
	},
}

func TestConn(t *testing.T) {
	for _, tc := range connCases {
		t.Run(tc.name, func(t *testing.T) {
			got, c := run(t, tc.role, tc.opts, tc.capture, tc.evs)
			assert.Equal(t, tc.want, got)
			want := tc.stats
			if want == (Stats{}) {
				want.Exchanges = uint64(len(tc.want))
			}
			assert.Equal(t, want, c.Stats())
		})
	}
}

// TestConnSplits re-feeds every case without a capture limit with each
// syscall split in two, and in three, at every byte position, all parts
// at the syscall's timestamp: the exchanges must not change.
func TestConnSplits(t *testing.T) {
	for _, tc := range connCases {
		if tc.capture > 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			for k, e := range tc.evs {
				if e.end {
					continue
				}
				for i := 1; i < len(e.data); i++ {
					for j := i; j < len(e.data); j++ {
						evs := splitAt(tc.evs, k, i, j)
						got, _ := run(t, tc.role, tc.opts, 0, evs)
						if !assert.Equal(t, tc.want, got, "syscall %d split at %d and %d", k, i, j) {
							return
						}
					}
				}
			}
		})
	}
}

func splitAt(evs []ev, k, i, j int) []ev {
	e := evs[k]
	parts := []ev{{dir: e.dir, ts: e.ts, data: e.data[:i]}}
	if j > i {
		parts = append(parts, ev{dir: e.dir, ts: e.ts, data: e.data[i:j]})
	}
	parts = append(parts, ev{dir: e.dir, ts: e.ts, data: e.data[j:]})
	out := append([]ev{}, evs[:k]...)
	out = append(out, parts...)
	return append(out, evs[k+1:]...)
}

// TestConnByteByByte feeds every case one byte per syscall.
func TestConnByteByByte(t *testing.T) {
	for _, tc := range connCases {
		if tc.capture > 0 || tc.noBytewise {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			var evs []ev
			for _, e := range tc.evs {
				if e.end {
					evs = append(evs, e)
					continue
				}
				for i := range len(e.data) {
					evs = append(evs, ev{dir: e.dir, ts: e.ts, data: e.data[i : i+1]})
				}
			}
			got, _ := run(t, tc.role, tc.opts, 0, evs)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestSplitTimestamps checks that a message split across syscalls starts
// at the first and ends at the last, for every split position.
func TestSplitTimestamps(t *testing.T) {
	const req = "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz"
	for _, role := range []Role{Server, Client} {
		rd, wd := Ingress, Egress
		if role == Client {
			rd, wd = Egress, Ingress
		}
		for i := 1; i < len(req); i++ {
			for j := 1; j < len(resp); j++ {
				evs := []ev{
					{dir: rd, ts: 1, data: req[:i]}, {dir: rd, ts: 2, data: req[i:]},
					{dir: wd, ts: 3, data: resp[:j]}, {dir: wd, ts: 4, data: resp[j:]},
				}
				got, _ := run(t, role, Options{}, 0, evs)
				require.Equal(t, []Exchange{ex("POST", "/p", 200, 1, 2, 3, 4)}, got, "role %d split %d/%d", role, i, j)
			}
		}
	}
}

// TestCaptureSweep re-feeds cases with Content-Length and chunked bodies at
// every capture size that still covers each syscall's framing bytes.
func TestCaptureSweep(t *testing.T) {
	big := strings.Repeat("z", 700)
	evs := []ev{
		in(1, "POST /u HTTP/1.1\r\nHost: example.com\r\nContent-Length: 700\r\n\r\n"), in(2, big[:350]), in(3, big[350:]),
		out(4, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
		out(5, "100\r\n"+big[:256]+"\r\n"), out(6, "2\r\nab\r\n0\r\n"), out(7, "\r\n"),
		in(8, getB), out(9, ok5),
	}
	want := []Exchange{ex("POST", "/u", 200, 1, 3, 4, 7), ex("GET", "/b", 200, 8, 8, 9, 9)}
	for capture := 70; capture <= 800; capture++ {
		got, c := run(t, Server, Options{}, capture, evs)
		require.Equal(t, want, got, "capture %d", capture)
		require.Equal(t, Stats{Exchanges: 2}, c.Stats(), "capture %d", capture)
	}
}

func TestNonHTTP(t *testing.T) {
	tlsHello := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x8f\x00\x13", 60)
	pgStartup := "\x00\x00\x00\x4a\x00\x03\x00\x00user\x00postgres\x00database\x00app\x00\x00"
	tests := []struct {
		name     string
		req      []string
		resp     []string
		nonHTTP  bool
		parseErr uint64
	}{
		{name: "tls", req: []string{tlsHello, "\x14\x03\x03\x00\x01\x01", "\x17\x03\x03\x00\x20" + strings.Repeat("\xaa", 32), "\x17\x03\x03\x00\x10"}, resp: []string{"\x16\x03\x03\x00\x7a\x02"}, nonHTTP: true, parseErr: 2},
		{name: "redis", req: []string{"*1\r\n$4\r\nPING\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "*1\r\n$4\r\nQUIT\r\n"}, resp: []string{"+PONG\r\n", "$-1\r\n", "+OK\r\n"}, nonHTTP: true, parseErr: 2},
		{name: "postgres", req: []string{pgStartup, "p\x00\x00\x00\x08abc\x00", "Q\x00\x00\x00\x0dSELECT 1\x00", "X\x00\x00\x00\x04"}, resp: []string{"R\x00\x00\x00\x08\x00\x00\x00\x00"}, nonHTTP: true, parseErr: 2},
		{name: "garbage text", req: []string{"hello there\r\n", "GET\r\n", "GET / HTTP/2.0\r\n\r\n", "get / HTTP/1.1\r\n\r\n"}, resp: []string{"HTTP/1.1 abc\r\n\r\n"}, nonHTTP: true, parseErr: 2},
		{name: "binary", req: []string{"\x00\xff\x10\x13\n\nGET", "\x01\x02", "\n\n\n", "\x00", "\xff"}, resp: []string{"\x00\x00\x00\x00"}, nonHTTP: true, parseErr: 2},
		{name: "ssh", req: []string{"SSH-2.0-OpenSSH_9.6\r\n", "\x00\x00\x05\xdc\x06\x14", "\x00", "\x00"}, resp: []string{"SSH-2.0-OpenSSH_9.6\r\n"}, nonHTTP: true, parseErr: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, role := range []Role{Server, Client} {
				rd, wd := Ingress, Egress
				if role == Client {
					rd, wd = Egress, Ingress
				}
				var evs []ev
				ts := uint64(1)
				for i := range max(len(tt.req), len(tt.resp)) {
					if i < len(tt.req) {
						evs = append(evs, ev{dir: rd, ts: ts, data: tt.req[i]})
					}
					if i < len(tt.resp) {
						evs = append(evs, ev{dir: wd, ts: ts + 1, data: tt.resp[i]})
					}
					ts += 2
				}
				evs = append(evs, ev{dir: rd, ts: ts, data: get}, ev{dir: wd, ts: ts + 1, data: ok5}, closeAt(ts+2))
				got, c := run(t, role, Options{}, 0, evs)
				assert.Empty(t, got)
				s := c.Stats()
				assert.Equal(t, tt.nonHTTP, s.NonHTTP == 1)
				assert.Equal(t, tt.parseErr, s.ParseErrors)
				assert.Nil(t, c.req.buf)
				assert.Nil(t, c.resp.buf)
			}
		})
	}
}

// TestGarbageStaysBounded feeds a long stream of text that keeps looking
// almost like a start line.
func TestGarbageStaysBounded(t *testing.T) {
	c := NewConn(Server, Options{MaxHeaderBytes: 256})
	emit := func(e Exchange) { t.Fatalf("unexpected exchange %+v", e) }
	// A response direction never judged non-HTTP, fed forever.
	for i := range 10000 {
		c.Feed(Egress, uint64(i), []byte("HTTP/1.1 200 "+strings.Repeat("r", i%300)), 13+i%300, emit)
		checkBounds(t, c)
	}
	for i := range 10000 {
		c.Feed(Ingress, uint64(i), []byte("GET /"+strings.Repeat("p", i%300)), 5+i%300, emit)
		checkBounds(t, c)
	}
}

func TestPath(t *testing.T) {
	tests := []struct{ target, want string }{
		{"/a/b?x=1&y=2", "/a/b"},
		{"/a/b", "/a/b"},
		{"/", "/"},
		{"*", "*"},
		{"/p#frag", "/p"},
		{"http://example.com/x/y?q", "/x/y"},
		{"HTTPS://example.com", "/"},
		{"http://example.com?q", "/"},
		{"example.com:443", "example.com:443"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			assert.Equal(t, tt.want, Exchange{Target: tt.target}.Path())
		})
	}
}

func TestFlush(t *testing.T) {
	c := NewConn(Server, Options{})
	var got []Exchange
	emit := func(e Exchange) { got = append(got, e) }
	long := "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("l", 300) + "\r\nContent-Length: 5\r\n\r\nhello"
	c.Feed(Ingress, 1, []byte(get), len(get), emit)
	c.Feed(Egress, 2, []byte(long[:64]), len(long), emit)
	assert.Empty(t, got)
	c.Flush(emit)
	want := with(ex("GET", "/a?x=1", 200, 1, 1, 2, 2), func(e *Exchange) { e.Partial, e.Seq = true, 1 })
	assert.Equal(t, []Exchange{want}, got)
	// A response in sync is not flushed.
	c.Feed(Ingress, 3, []byte(getB), len(getB), emit)
	c.Feed(Egress, 4, []byte(ok5[:20]), 20, emit)
	c.Flush(emit)
	assert.Len(t, got, 1)
	c.Feed(Egress, 5, []byte(ok5[20:]), len(ok5)-20, emit)
	assert.Equal(t, []Exchange{want, with(ex("GET", "/b", 200, 3, 3, 4, 5), func(e *Exchange) { e.Seq = 2 })}, got)
}

func TestCloseTwiceAndFeedAfterClose(t *testing.T) {
	got, c := run(t, Server, Options{}, 0, []ev{in(1, get), closeAt(2), closeAt(3), in(4, getB), out(5, nf), closeAt(6)})
	assert.Len(t, got, 1)
	assert.Equal(t, uint64(1), c.Stats().Exchanges)
}

func TestOTLPExport(t *testing.T) {
	tests := []struct {
		name, head string
		want       bool
	}{
		{"traces protobuf", "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", true},
		{"metrics json with charset", "POST /v1/metrics HTTP/1.1\r\ncontent-type: Application/JSON; charset=utf-8\r\n", true},
		{"logs", "POST /v1/logs HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", true},
		{"profiles", "POST /v1development/profiles HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", true},
		{"absolute form with query", "POST http://gw:4318/v1/traces?x=1 HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", true},
		{"other type", "POST /v1/traces HTTP/1.1\r\nContent-Type: text/plain\r\n", false},
		{"no type", "POST /v1/traces HTTP/1.1\r\n", false},
		{"GET", "GET /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", false},
		{"other path", "POST /v1/tracesx HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n", false},
		{"sub path", "POST /api/v1/traces HTTP/1.1\r\nContent-Type: application/json\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := run(t, Server, Options{}, 0, []ev{
				in(1, tt.head+"Content-Length: 0\r\n\r\n"),
				out(2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
			})
			require.Len(t, got, 1)
			assert.Equal(t, tt.want, got[0].OTLPExport)
		})
	}
}
