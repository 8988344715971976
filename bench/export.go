package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	// The collector's gRPC compressors (gzip, snappy, zstd), as its OTLP
	// receiver accepts them.
	_ "go.opentelemetry.io/collector/config/configgrpc"
)

// export is what the receiver exported in one configuration, read by the
// sink or from the file exporter's files.
type export struct {
	HTTPLost, TCPLost uint64
	Delivery          []uint64 // bucket counts of the last export
	Bounds            []float64
	Spans             map[int]int // server spans by server.port
	FailedSpans       map[int]int // the failed ones
	// SpanLag is, by server.port, the p50 and p99 time from a server
	// span's end to the sink receiving it, in µs: what the consumer waits.
	// Only the sink measures it.
	SpanLag map[int][2]float64
	// FailedLag is SpanLag of the failed server spans alone.
	FailedLag        map[int][2]float64
	lags, failedLags map[int][]time.Duration
}

// addMetrics keeps the last value of each counter: they are cumulative.
func (e *export) addMetrics(md pmetric.Metrics) {
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				switch {
				case m.Name() == "ebpf.http.lost" && m.Type() == pmetric.MetricTypeSum:
					e.HTTPLost = sumInts(m.Sum().DataPoints())
				case m.Name() == "ebpf.tcp.lost" && m.Type() == pmetric.MetricTypeSum:
					e.TCPLost = sumInts(m.Sum().DataPoints())
				case m.Name() == "ebpf.http.delivery.duration" && m.Type() == pmetric.MetricTypeHistogram && m.Histogram().DataPoints().Len() > 0:
					dp := m.Histogram().DataPoints().At(0)
					e.Bounds = dp.ExplicitBounds().AsRaw()
					e.Delivery = dp.BucketCounts().AsRaw()
				}
			}
		}
	}
}

// addTraces counts the server spans by server.port and, when received is
// set, keeps each one's lag.
func (e *export) addTraces(td ptrace.Traces, received time.Time) {
	if e.Spans == nil {
		e.Spans, e.FailedSpans = map[int]int{}, map[int]int{}
		e.lags, e.failedLags = map[int][]time.Duration{}, map[int][]time.Duration{}
	}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				if s.Kind() != ptrace.SpanKindServer {
					continue
				}
				p, ok := s.Attributes().Get("server.port")
				if !ok || p.Type() != pcommon.ValueTypeInt {
					continue
				}
				port := int(p.Int())
				e.Spans[port]++
				failed := s.Status().Code() == ptrace.StatusCodeError
				if failed {
					e.FailedSpans[port]++
				}
				if received.IsZero() {
					continue
				}
				lag := received.Sub(s.EndTimestamp().AsTime())
				e.lags[port] = append(e.lags[port], lag)
				if failed {
					e.failedLags[port] = append(e.failedLags[port], lag)
				}
			}
		}
	}
}

// summarize turns the lags into SpanLag and FailedLag.
func (e *export) summarize() {
	quantiles := func(lags map[int][]time.Duration) map[int][2]float64 {
		q := map[int][2]float64{}
		for port, l := range lags {
			r := loadResult{lat: l}
			q[port] = [2]float64{us(r.quantile(0.5)), us(r.quantile(0.99))}
		}
		return q
	}
	e.SpanLag, e.FailedLag = quantiles(e.lags), quantiles(e.failedLags)
}

func sumInts(dps pmetric.NumberDataPointSlice) uint64 {
	var n uint64
	for _, dp := range dps.All() {
		n += uint64(dp.IntValue())
	}
	return n
}

// readExport reads the file exporter's OTLP JSON lines.
func readExport(metricsPath, tracesPath string) (export, error) {
	var e export
	var mu pmetric.JSONUnmarshaler
	err := eachLine(metricsPath, func(line []byte) error {
		md, err := mu.UnmarshalMetrics(line)
		if err == nil {
			e.addMetrics(md)
		}
		return err
	})
	if err != nil {
		return e, err
	}
	var tu ptrace.JSONUnmarshaler
	err = eachLine(tracesPath, func(line []byte) error {
		td, err := tu.UnmarshalTraces(line)
		if err == nil {
			e.addTraces(td, time.Time{})
		}
		return err
	})
	return e, err
}

func eachLine(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 256<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return sc.Err()
}

// runSink is "bench sink ADDR": an OTLP/gRPC backend that tallies what it
// receives into an export, says ready, and prints the export as JSON at
// SIGTERM. It runs as its own process, so that its CPU is measured apart
// from the agent's.
func runSink(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := &sink{}
	// A batch of 8192 spans can pass gRPC's default 4 MiB.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(256 << 20))
	ptraceotlp.RegisterGRPCServer(srv, &tracesSink{s: s})
	pmetricotlp.RegisterGRPCServer(srv, &metricsSink{s: s})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; srv.GracefulStop() }()
	fmt.Println("ready")
	if err := srv.Serve(ln); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.e.summarize()
	return json.NewEncoder(os.Stdout).Encode(s.e)
}

type sink struct {
	mu sync.Mutex
	e  export
}

type tracesSink struct {
	ptraceotlp.UnimplementedGRPCServer
	s *sink
}

func (t *tracesSink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	now := time.Now()
	t.s.mu.Lock()
	t.s.e.addTraces(req.Traces(), now)
	t.s.mu.Unlock()
	return ptraceotlp.NewExportResponse(), nil
}

type metricsSink struct {
	pmetricotlp.UnimplementedGRPCServer
	s *sink
}

func (m *metricsSink) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	m.s.mu.Lock()
	m.s.e.addMetrics(req.Metrics())
	m.s.mu.Unlock()
	return pmetricotlp.NewExportResponse(), nil
}

// sinkProcess is a running "bench sink".
type sinkProcess struct {
	cmd  *exec.Cmd
	out  *bufio.Reader
	addr string
}

func startSink() (*sinkProcess, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd, out, err := startReady("sink", addr)
	if err != nil {
		return nil, err
	}
	return &sinkProcess{cmd: cmd, out: out, addr: addr}, nil
}

// stop ends the sink, after the agent has flushed to it, and returns what
// it received.
func (p *sinkProcess) stop() (export, error) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	var e export
	err := json.NewDecoder(p.out).Decode(&e)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if err != nil {
		return e, fmt.Errorf("sink: %w", err)
	}
	return e, nil
}
