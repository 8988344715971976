//go:build linux

package ebpfreceiver

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// httpReceivers starts a traces and a metrics receiver on one config, as a
// collector with both pipelines does.
func httpReceivers(t *testing.T, cfg *Config) (*consumertest.TracesSink, *consumertest.MetricsSink) {
	t.Helper()
	cfg.CollectionInterval = 200 * time.Millisecond
	cfg.InitialDelay = 0
	if cfg.HTTP.LinkWindow == createDefaultConfig().HTTP.LinkWindow {
		cfg.HTTP.LinkWindow = 300 * time.Millisecond // unless the test chose one
	}
	// The tests' servers and clients mostly run in this process, which is
	// the receiver's own.
	cfg.HTTP.TraceSelf = true
	set := receivertest.NewNopSettings(metadata.Type)
	traces := new(consumertest.TracesSink)
	tr, err := NewFactory().CreateTraces(context.Background(), set, cfg, traces)
	require.NoError(t, err)
	require.NoError(t, tr.Start(context.Background(), componenttest.NewNopHost()))
	metrics := new(consumertest.MetricsSink)
	mr := startReceiver(t, cfg, metrics)
	t.Cleanup(func() {
		require.NoError(t, tr.Shutdown(context.Background()))
		require.NoError(t, mr.Shutdown(context.Background()))
	})
	return traces, metrics
}

// spansOn returns the spans that touch a server port, by kind.
func spansOn(td []ptrace.Traces, port int) (server, client []ptrace.Span) {
	for _, s := range otlptest.Spans(td...) {
		if otlptest.Int(s.Attributes(), "server.port") != int64(port) {
			continue
		}
		if s.Kind() == ptrace.SpanKindServer {
			server = append(server, s)
		} else {
			client = append(client, s)
		}
	}
	return server, client
}

func attr(s ptrace.Span, k string) any {
	v, ok := s.Attributes().Get(k)
	if !ok {
		return nil
	}
	return v.AsRaw()
}

// waitSpans waits until n server and n client spans on port arrived.
func waitSpans(t *testing.T, sink *consumertest.TracesSink, port, n int) (server, client []ptrace.Span) {
	t.Helper()
	require.Eventually(t, func() bool {
		server, client = spansOn(sink.AllTraces(), port)
		return len(server) >= n && len(client) >= n
	}, 15*time.Second, 50*time.Millisecond, "want %d server and client spans on port %d", n, port)
	time.Sleep(500 * time.Millisecond) // anything more would be a bug
	server, client = spansOn(sink.AllTraces(), port)
	require.Len(t, server, n)
	require.Len(t, client, n)
	return server, client
}

func goServer(t *testing.T, h http.HandlerFunc) (port int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func statusHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	switch {
	case strings.HasPrefix(r.URL.Path, "/missing"):
		w.WriteHeader(http.StatusNotFound)
	case strings.HasPrefix(r.URL.Path, "/fail"):
		w.WriteHeader(http.StatusInternalServerError)
	default:
		_, _ = w.Write([]byte("hello"))
	}
}

// Go client and server on one connection: every exchange gives a server and
// a client span, linked into one trace.
func TestHTTPGoClientServer(t *testing.T) {
	traces, metrics := httpReceivers(t, createDefaultConfig())
	port := goServer(t, statusHandler)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for _, r := range []struct{ method, path string }{{"GET", "/users/42?token=secret"}, {"GET", "/missing"}, {"POST", "/fail"}} {
		req, err := http.NewRequest(r.method, fmt.Sprintf("http://127.0.0.1:%d%s", port, r.path), strings.NewReader("body"))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	server, clientSpans := waitSpans(t, traces, port, 3)
	byPath := map[string]ptrace.Span{}
	for _, s := range server {
		byPath[attr(s, "url.path").(string)] = s
	}
	want := map[string]struct {
		name   string
		status int64
		err    bool
	}{
		"/users/42": {"GET /users/{id}", 200, false},
		"/missing":  {"GET /missing", 404, false},
		"/fail":     {"POST /fail", 500, true},
	}
	for path, w := range want {
		s, ok := byPath[path]
		require.True(t, ok, "server span for %s", path)
		assert.Equal(t, w.name, s.Name())
		assert.Equal(t, w.status, attr(s, "http.response.status_code"))
		assert.Equal(t, "1.1", attr(s, "network.protocol.version"))
		assert.Equal(t, "127.0.0.1", attr(s, "client.address"))
		assert.Equal(t, "ebpfreceiver.te", attr(s, "process.executable.name"), "the test binary, as the kernel names it")
		assert.Equal(t, int64(os.Getpid()), attr(s, "process.pid"))
		assert.Equal(t, w.err, s.Status().Code() == ptrace.StatusCodeError, path)
	}
	for _, c := range clientSpans {
		path := attr(c, "url.path").(string)
		assert.Equal(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), attr(c, "url.full"), "client span url.full")
		s := byPath[path]
		assert.Equal(t, s.TraceID(), c.TraceID(), "one trace for %s", path)
		assert.Equal(t, c.SpanID(), s.ParentSpanID(), "the server span is the client span's child for %s", path)
		assert.True(t, c.ParentSpanID().IsEmpty())
		assert.Equal(t, attr(s, "http.response.status_code"), attr(c, "http.response.status_code"))
		assert.Equal(t, path != "/users/42", c.Status().Code() == ptrace.StatusCodeError, "client errors on 4xx and 5xx")
	}

	// The histograms count every request once.
	require.Eventually(t, func() bool {
		all := metrics.AllMetrics()
		return len(all) > 0 && histogramCount(all[len(all)-1], "http.server.request.duration", port, "/users/{id}", "/missing", "/fail") == 3 &&
			histogramCount(all[len(all)-1], "http.client.request.duration", port) == 3
	}, 5*time.Second, 50*time.Millisecond)
}

// histogramCount sums the data point counts of a duration histogram: on the
// client side those to port, on the server side those of routes. Tests in
// other packages run servers and clients on this node at the same time.
func histogramCount(md pmetric.Metrics, name string, port int, routes ...string) uint64 {
	var n uint64
	for _, dp := range otlptest.Histograms(md, name) {
		a := dp.Attributes()
		if p, ok := a.Get("server.port"); ok && p.Int() != int64(port) {
			continue
		}
		if r, ok := a.Get("http.route"); ok && !slices.Contains(routes, r.Str()) {
			continue
		}
		n += dp.Count()
	}
	return n
}

// curl against Python's http.server, which answers HTTP/1.0 and closes.
func TestHTTPCurlPython(t *testing.T) {
	traces, _ := httpReceivers(t, createDefaultConfig())
	port := freePort(t)
	srv := exec.Command("python3", "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1", "-d", t.TempDir())
	require.NoError(t, srv.Start(), "python3 is needed")
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 60*time.Second, 50*time.Millisecond, "python3's server listens (its start takes over 10 s in a loaded 6.1 guest under TCG)")

	for _, path := range []string{"/", "/nothing-here"} {
		out, err := exec.Command("curl", "-s", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d%s", port, path)).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	server, client := waitSpans(t, traces, port, 2)
	statuses := map[any]bool{}
	for _, s := range server {
		statuses[attr(s, "http.response.status_code")] = true
		assert.Equal(t, "1.1", attr(s, "network.protocol.version"), "curl asks in HTTP/1.1")
	}
	assert.Equal(t, map[any]bool{int64(200): true, int64(404): true}, statuses)
	for _, c := range client {
		assert.Equal(t, "GET", attr(c, "http.request.method"))
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A traceparent header written by the application puts both spans in its
// trace: the client span takes the header's span id, the server span takes
// it as parent.
func TestHTTPTraceParent(t *testing.T) {
	traces, _ := httpReceivers(t, createDefaultConfig())
	port := goServer(t, statusHandler)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/traced", port), nil)
	require.NoError(t, err)
	req.Header.Set("traceparent", tp)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()

	server, client := waitSpans(t, traces, port, 1)
	tid, sid := traceParentIDs(t, tp)
	assert.Equal(t, tid, server[0].TraceID())
	assert.Equal(t, sid, server[0].ParentSpanID())
	assert.Equal(t, tid, client[0].TraceID())
	assert.Equal(t, sid, client[0].SpanID())
}

// Under load every request gives exactly one server span, the statuses add
// up, the histogram counts the same, and nothing is lost.
func TestHTTPLoad(t *testing.T) {
	traces, metrics := httpReceivers(t, createDefaultConfig())
	port := goServer(t, statusHandler)
	const total, concurrency = 5000, 32
	paths := []string{"/ok", "/missing", "/fail"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	work := make(chan int)
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s/%d", port, paths[i%3], i))
				if !assert.NoError(t, err) {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()

	server, _ := waitSpans(t, traces, port, total)
	statuses := map[int64]int{}
	for _, s := range server {
		statuses[attr(s, "http.response.status_code").(int64)]++
	}
	assert.Equal(t, map[int64]int{200: 1667, 404: 1667, 500: 1666}, statuses)

	var last pmetric.Metrics
	require.Eventually(t, func() bool {
		all := metrics.AllMetrics()
		last = all[len(all)-1]
		return histogramCount(last, "http.server.request.duration", port, "/ok/{id}", "/missing/{id}", "/fail/{id}") == total
	}, 10*time.Second, 100*time.Millisecond)
	assert.Equal(t, map[string]int64{}, nonZeroLost(last))
	assert.GreaterOrEqual(t, histogramCount(last, "ebpf.http.delivery.duration", port), uint64(2*total),
		"every record's delivery time is counted: at least a read and a write per request")
}

// traceParentIDs returns the trace and parent ids of a W3C traceparent.
func traceParentIDs(t *testing.T, tp string) (pcommon.TraceID, pcommon.SpanID) {
	t.Helper()
	parts := strings.Split(tp, "-")
	require.Len(t, parts, 4, tp)
	var tid pcommon.TraceID
	var sid pcommon.SpanID
	_, err := hex.Decode(tid[:], []byte(parts[1]))
	require.NoError(t, err)
	_, err = hex.Decode(sid[:], []byte(parts[2]))
	require.NoError(t, err)
	return tid, sid
}

// nonZeroLost returns the ebpf.http.lost series above zero.
func nonZeroLost(md pmetric.Metrics) map[string]int64 {
	lost := map[string]int64{}
	for _, dp := range otlptest.Points(md, "ebpf.http.lost") {
		if v := dp.IntValue(); v > 0 {
			lost[otlptest.Str(dp.Attributes(), "ebpf.lost.reason")] = v
		}
	}
	return lost
}

// A secret in the body, the query string and the Authorization header is
// in no exported span or metric.
func TestHTTPExportsNoSecrets(t *testing.T) {
	traces, metrics := httpReceivers(t, createDefaultConfig())
	port := goServer(t, statusHandler)
	const secret = "s3cr3t-Z9Q"
	req, err := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/login?password=%s", port, secret), strings.NewReader("password="+secret))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	waitSpans(t, traces, port, 1)

	for _, td := range traces.AllTraces() {
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		require.NoError(t, err)
		assert.NotContains(t, string(b), secret)
	}
	all := metrics.AllMetrics()
	require.NotEmpty(t, all)
	for _, md := range all {
		b, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
		require.NoError(t, err)
		assert.NotContains(t, string(b), secret)
	}
}

// A hand-written client: three pipelined requests in one write, then one
// request split across several writes. The server spans are exact.
func TestHTTPPipelinedAndSplit(t *testing.T) {
	traces, _ := httpReceivers(t, createDefaultConfig())
	port := goServer(t, statusHandler)
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	defer c.Close()
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	_, err = c.Write([]byte(get("/p1") + get("/missing") + get("/p3")))
	require.NoError(t, err)
	for _, part := range []string{"GE", "T /split HTTP/1.1\r\nHo", "st: x\r", "\n\r\n"} {
		_, err = c.Write([]byte(part))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
	}
	// Read the four responses before closing.
	buf := make([]byte, 4096)
	got := ""
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	for strings.Count(got, "HTTP/1.1 ") < 4 {
		n, err := c.Read(buf)
		require.NoError(t, err)
		got += string(buf[:n])
	}

	require.Eventually(t, func() bool {
		server, _ := spansOn(traces.AllTraces(), port)
		return len(server) >= 4
	}, 10*time.Second, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	// The server's spans must be exact. This test process is the client:
	// its pipelined responses arrive together in reads longer than the
	// captured prefix, so its own client spans may miss some (README, Limits).
	server, _ := spansOn(traces.AllTraces(), port)
	paths := map[any]any{}
	for _, s := range server {
		paths[attr(s, "url.path")] = attr(s, "http.response.status_code")
	}
	assert.Equal(t, map[any]any{"/p1": int64(200), "/missing": int64(404), "/p3": int64(200), "/split": int64(200)}, paths)
}

// Chunked, 204, 304 and 100-continue responses from a Go server.
func TestHTTPResponseShapes(t *testing.T) {
	traces, _ := httpReceivers(t, createDefaultConfig())
	port := goServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for range 3 {
				_, _ = w.Write([]byte(strings.Repeat("x", 1000)))
				w.(http.Flusher).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.WriteHeader(http.StatusNotModified)
		case "/upload":
			_, _ = io.Copy(io.Discard, r.Body) // answers 100 Continue first
			w.WriteHeader(http.StatusCreated)
		}
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, ExpectContinueTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	do := func(method, path string, body io.Reader, expect bool) {
		req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), body)
		require.NoError(t, err)
		if expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/chunked", nil, false)
	do("GET", "/empty", nil, false)
	do("GET", "/cached", nil, false)
	do("HEAD", "/chunked", nil, false)
	do("PUT", "/upload", strings.NewReader(strings.Repeat("y", 5000)), true)

	server, client2 := waitSpans(t, traces, port, 5)
	got := map[string]any{}
	for _, s := range server {
		got[attr(s, "http.request.method").(string)+" "+attr(s, "url.path").(string)] = attr(s, "http.response.status_code")
	}
	assert.Equal(t, map[string]any{
		"GET /chunked": int64(200), "GET /empty": int64(204), "GET /cached": int64(304),
		"HEAD /chunked": int64(200), "PUT /upload": int64(201),
	}, got)
	for _, c := range client2 {
		assert.Equal(t, ptrace.StatusCodeUnset, c.Status().Code(), c.Name())
	}
}

// An excluded port gives no spans; another port still does.
func TestHTTPPortFilter(t *testing.T) {
	excluded := goServer(t, statusHandler)
	kept := goServer(t, statusHandler)
	cfg := createDefaultConfig()
	cfg.HTTP.Ports.Exclude = []int{excluded}
	traces, _ := httpReceivers(t, cfg)
	for _, port := range []int{excluded, kept} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/x", port))
		require.NoError(t, err)
		resp.Body.Close()
	}
	waitSpans(t, traces, kept, 1)
	server, client := spansOn(traces.AllTraces(), excluded)
	assert.Empty(t, server)
	assert.Empty(t, client)
}
