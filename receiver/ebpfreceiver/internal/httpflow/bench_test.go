package httpflow

import (
	"testing"
)

// BenchmarkFeed parses one keep-alive request/response pair per op.
func BenchmarkFeed(b *testing.B) {
	req := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench\r\n" +
		"traceparent: " + tp + "\r\nAccept: */*\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2048\r\n\r\n")
	for _, bc := range []struct {
		name     string
		captured int
	}{{"whole", len(resp) + 2048}, {"prefix256", 256}} {
		b.Run(bc.name, func(b *testing.B) {
			body := make([]byte, 2048)
			out := append(append([]byte{}, resp...), body...)
			c := NewConn(Server, Options{})
			n := 0
			emit := func(Exchange) { n++ }
			b.ReportAllocs()
			ts := uint64(0)
			for b.Loop() {
				ts += 2
				c.Feed(Ingress, ts, req, len(req), emit)
				c.Feed(Egress, ts+1, out[:min(len(out), bc.captured)], len(out), emit)
			}
			if n != b.N {
				b.Fatalf("%d exchanges for %d ops", n, b.N)
			}
		})
	}
	// Split: the request arrives in three reads, the response in two writes.
	b.Run("split", func(b *testing.B) {
		c := NewConn(Server, Options{})
		n := 0
		emit := func(Exchange) { n++ }
		b.ReportAllocs()
		ts := uint64(0)
		for b.Loop() {
			ts += 5
			c.Feed(Ingress, ts, req[:10], 10, emit)
			c.Feed(Ingress, ts+1, req[10:60], 50, emit)
			c.Feed(Ingress, ts+2, req[60:], len(req)-60, emit)
			c.Feed(Egress, ts+3, resp, len(resp), emit)
			c.Feed(Egress, ts+4, body256, 2048, emit)
		}
		if n != b.N {
			b.Fatalf("%d exchanges for %d ops", n, b.N)
		}
	})
}

var body256 = make([]byte, 256)

// TestFeedAllocs pins the steady-state allocations: the Target and
// TraceParent strings of the emitted Exchange, nothing per syscall.
func TestFeedAllocs(t *testing.T) {
	req := []byte("GET /x HTTP/1.1\r\nHost: h.example\r\ntraceparent: " + tp + "\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunks := []byte("10\r\n0123456789abcdef\r\n0\r\n\r\n")
	c := NewConn(Server, Options{})
	emit := func(Exchange) {}
	ts := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		ts += 6
		c.Feed(Ingress, ts, req[:7], 7, emit)
		c.Feed(Ingress, ts+1, req[7:], len(req)-7, emit)
		c.Feed(Egress, ts+2, resp[:20], 20, emit)
		c.Feed(Egress, ts+3, resp[20:], len(resp)-20, emit)
		c.Feed(Egress, ts+4, chunks[:10], 10, emit)
		c.Feed(Egress, ts+5, chunks[10:], len(chunks)-10, emit)
	})
	if allocs != 2 {
		t.Fatalf("%v allocations per exchange, want 2", allocs)
	}
	if s := c.Stats(); s.Exchanges < 1000 || s != (Stats{Exchanges: s.Exchanges}) {
		t.Fatalf("stats %+v", s)
	}
}
