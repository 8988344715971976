package httpflow

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzConn feeds a request stream and a response stream to a Conn in
// pieces chosen by plan: each plan byte picks a direction (bit 7) and a
// length (bits 0-5, plus 1); bit 6 multiplies the length by 32; 0x40
// calls Flush instead. Each piece is
// captured up to capture bytes (0: all). The Conn must not panic, must stay
// within its bounds and may only emit exchanges that its input supports.
func FuzzConn(f *testing.F) {
	f.Add(false, uint16(0), uint8(0), []byte(get+getB+getC), []byte(ok5+nf+chunk), []byte{0x05, 0x85, 0x10, 0x90})
	f.Add(true, uint16(0), uint8(0), []byte("PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"),
		[]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), []byte{0x3f, 0x99, 0x02, 0xff})
	f.Add(false, uint16(40), uint8(0), []byte(get+getB), []byte(bigChunks+"0\r\n\r\n"+nf), []byte{0x7f, 0xff, 0xff, 0x7f, 0xff})
	f.Add(false, uint16(0), uint8(1), []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), []byte("+OK\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, client bool, capture uint16, maxHeader uint8, reqs, resps, plan []byte) {
		role, rd, wd := Server, Ingress, Egress
		if client {
			role, rd, wd = Client, Egress, Ingress
		}
		c := NewConn(role, Options{MaxPending: 4, MaxHeaderBytes: 32 + 4*int(maxHeader)})
		var got []Exchange
		emit := func(e Exchange) { got = append(got, e) }
		ts := uint64(0)
		feed := func(dir Dir, data []byte) {
			ts++
			p := data
			if capture > 0 && len(p) > int(capture) {
				p = p[:capture]
			}
			c.Feed(dir, ts, p, len(data), emit)
			checkBounds(t, c)
		}
		r, w := reqs, resps
		for _, b := range plan {
			if b == 0x40 {
				c.Flush(emit)
				continue
			}
			n := int(b&0x3f) + 1
			if b&0x40 != 0 {
				n *= 32
			}
			src, dir := &r, rd
			if b&0x80 != 0 {
				src, dir = &w, wd
			}
			n = min(n, len(*src))
			if n == 0 {
				continue
			}
			feed(dir, (*src)[:n])
			*src = (*src)[n:]
		}
		for len(r) > 0 || len(w) > 0 {
			for _, s := range []struct {
				src *[]byte
				dir Dir
			}{{&r, rd}, {&w, wd}} {
				if n := min(64, len(*s.src)); n > 0 {
					feed(s.dir, (*s.src)[:n])
					*s.src = (*s.src)[n:]
				}
			}
		}
		c.Close(ts+1, emit)
		checkExchanges(t, c, got, reqs)
	})
}

// checkExchanges asserts what any emitted exchange must satisfy.
func checkExchanges(t *testing.T, c *Conn, got []Exchange, reqs []byte) {
	t.Helper()
	if n := c.Stats().Exchanges; n != uint64(len(got)) {
		t.Fatalf("Stats.Exchanges %d, emitted %d", n, len(got))
	}
	if len(got) > bytes.Count(reqs, []byte(" HTTP/1.")) {
		t.Fatalf("%d exchanges from %d request lines", len(got), bytes.Count(reqs, []byte(" HTTP/1.")))
	}
	for _, e := range got {
		switch {
		case !slices.Contains(methods[:], e.Method):
			t.Fatalf("method %q", e.Method)
		case e.Version != "1.0" && e.Version != "1.1":
			t.Fatalf("version %q", e.Version)
		case e.Target == "" || !bytes.Contains(reqs, []byte(e.Method+" "+e.Target+" HTTP/1."+e.Version[2:]+"\r\n")):
			t.Fatalf("request line %s %q not in the input", e.Method, e.Target)
		case e.Status != 0 && (e.Status < 101 || e.Status > 599 || (e.Status < 200 && e.Status != 101)):
			t.Fatalf("status %d", e.Status)
		case e.Err == nil && e.Status == 0:
			t.Fatalf("no status and no error: %+v", e)
		case e.Err != nil && e.Err != ErrClosed:
			t.Fatalf("err %v", e.Err)
		case e.RequestStart == 0 || e.RequestStart > e.RequestEnd:
			t.Fatalf("request times %d..%d", e.RequestStart, e.RequestEnd)
		case e.ResponseStart != 0 && (e.ResponseStart < e.RequestStart || e.ResponseStart > e.ResponseEnd):
			t.Fatalf("response times %d..%d after %d", e.ResponseStart, e.ResponseEnd, e.RequestStart)
		case e.TraceParent != "" && !validTraceParent([]byte(e.TraceParent)):
			t.Fatalf("traceparent %q", e.TraceParent)
		}
	}
}
