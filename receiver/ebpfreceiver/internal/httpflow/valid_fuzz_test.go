package httpflow

import (
	"fmt"
	"strings"
	"testing"
)

// byteSrc turns fuzz bytes into choices; it yields zeros when exhausted.
type byteSrc struct{ b []byte }

func (s *byteSrc) intn(n int) int {
	if len(s.b) == 0 {
		return 0
	}
	v := int(s.b[0])
	s.b = s.b[1:]
	return v % n
}

// msg is one generated message: its bytes and which of them need not be
// captured: body data, and the CRLF after chunk data.
type msg struct {
	data []byte
	skip []bool
}

func (m *msg) add(s string, skip bool) {
	m.data = append(m.data, s...)
	for range s {
		m.skip = append(m.skip, skip)
	}
}

// genBody appends a body with Content-Length or chunked framing.
func genBody(s *byteSrc, m *msg, hdr *strings.Builder) func() {
	switch s.intn(3) {
	case 1:
		n := s.intn(256) * (1 + s.intn(4))
		fmt.Fprintf(hdr, "Content-Length: %d\r\n", n)
		return func() { m.add(strings.Repeat("b", n), true) }
	case 2:
		hdr.WriteString("Transfer-Encoding: chunked\r\n")
		return func() {
			for range s.intn(4) {
				n := 1 + s.intn(200)*(1+s.intn(3))
				ext := ""
				if s.intn(4) == 0 {
					ext = ";x=y"
				}
				m.add(fmt.Sprintf("%x%s\r\n", n, ext), false)
				m.add(strings.Repeat("c", n), true)
				m.add("\r\n", true)
			}
			m.add("0\r\n", false)
			if s.intn(3) == 0 {
				m.add("Trailer-A: 1\r\n", false)
			}
			m.add("\r\n", false)
		}
	}
	return func() {}
}

type step struct {
	req bool
	m   msg
	ex  int // index of the exchange
	// which timestamp of the exchange this message sets
	reqStart, reqEnd, respStart, respEnd bool
}

// genTraffic builds valid HTTP/1.x traffic and the exchanges it must yield.
func genTraffic(s *byteSrc) (steps []step, want []Exchange, closeDelimited bool) {
	methodsUsed := []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}
	pipelined := s.intn(4) == 0
	n := 1 + s.intn(6)
	var reqs, resps []step
	for i := range n {
		e := Exchange{Method: methodsUsed[s.intn(len(methodsUsed))], Version: "1.1", Seq: uint64(i + 1)}
		if s.intn(5) == 0 {
			e.Version = "1.0"
		}
		e.Target = fmt.Sprintf("/p%d", i)
		if s.intn(2) == 0 {
			e.Target += "?q=" + strings.Repeat("v", s.intn(40))
		}
		var hdr strings.Builder
		fmt.Fprintf(&hdr, "%s %s HTTP/%s\r\n", e.Method, e.Target, e.Version)
		if s.intn(4) != 0 {
			fmt.Fprintf(&hdr, "Host: h%d.example:80\r\n", i)
		}
		if s.intn(2) == 0 {
			e.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i+1, i+7)
			fmt.Fprintf(&hdr, "traceparent: %s\r\n", e.TraceParent)
		}
		if k := s.intn(3); k > 0 {
			fmt.Fprintf(&hdr, "X-Pad: %s\r\n", strings.Repeat("p", k*s.intn(256)))
		}
		var rq msg
		body := genBody(s, &rq, &hdr)
		expect := !pipelined && rq.data == nil && strings.Contains(hdr.String(), "Length: ") && s.intn(3) == 0
		expect = expect || (!pipelined && strings.Contains(hdr.String(), "chunked") && s.intn(3) == 0)
		if expect {
			hdr.WriteString("Expect: 100-continue\r\n")
		}
		hdr.WriteString("\r\n")
		rq.add(hdr.String(), false)
		if expect {
			reqs = append(reqs, step{req: true, m: rq, ex: i, reqStart: true, reqEnd: true})
			var cont msg
			cont.add("HTTP/1.1 100 Continue\r\n\r\n", false)
			reqs = append(reqs, step{m: cont, ex: i})
			rq = msg{}
			body()
			if len(rq.data) > 0 {
				reqs = append(reqs, step{req: true, m: rq, ex: i, reqEnd: true})
			}
		} else {
			body()
			reqs = append(reqs, step{req: true, m: rq, ex: i, reqStart: true, reqEnd: true})
		}

		statuses := []int{200, 201, 204, 304, 404, 500}
		e.Status = statuses[s.intn(len(statuses))]
		var rs msg
		if s.intn(5) == 0 {
			rs.add("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", false)
		}
		var rh strings.Builder
		fmt.Fprintf(&rh, "HTTP/1.1 %d Whatever\r\n", e.Status)
		if s.intn(3) == 0 {
			fmt.Fprintf(&rh, "X-Pad: %s\r\n", strings.Repeat("r", s.intn(256)))
		}
		last := i == n-1
		noBody := e.Method == "HEAD" || e.Status == 204 || e.Status == 304
		var rbody func()
		switch {
		case noBody:
			if s.intn(2) == 0 {
				rh.WriteString("Content-Length: 1234\r\n")
			}
			rbody = func() {}
		case last && s.intn(3) == 0:
			closeDelimited = true
			rbody = func() { rs.add(strings.Repeat("u", s.intn(300)), true) }
		default:
			rbody = genBody(s, &rs, &rh)
			if !strings.Contains(rh.String(), "Length") && !strings.Contains(rh.String(), "chunked") {
				rh.WriteString("Content-Length: 0\r\n")
			}
		}
		rh.WriteString("\r\n")
		// Interim responses come first; the final one starts at its head.
		var interim msg
		if len(rs.data) > 0 {
			interim = rs
			rs = msg{}
		}
		rs.add(rh.String(), false)
		rbody()
		if len(interim.data) > 0 {
			resps = append(resps, step{m: interim, ex: i})
		}
		resps = append(resps, step{m: rs, ex: i, respStart: true, respEnd: true})
		want = append(want, e)
		if !pipelined {
			steps = append(steps, reqs...)
			steps = append(steps, resps...)
			reqs, resps = nil, nil
		}
	}
	steps = append(steps, reqs...)
	return append(steps, resps...), want, closeDelimited
}

// piece is one syscall of generated traffic; only prefix bytes of it need
// be captured for an exact result.
type piece struct {
	dir    Dir
	ts     uint64
	data   []byte
	prefix int
}

// split cuts generated traffic into syscalls and sets the timestamps of
// want from them.
func split(s *byteSrc, role Role, steps []step, want []Exchange) []piece {
	var out []piece
	ts := uint64(0)
	for _, st := range steps {
		dir := Egress
		if st.req == (role == Server) {
			dir = Ingress
		}
		data, skip := st.m.data, st.m.skip
		first := ts + 1
		for len(data) > 0 {
			n := len(data)
			if s.intn(2) == 0 {
				n = 1 + s.intn(len(data))
			}
			ts++
			p := piece{dir: dir, ts: ts, data: data[:n], prefix: n}
			if s.intn(2) == 0 {
				// Leave out the tail of the piece if it need not be
				// captured.
				i := 0
				for i < n && !skip[i] {
					i++
				}
				j := i
				for j < n && skip[j] {
					j++
				}
				if j == n {
					p.prefix = i
				}
			}
			out = append(out, p)
			data, skip = data[n:], skip[n:]
		}
		e := &want[st.ex]
		if st.reqStart {
			e.RequestStart = first
		}
		if st.reqEnd {
			e.RequestEnd = ts
		}
		if st.respStart {
			e.ResponseStart = first
		}
		if st.respEnd {
			e.ResponseEnd = ts
		}
	}
	return out
}

// feedPieces feeds pieces to a new Conn, each captured up to its prefix
// and at most capture bytes (0: no limit), then closes it if end is set.
func feedPieces(t *testing.T, role Role, pieces []piece, capture int, end bool) ([]Exchange, *Conn) {
	c := NewConn(role, Options{})
	var got []Exchange
	emit := func(e Exchange) { got = append(got, e) }
	ts := uint64(0)
	for _, p := range pieces {
		n := p.prefix
		if capture > 0 {
			n = min(n, capture)
		}
		c.Feed(p.dir, p.ts, p.data[:n], len(p.data), emit)
		checkBounds(t, c)
		ts = p.ts
	}
	if end {
		c.Close(ts+1, emit)
	}
	return got, c
}

// FuzzValidTraffic generates valid exchanges from the fuzz input and feeds
// them in random syscall splits, with body bytes sometimes not captured: it
// requires exactly the generated exchanges back. Then it feeds them again
// with every syscall cut to an arbitrary capture size: the exchanges that
// come back must be a subsequence of the generated ones, exact except for
// the end timestamps of Partial ones, which may only be later.
func FuzzValidTraffic(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte("\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"))
	f.Add([]byte("\x00\x04\x02\x01\x00\x00\x02\x02\x03\x01\x01\x01\x01\x02\x00\x05\x01\x02\x00\x00\x01\x01\x01\x00\x03\x07"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &byteSrc{b: in}
		role := Role(s.intn(2))
		// Below 12 bytes an interim status line cannot be told from a
		// final one.
		capture := statusCodeEnd + s.intn(256)
		steps, want, closeDelimited := genTraffic(s)
		pieces := split(s, role, steps, want)

		got, c := feedPieces(t, role, pieces, 0, closeDelimited)
		if len(got) != len(want) {
			t.Fatalf("got %d exchanges, want %d:\n%+v\n%+v", len(got), len(want), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("exchange %d:\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}
		if st := c.Stats(); st != (Stats{Exchanges: uint64(len(want))}) {
			t.Fatalf("stats %+v", st)
		}

		got, _ = feedPieces(t, role, pieces, capture, true)
		j := 0
		for _, g := range got {
			for j < len(want) && want[j].Target != g.Target {
				j++
			}
			if j == len(want) {
				t.Fatalf("capture %d: exchange %+v not generated, or out of order", capture, g)
			}
			w := want[j]
			j++
			if g.Err != nil {
				t.Fatalf("capture %d: %+v", capture, g)
			}
			// A request hidden in uncaptured bytes is not counted.
			if g.Seq == 0 || g.Seq > w.Seq {
				t.Fatalf("capture %d: request number\n got %+v\nwant %+v", capture, g, w)
			}
			g.Seq = w.Seq
			if !g.Partial {
				if g != w {
					t.Fatalf("capture %d:\n got %+v\nwant %+v", capture, g, w)
				}
				continue
			}
			if g.TraceParent != "" && g.TraceParent != w.TraceParent {
				t.Fatalf("capture %d: headers\n got %+v\nwant %+v", capture, g, w)
			}
			g.TraceParent, g.Partial = w.TraceParent, false
			if g.RequestEnd < w.RequestEnd || g.ResponseEnd < w.ResponseEnd {
				t.Fatalf("capture %d: ends\n got %+v\nwant %+v", capture, g, w)
			}
			g.RequestEnd, g.ResponseEnd = w.RequestEnd, w.ResponseEnd
			if g != w {
				t.Fatalf("capture %d:\n got %+v\nwant %+v", capture, g, w)
			}
		}
	})
}
