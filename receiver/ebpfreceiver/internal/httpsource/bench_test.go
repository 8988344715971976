package httpsource

import (
	"net/netip"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

// benchSpans is a keep-alive node's batch: 256 requests from time from
// on, each seen from the client and the server on this node, on 16
// connections.
func benchSpans(from uint64) []*span {
	var spans []*span
	for i := range 256 {
		start := from + uint64(1_000_000*(i+1))
		client := fixedSpan(httpflow.Client, "198.18.0.1:40000", "198.18.0.2:8080", "GET", "/api/v1/items/42?x=1", 200,
			start, start+500_000, randomTraceID(), randomSpanID())
		server := fixedSpan(httpflow.Server, "198.18.0.2:8080", "198.18.0.1:40000", "GET", "/api/v1/items/42?x=1", 200,
			start+1_000, start+499_000, randomTraceID(), randomSpanID())
		port := uint16(40000 + i%16)
		client.x.local = netip.AddrPortFrom(client.x.local.Addr(), port)
		server.x.remote = client.x.local
		spans = append(spans, client, server)
	}
	return spans
}

// BenchmarkBuild links and builds one batch of spans; allocs/op over 512
// is the allocations per span.
func BenchmarkBuild(b *testing.B) {
	q := &spanQueue{res: sourcetest.Resources, bootNS: 1_700_000_000_000_000_000}
	spans := benchSpans(0)
	clients := clientIndex(spans)
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range spans {
			s.parentSpan, s.parent = nil, pcommon.SpanID{}
		}
		link(spans, clients)
		if q.build(spans).SpanCount() != len(spans) {
			b.Fatal("spans lost")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// BenchmarkLink links a link window's spans of one process that serves
// and calls at 5k requests a second: 12,800 spans.
func BenchmarkLink(b *testing.B) {
	var spans []*span
	for i := range 25 {
		spans = append(spans, benchSpans(uint64(i)*256_000_000)...)
	}
	clients := clientIndex(spans)
	for b.Loop() {
		for _, s := range spans {
			s.parentSpan, s.parent = nil, pcommon.SpanID{}
		}
		link(spans, clients)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// BenchmarkRED records one request's server and client durations per op.
func BenchmarkRED(b *testing.B) {
	r := newREDMetrics(100)
	spans := benchSpans(0)[:2]
	b.ReportAllocs()
	for b.Loop() {
		r.add(&spans[0].x)
		r.add(&spans[1].x)
	}
}
