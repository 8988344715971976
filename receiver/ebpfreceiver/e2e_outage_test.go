//go:build e2e && linux

package ebpfreceiver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the exporter compresses with gzip

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// e2eSink is an OTLP/gRPC metrics endpoint that counts what it receives.
type e2eSink struct {
	pmetricotlp.UnimplementedGRPCServer
	requests atomic.Int64
}

func (s *e2eSink) Export(context.Context, pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	s.requests.Add(1)
	return pmetricotlp.NewExportResponse(), nil
}

// TestE2EExporterOutage points the otlp_grpc exporter at an endpoint that is
// down for 60 s, then comes up: the receiver keeps collecting, memory stays
// bounded, the sending queue stays within its configured size and counts
// what it could not take, and data flows once the endpoint is back.
func TestE2EExporterOutage(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	const queueSize = 5
	outage := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("E2E_OUTAGE")); err == nil {
		outage = d
	}
	dir := t.TempDir()
	endpoint := e2eFreeAddr(t)
	telemetry := e2eFreeAddr(t)
	host, port, _ := net.SplitHostPort(telemetry)
	extra := filepath.Join(dir, "outage.yaml")
	if err := os.WriteFile(extra, fmt.Appendf(nil, `exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
    timeout: 1s
    sending_queue:
      enabled: true
      queue_size: %d
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 2s
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: %s
                port: %s
  pipelines:
    metrics:
      exporters: [file, otlp_grpc]
`, endpoint, queueSize, host, port), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "metrics.json")
	col := e2eStartCollector(t, bin, dir, out, extra)
	col.waitHealthy(t, 60*time.Second)

	// 60 s with the endpoint down.
	var peakRSS int64
	start := time.Now()
	for time.Since(start) < outage {
		if col.exited() {
			t.Fatalf("collector exited during the outage:\n%s", col.logTail())
		}
		peakRSS = max(peakRSS, e2eRSS(t, col.pid))
		time.Sleep(2 * time.Second)
	}
	exportsDuringOutage := len(otlptest.ReadMetricsFile(t, out))
	tel := e2eScrape(t, telemetry)
	queued := tel["otelcol_exporter_queue_size"]
	capacity := tel["otelcol_exporter_queue_capacity"]
	failed := tel["otelcol_exporter_enqueue_failed_metric_points"]
	t.Logf("outage: peak RSS %d MiB, %d file exports, queue %v/%v, enqueue failed %v points",
		peakRSS>>20, exportsDuringOutage, queued, capacity, failed)
	if want := int(outage.Seconds() / 2); exportsDuringOutage < want {
		t.Errorf("the receiver collected %d times in %v at 1 s, want at least %d", exportsDuringOutage, outage, want)
	}
	if capacity != queueSize || queued > capacity {
		t.Errorf("queue size %v, capacity %v: want at most the configured %d", queued, capacity, queueSize)
	}
	if failed <= 0 {
		t.Errorf("a full queue must count what it refuses; enqueue failed = %v", failed)
	}
	if peakRSS > 300<<20 {
		t.Errorf("peak RSS %d MiB during the outage, want under 300 MiB", peakRSS>>20)
	}

	// The endpoint comes back.
	ln, err := net.Listen("tcp", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sink := &e2eSink{}
	pmetricotlp.RegisterGRPCServer(srv, sink)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	back := time.Now()
	deadline := back.Add(150 * time.Second)
	for sink.requests.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no data after the endpoint came back:\n%s", col.logTail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("data flowed %v after the endpoint came back", time.Since(back).Round(time.Second))
}

// e2eRSS reads a process's resident set size in bytes.
func e2eRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// e2eScrape reads the collector's own metrics in the Prometheus text format,
// summing series of one name.
func e2eScrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape collector telemetry: %v", err)
	}
	defer resp.Body.Close()
	got := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// labels may hold spaces: the value is the last field
			name = name[:i]
			rest = line[strings.LastIndexByte(line, ' ')+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			got[name] += v
		}
	}
	return got
}
