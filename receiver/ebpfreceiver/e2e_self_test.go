//go:build e2e && linux

package ebpfreceiver

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// otlpSink is a loopback OTLP/HTTP receiver that counts the export
// requests per path and answers each with an empty 200.
type otlpSink struct {
	port  int64
	mu    sync.Mutex
	posts map[string]int
}

func startOTLPSink(t *testing.T) *otlpSink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &otlpSink{port: int64(ln.Addr().(*net.TCPAddr).Port), posts: make(map[string]int)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.posts[r.URL.Path]++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *otlpSink) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posts[path]
}

// TestE2ESelfExport runs the distribution with its spans and metrics going
// to a loopback OTLP/HTTP sink, as to a gateway. The collector's exports
// must not become spans: neither its client side (its own process) nor the
// sink's server side (an OTLP export request). So once the traffic stops,
// the trace exports stop. A second process's OTLP requests to the sink give
// no spans either and are counted in ebpf.http.excluded. With every
// capability on and no traffic, the collector stays under 10% of a core:
// the guard against a reader that spins (the healthy figure is about 1%,
// the spinning reader took a full core).
func TestE2ESelfExport(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl, which make deps installs: %v", err)
	}
	sink := startOTLPSink(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appPort := int64(ln.Addr().(*net.TCPAddr).Port)
	app := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = app.Serve(ln) }()
	defer app.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "metrics.json")
	export := filepath.Join(dir, "export.yaml")
	// Only the app's and the sink's ports are traced, so that other HTTP on
	// the machine cannot make exports; the sink's port is traced, so only
	// the self and OTLP exclusions keep its connections out of the spans.
	if err := os.WriteFile(export, fmt.Appendf(nil, `receivers:
  ebpf:
    http:
      ports:
        include: [%d, %d]
exporters:
  otlp_http/sink:
    endpoint: http://127.0.0.1:%d
    compression: none
    retry_on_failure:
      enabled: false
service:
  pipelines:
    metrics:
      exporters: [file, otlp_http/sink]
    traces:
      exporters: [file/traces, otlp_http/sink]
`, appPort, sink.port, sink.port), 0o644); err != nil {
		t.Fatal(err)
	}
	col := e2eStartCollector(t, bin, dir, out, export)
	col.waitHealthy(t, 60*time.Second)

	// Traffic that is traced: its spans reach the sink.
	const requests = 50
	client := &http.Client{Transport: &http.Transport{}}
	for i := range requests {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/app/%d", appPort, i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client.CloseIdleConnections()
	// Another process's OTLP export requests to the sink.
	const foreign = 5
	for range foreign {
		cmd := exec.Command(curl, "-sS", "-o", "/dev/null", "-X", "POST", "-H", "Content-Type: application/x-protobuf",
			"--data-binary", "", fmt.Sprintf("http://127.0.0.1:%d/v1/traces", sink.port))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl: %v: %s", err, b)
		}
	}

	traces := filepath.Join(dir, "traces.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if spans, _ := e2eServerSpans(t, traces, appPort); spans >= requests || time.Now().After(deadline) || col.exited() {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if spans, _ := e2eServerSpans(t, traces, appPort); spans != requests {
		t.Fatalf("server spans of the app %d, want %d\ncollector log:\n%s", spans, requests, col.logTail())
	}

	// Settle: the last spans' batch goes out. From then on, no trace export
	// may follow, for as long as the idle measurement runs.
	time.Sleep(3 * time.Second)
	settled := sink.count("/v1/traces")
	if settled < 1+foreign {
		t.Fatalf("sink got %d trace exports, want the collector's and the %d of curl", settled, foreign)
	}
	const idle = 10 * time.Second
	ticks0 := cpuTicks(t, col.pid)
	time.Sleep(idle)
	ticks := cpuTicks(t, col.pid) - ticks0
	if n := sink.count("/v1/traces"); n != settled {
		t.Errorf("trace exports went on after the traffic stopped: %d, then %d %s later", settled, n, idle)
	}
	if spans := e2eSpansOnPort(t, traces, sink.port); spans != 0 {
		t.Errorf("%d spans of the sink's connections: the exports were traced", spans)
	}
	if metrics := sink.count("/v1/metrics"); metrics == 0 {
		t.Errorf("no metric exports reached the sink")
	}
	// CPU over the idle interval, in clock ticks of 10 ms (USER_HZ 100).
	share := float64(ticks) / (idle.Seconds() * 100)
	t.Logf("idle: %d clock ticks in %s, %.1f%% of a core", ticks, idle, 100*share)
	if share >= 0.10 {
		t.Errorf("idle collector used %.1f%% of a core, want under 10%%", 100*share)
	}

	// The sink's server side of every export is counted as excluded: the
	// collector's own (whose client side the kernel never streams) and curl's.
	exports := otlptest.ReadMetricsFile(t, out)
	if len(exports) == 0 {
		t.Fatal("no metrics written")
	}
	if n := e2eExcluded(exports[len(exports)-1]); n < int64(settled) {
		t.Errorf("ebpf.http.excluded{otlp_export} %d, want at least the %d trace exports the sink got", n, settled)
	}
}

// cpuTicks returns a process's user and system time in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command, which ends at the last ')': state is the
	// 3rd field of stat(5), utime the 14th and stime the 15th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %q", pid, b)
	}
	return utime + stime
}

// e2eSpansOnPort counts the spans, of either kind, whose server.port is
// port.
func e2eSpansOnPort(t *testing.T, path string, port int64) int {
	t.Helper()
	n := 0
	for _, sp := range otlptest.Spans(otlptest.ReadTracesFile(t, path)...) {
		if otlptest.Int(sp.Attributes(), "server.port") == port {
			n++
		}
	}
	return n
}

// e2eExcluded returns ebpf.http.excluded with reason otlp_export.
func e2eExcluded(md pmetric.Metrics) int64 {
	for _, dp := range otlptest.Points(md, "ebpf.http.excluded") {
		if otlptest.Str(dp.Attributes(), "ebpf.excluded.reason") == "otlp_export" {
			return dp.IntValue()
		}
	}
	return -1
}
