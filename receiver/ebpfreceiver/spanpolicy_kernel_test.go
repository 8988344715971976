//go:build linux

package ebpfreceiver

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// 10,000 requests to a real server, 1% of them failing and 1% slow, with
// the policy keeping 10% of the rest: every failed and slow request gives
// its server and client spans, the rest are kept by trace as the share
// says, the policy's drops are counted, and the histograms count every
// request.
func TestHTTPSpanPolicy(t *testing.T) {
	const total, keepPercent = 10000, 10
	port := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/fail"):
			w.WriteHeader(http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/slow"):
			time.Sleep(50 * time.Millisecond)
		}
	})
	cfg := createDefaultConfig()
	cfg.HTTP.Ports.Include = []int{port} // other packages' tests run HTTP on this node too
	cfg.HTTP.Spans.SlowThreshold = 40 * time.Millisecond
	cfg.HTTP.Spans.KeepPercent = keepPercent
	traces, metrics := httpReceivers(t, cfg)
	getEach(t, port, total, func(i int) string {
		switch i % 100 {
		case 0:
			return "/fail"
		case 50:
			return "/slow"
		}
		return "/ok"
	})

	// Every span is exported or dropped once the link window has passed.
	dropped := func(md pmetric.Metrics) int64 {
		return otlptest.SumInt(md, "ebpf.spans.dropped", func(a pcommon.Map) bool {
			return otlptest.Str(a, "ebpf.drop.reason") == "sampled_out"
		})
	}
	var last pmetric.Metrics
	var spans []ptrace.Span
	require.Eventually(t, func() bool {
		all := metrics.AllMetrics()
		last = all[len(all)-1]
		server, client := spansOn(traces.AllTraces(), port)
		spans = append(server, client...)
		return int64(len(spans))+dropped(last) == 2*total
	}, 30*time.Second, 200*time.Millisecond, "every span exported or dropped")

	byKind := map[string]map[ptrace.SpanKind]int{}
	traceKinds := map[pcommon.TraceID]map[ptrace.SpanKind]int{}
	for _, s := range spans {
		kind := strings.SplitN(strings.TrimPrefix(attr(s, "url.path").(string), "/"), "/", 2)[0]
		if byKind[kind] == nil {
			byKind[kind] = map[ptrace.SpanKind]int{}
		}
		byKind[kind][s.Kind()]++
		if traceKinds[s.TraceID()] == nil {
			traceKinds[s.TraceID()] = map[ptrace.SpanKind]int{}
		}
		traceKinds[s.TraceID()][s.Kind()]++
	}
	for _, kind := range []string{"fail", "slow"} {
		assert.Equal(t, map[ptrace.SpanKind]int{ptrace.SpanKindServer: total / 100, ptrace.SpanKindClient: total / 100}, byKind[kind], "every %s request", kind)
	}
	// The rest is Binomial(9800, 0.1): mean 980, sd 29.7; 6 sd either side.
	rest := float64(total - 2*total/100)
	mean, bound := rest*keepPercent/100, 6*math.Sqrt(rest*keepPercent/100*(1-keepPercent/100.0))
	ok200 := byKind["ok"][ptrace.SpanKindServer]
	assert.InDelta(t, mean, float64(ok200), bound, "server spans of the other requests")
	assert.Equal(t, ok200, byKind["ok"][ptrace.SpanKindClient], "a trace is kept whole")
	for id, kinds := range traceKinds {
		if !assert.Equal(t, map[ptrace.SpanKind]int{ptrace.SpanKindServer: 1, ptrace.SpanKindClient: 1}, kinds, "trace %s", id) {
			for _, s := range spans {
				if s.TraceID() == id {
					t.Logf("trace %s: %v %v %v, %d to %d", id, s.Kind(), attr(s, "url.path"),
						attr(s, "http.response.status_code"), s.StartTimestamp(), s.EndTimestamp())
				}
			}
		}
	}
	assert.Equal(t, int64(2*(total-len(traceKinds))), dropped(last), "drops counted")

	require.Eventually(t, func() bool {
		all := metrics.AllMetrics()
		last = all[len(all)-1]
		return histogramCount(last, "http.server.request.duration", port, "/ok/{id}", "/fail/{id}", "/slow/{id}") == total &&
			histogramCount(last, "http.client.request.duration", port) == total
	}, 10*time.Second, 100*time.Millisecond, "the histograms count every request")
	assert.Equal(t, map[string]int64{}, nonZeroLost(last))
}

// The spans of failed requests go out at once, each server span with the
// client span that sent it as its parent, while the other spans wait out a
// link window of 30 s.
func TestHTTPExpress(t *testing.T) {
	const total, failing = 200, 10
	port := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	cfg := createDefaultConfig()
	cfg.HTTP.Ports.Include = []int{port}
	cfg.HTTP.LinkWindow = 30 * time.Second
	traces, _ := httpReceivers(t, cfg)
	getEach(t, port, total, func(i int) string {
		if i%(total/failing) == 0 {
			return "/fail"
		}
		return "/ok"
	})

	var server, callers []ptrace.Span
	require.Eventually(t, func() bool {
		server, callers = spansOn(traces.AllTraces(), port)
		return len(server) == failing && len(callers) == failing
	}, 10*time.Second, 20*time.Millisecond, "the failed requests' spans alone, well within the window")
	byID := map[pcommon.SpanID]ptrace.Span{}
	for _, c := range callers {
		byID[c.SpanID()] = c
	}
	for _, s := range server {
		assert.Equal(t, ptrace.StatusCodeError, s.Status().Code())
		c, ok := byID[s.ParentSpanID()]
		if !ok {
			for _, o := range otlptest.Spans(traces.AllTraces()...) {
				t.Logf("%v %v span %s parent %s, %d to %d, %v", o.Kind(), attr(o, "url.path"), o.SpanID(), o.ParentSpanID(), o.StartTimestamp(), o.EndTimestamp(), o.Attributes().AsRaw())
			}
		}
		if assert.True(t, ok, "server span %s: its parent is a client span", attr(s, "url.path")) {
			assert.Equal(t, c.TraceID(), s.TraceID())
			assert.Equal(t, attr(c, "url.path"), attr(s, "url.path"))
		}
	}
}

// getEach makes n requests in turn on one keep-alive connection to port,
// request i to path(i)/i.
func getEach(t *testing.T, port, n int, path func(int) string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range n {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s/%d", port, path(i), i))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
