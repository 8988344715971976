// Command bench is make bench-system: it runs loopback HTTP workloads
// under six configurations (nothing attached, two floors of empty hooks,
// the receiver with metrics only and with everything, both exporting over
// OTLP/gRPC to a sink process, and everything to the file exporter),
// alternated round by round, and prints one table, with JSON and a PNG chart.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/floor"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: bench run|serve ADDR|sink ADDR|floor LEVEL|churn-child URL")
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "churn-child":
		err = churnChild(os.Args[2])
	case "sink":
		err = runSink(os.Args[2])
	case "floor":
		err = runFloor(os.Args[2])
	case "run":
		err = runBench(os.Args[2:])
	case "report": // report results.json results.png: table and chart again
		err = report(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// runFloor loads a floor level, with the empty scheduler programs that
// match the receiver's sched hooks, says ready, drains until SIGTERM, and
// prints what it read as JSON.
func runFloor(level string) error {
	f, err := floor.Load(floor.Options{Level: map[string]int{"1": 1, "2": 2}[level]})
	if err != nil {
		return err
	}
	defer f.Close()
	sched, err := floor.Load(floor.Options{Level: 1, SchedOnly: true})
	if err != nil {
		return err
	}
	defer sched.Close()
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; close(stop) }()
	fmt.Println("ready")
	n, err := f.Drain(stop)
	lost, _ := f.Lost()
	json.NewEncoder(os.Stdout).Encode(map[string]uint64{"records": n, "lost": lost})
	return err
}

// configs, in the order they alternate within a round. sampled is full
// with the span policy keeping the failed and slow spans and 1% of the
// other traces; full-file is full with the file exporter in place of the
// sink.
var configs = []string{"nothing", "floor1", "floor2", "metrics", "full", "sampled", "full-file"}

// agent is the process a configuration runs next to the workload.
type agent struct {
	cmd *exec.Cmd
	out *bufio.Reader
	dir string
	// sink receives the collector's export, except on full-file.
	sink *sinkProcess
	// pprof is the port of the collector's pprof extension, on "profile".
	pprof int
}

// stopped is what an agent leaves: what a floor drained, or what the
// receiver exported.
type stopped struct {
	floorRecords, floorLost uint64
	export                  export
}

func (a *agent) pid() int {
	if a == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

func (a *agent) sinkPid() int {
	if a == nil || a.sink == nil {
		return 0
	}
	return a.sink.cmd.Process.Pid
}

func startAgent(config, dist, dir string) (*agent, error) {
	switch config {
	case "nothing":
		return nil, nil
	case "floor1", "floor2":
		cmd, out, err := startReady("floor", config[5:])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config, err)
		}
		return &agent{cmd: cmd, out: out}, nil
	}
	health := freePort()
	// "idle" is the full receiver at the default collection interval, as an
	// idle node runs it; the measured configurations collect every second.
	// "profile" is the full receiver with the pprof extension.
	interval := "1s"
	if config == "idle" {
		interval = "10s"
	}
	pprof := 0
	if config == "profile" {
		pprof = freePort()
	}
	a := &agent{dir: dir, pprof: pprof}
	if config != "full-file" {
		var err error
		if a.sink, err = startSink(); err != nil {
			return nil, err
		}
	}
	exporter, exporters := a.exporters()
	yaml := receiverConfig(httpConfig(config), exporter, exporters, health, interval, pprof)
	path := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		a.sink.stop()
		return nil, err
	}
	logf, _ := os.Create(filepath.Join(dir, "otelcol.log"))
	a.cmd = exec.Command(dist, "--config", path)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		a.sink.stop()
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", health)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return a, nil
			}
		}
	}
	a.stop()
	return nil, fmt.Errorf("%s did not become healthy; see %s", config, filepath.Join(dir, "otelcol.log"))
}

// stop ends the agent with SIGTERM, then its sink, and returns what it left.
func (a *agent) stop() (stopped, error) {
	var st stopped
	if a == nil {
		return st, nil
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	if a.out != nil {
		var out map[string]uint64
		b, _ := io.ReadAll(a.out)
		json.Unmarshal(b, &out)
		st.floorRecords, st.floorLost = out["records"], out["lost"]
	}
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-done
	}
	var err error
	switch {
	case a.sink != nil:
		st.export, err = a.sink.stop()
	case a.dir != "":
		st.export, err = readExport(filepath.Join(a.dir, "metrics.json"), filepath.Join(a.dir, "traces.json"))
	}
	return st, err
}

// exporters is the exporter type and the exporters section of the
// collector's config: otlp_grpc to the sink, or the file exporter writing
// into the agent's directory. Metrics and traces have one exporter each.
func (a *agent) exporters() (string, string) {
	if a.sink != nil {
		return "otlp_grpc", fmt.Sprintf(`exporters:
  otlp_grpc:
    endpoint: %s
    tls: {insecure: true}
    compression: snappy
  otlp_grpc/traces:
    endpoint: %s
    tls: {insecure: true}
    compression: snappy
`, a.sink.addr, a.sink.addr)
	}
	return "file", fmt.Sprintf(`exporters:
  file:
    path: %s
  file/traces:
    path: %s
`, filepath.Join(a.dir, "metrics.json"), filepath.Join(a.dir, "traces.json"))
}

// httpConfig is the receiver's http section of a configuration: off
// without spans, and with the span policy of sampled.
func httpConfig(config string) string {
	switch config {
	case "metrics":
		return "{enabled: false}"
	case "sampled":
		return "{enabled: true, spans: {keep_percent: 1}}"
	}
	return "{enabled: true}"
}

// receiverConfig is the distribution's config: the ebpf receiver, through
// batch for metrics, to the exporters section, which defines exporter for
// metrics and exporter/traces for spans. Spans skip batch: the receiver
// hands them over in batches already, and batch would hold the ones that
// express sends for its timeout. With http off, tcp is still on, with a
// metrics pipeline only. A pprof port other than 0 adds the pprof extension
// there.
func receiverConfig(http, exporter, exporters string, health int, interval string, pprof int) string {
	traces := ""
	if http != "{enabled: false}" {
		traces = fmt.Sprintf(`    traces:
      receivers: [ebpf]
      exporters: [%s/traces]
`, exporter)
	}
	extensions, pprofExt := "[health_check]", ""
	if pprof != 0 {
		extensions = "[health_check, pprof]"
		pprofExt = fmt.Sprintf("  pprof:\n    endpoint: 127.0.0.1:%d\n", pprof)
	}
	return fmt.Sprintf(`extensions:
  health_check:
    endpoint: 127.0.0.1:%d
%sreceivers:
  ebpf:
    collection_interval: %s
    tcp: {enabled: true}
    http: %s
processors:
  batch:
%sservice:
  telemetry:
    metrics:
      level: none
  extensions: %s
  pipelines:
    metrics:
      receivers: [ebpf]
      processors: [batch]
      exporters: [%s]
%s`, health, pprofExt, interval, http, exporters, extensions, exporter, traces)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs the HTTP server as its own process.
func startServer() (*exec.Cmd, string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd, _, err := startReady("serve", addr)
	return cmd, addr, err
}

// startReady runs this binary's subcommand args[0] as its own process and
// waits for its "ready" line; the rest of its output follows in out.
func startReady(args ...string) (*exec.Cmd, *bufio.Reader, error) {
	self, _ := os.Executable()
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	out := bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, fmt.Errorf("%s did not start: %q %v", args[0], line, err)
	}
	return cmd, out, nil
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	rounds := fs.Int("rounds", 5, "rounds; each runs every configuration once")
	dur := fs.Duration("dur", 3*time.Second, "time per workload")
	dist := fs.String("dist", "_build/otelcol-ebpf", "the built distribution")
	outDir := fs.String("out", "out/bench", "where results.json and results.png go")
	idle := fs.Int("idle", 10000, "idle keep-alive connections held for the RSS measurement (0: skip)")
	idleCPU := fs.Duration("idle-cpu", 10*time.Second, "how long the full receiver's CPU is measured with no traffic (0: skip)")
	profile := fs.Bool("profile", true, "record CPU profiles of the full receiver under the keepalive and rate5k workloads, apart from the measured rounds, as full-<workload>.cpu.pprof")
	check := fs.Bool("check", false, "fail unless every configuration served requests, floor2 drained records and the full receiver exported spans")
	fs.Parse(args)
	only := fs.Args() // optional subset of configurations
	if os.Geteuid() != 0 {
		return errors.New("bench-system needs root (load eBPF programs, kernel.bpf_stats_enabled)")
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	restore, err := enableBPFStats()
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer restore()
	tmp, err := os.MkdirTemp("", "bench-system-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// One server per workload, so spans count per workload by server.port.
	addrs := map[string]string{}
	for _, w := range workloads {
		cmd, addr, err := startServer()
		if err != nil {
			return err
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		addrs[w.name] = addr
	}
	cfgs := configs
	if len(only) > 0 {
		cfgs = only
	}
	res := results{Machine: machine(), Rounds: *rounds, Seconds: dur.Seconds(), Started: time.Now().UTC()}
	for r := 1; r <= *rounds; r++ {
		for _, c := range cfgs {
			dir := filepath.Join(tmp, fmt.Sprintf("%d-%s", r, c))
			os.MkdirAll(dir, 0o755)
			ss, err := measure(r, c, *dist, dir, *dur, addrs)
			if err != nil {
				return fmt.Errorf("round %d %s: %w", r, c, err)
			}
			for _, s := range ss {
				fmt.Fprintf(os.Stderr, "round %d %-8s %-9s %8.0f req/s %7.1f µs/req cpu %5.1f%% agent\n",
					r, c, s.Workload, s.RPS, s.CPUPerReqUs, s.AgentCPUPct)
			}
			res.Samples = append(res.Samples, ss...)
		}
	}
	if *idle > 0 && (len(only) == 0 || strings.Contains(strings.Join(only, " "), "full")) {
		if res.Idle, err = measureIdle(*dist, filepath.Join(tmp, "idle"), *idle); err != nil {
			return fmt.Errorf("idle connections: %w", err)
		}
	}
	if *idleCPU > 0 && (len(only) == 0 || strings.Contains(strings.Join(only, " "), "full")) {
		if res.IdleCPU, err = measureIdleCPU(*dist, filepath.Join(tmp, "idle-cpu"), *idleCPU); err != nil {
			return fmt.Errorf("idle cpu: %w", err)
		}
	}
	if *profile && (len(only) == 0 || strings.Contains(strings.Join(only, " "), "full")) {
		for _, w := range workloads[:2] { // keepalive, rate5k
			path := filepath.Join(*outDir, "full-"+w.name+".cpu.pprof")
			if err := profileFull(*dist, filepath.Join(tmp, "profile"), path, *dur, w, addrs[w.name]); err != nil {
				return fmt.Errorf("profile %s: %w", w.name, err)
			}
			fmt.Fprintf(os.Stderr, "wrote %s\n", path)
		}
	}
	res.summarize()
	res.Finished = time.Now().UTC()
	fmt.Print(res.table())
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(*outDir, "results.json"), b, 0o644); err != nil {
		return err
	}
	if err := res.chart(filepath.Join(*outDir, "results.png")); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(*outDir, "results.json"), filepath.Join(*outDir, "results.png"))
	if *check {
		return res.check()
	}
	return nil
}

func report(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	r.Rows, r.Ratios = nil, nil
	r.summarize()
	fmt.Print(r.table())
	return r.chart(to)
}

// check is the smoke test's verdict: everything ran and saw traffic.
func (r *results) check() error {
	var errs []error
	for _, s := range r.Samples {
		switch {
		case s.Requests == 0:
			errs = append(errs, fmt.Errorf("round %d %s %s: no requests served", s.Round, s.Config, s.Workload))
		case s.Config == "floor2" && s.FloorRecords == 0:
			errs = append(errs, fmt.Errorf("round %d floor2: no ring buffer records drained", s.Round))
		case spans(s.Config) && s.Spans == 0:
			errs = append(errs, fmt.Errorf("round %d %s %s: no server spans exported", s.Round, s.Config, s.Workload))
		case tracing(s.Config) && s.Workload == "rate5k" && s.FailedSpans < (s.Requests+s.Errors)/100:
			errs = append(errs, fmt.Errorf("round %d %s rate5k: %d failed server spans exported of %d failed requests",
				s.Round, s.Config, s.FailedSpans, (s.Requests+s.Errors)/100))
		case s.Config != "nothing" && s.BPFNsPerEvent == 0:
			errs = append(errs, fmt.Errorf("round %d %s %s: no BPF run time measured", s.Round, s.Config, s.Workload))
		}
	}
	return errors.Join(errs...)
}

// measure runs every workload once under one configuration.
func measure(round int, config, dist, dir string, dur time.Duration, addrs map[string]string) ([]sample, error) {
	a, err := startAgent(config, dist, dir)
	if err != nil {
		return nil, err
	}
	own := ownProgIDs(a.pid())
	var ss []sample
	for _, w := range workloads {
		call, done := w.do("http://" + addrs[w.name] + "/")
		b0, a0, k0, bpf0 := busyTicks(), procTicks(a.pid()), procTicks(a.sinkPid()), bpfStats(own)
		lr := run(w, dur, call)
		b1, a1, k1, bpf1 := busyTicks(), procTicks(a.pid()), procTicks(a.sinkPid()), bpfStats(own)
		done()
		s := sample{Round: round, Config: config, Workload: w.name, Requests: lr.requests, Errors: lr.errors,
			RPS:   float64(lr.requests) / lr.elapsed.Seconds(),
			P50Us: us(lr.quantile(0.5)), P99Us: us(lr.quantile(0.99)),
		}
		if lr.requests > 0 {
			// The sink stands for a backend elsewhere: its CPU is not the node's.
			s.CPUPerReqUs = float64(b1-b0-(k1-k0)) * 1e6 / clkTck / float64(lr.requests)
			s.BPFNsPerReq = float64(bpf1.ns-bpf0.ns) / float64(lr.requests)
		}
		if a != nil {
			s.AgentCPUPct = float64(a1-a0) * 100 / clkTck / lr.elapsed.Seconds()
			s.SinkCPUPct = float64(k1-k0) * 100 / clkTck / lr.elapsed.Seconds()
			if n := bpf1.cnt - bpf0.cnt; n > 0 {
				s.BPFNsPerEvent = float64(bpf1.ns-bpf0.ns) / float64(n)
			}
		}
		ss = append(ss, s)
	}
	if config == "metrics" || tracing(config) {
		time.Sleep(2500 * time.Millisecond) // a collection and the span link window
	}
	var peak uint64
	if a != nil {
		peak = peakRSS(a.pid())
	}
	st, err := a.stop()
	if err != nil {
		return nil, err
	}
	e := st.export
	for i := range ss {
		s := &ss[i]
		s.PeakRSSMB = float64(peak) / (1 << 20)
		s.HTTPLost, s.TCPLost = e.HTTPLost, e.TCPLost
		if config == "floor1" || config == "floor2" {
			s.FloorRecords, s.HTTPLost = st.floorRecords, st.floorLost
		}
		if len(e.Delivery) > 0 {
			s.DeliveryP50Us = histQuantile(e.Delivery, e.Bounds, 0.5) * 1e6
			s.DeliveryP99Us = histQuantile(e.Delivery, e.Bounds, 0.99) * 1e6
		}
		if tracing(config) {
			p := port(addrs[s.Workload])
			s.Spans, s.FailedSpans = e.Spans[p], e.FailedSpans[p]
			lag, failed := e.SpanLag[p], e.FailedLag[p]
			s.SpanLagP50Us, s.SpanLagP99Us = lag[0], lag[1]
			s.FailedLagP50Us, s.FailedLagP99Us = failed[0], failed[1]
		}
		if spans(config) {
			s.CapturePct = 100 * float64(s.Spans) / float64(max(s.Requests+s.Errors, 1))
		}
	}
	return ss, nil
}

// spans reports whether a configuration exports every span.
func spans(config string) bool { return config == "full" || config == "full-file" }

// tracing reports whether a configuration exports spans, every one or by
// its policy.
func tracing(config string) bool { return spans(config) || config == "sampled" }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// measureIdle holds n idle keep-alive connections open under the full
// receiver and reports its RSS.
func measureIdle(dist, dir string, n int) (*idleResult, error) {
	os.MkdirAll(dir, 0o755)
	cmd, addr, err := startServer()
	if err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	a, err := startAgent("full", dist, dir)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	release, err := holdIdle(addr, n)
	if err != nil {
		return nil, err
	}
	defer release()
	time.Sleep(3 * time.Second) // a few collections with every connection live
	return &idleResult{Connections: n, RSSMB: float64(rss(a.pid())) / (1 << 20), PeakRSSMB: float64(peakRSS(a.pid())) / (1 << 20)}, nil
}

// profileFull records a CPU profile of the full receiver, through its pprof
// extension, while workload w runs against addr for d (whole seconds, at
// least one), and writes it to path. It runs apart from the measured
// rounds, so that profiling costs them nothing. The heap profile as the
// workload ends goes next to it, as .heap.pprof.
func profileFull(dist, dir, path string, d time.Duration, w workload, addr string) error {
	os.MkdirAll(dir, 0o755)
	a, err := startAgent("profile", dist, dir)
	if err != nil {
		return err
	}
	defer a.stop()
	secs := max(1, int(d.Seconds()))
	call, done := w.do("http://" + addr + "/")
	defer done()
	type got struct {
		b   []byte
		err error
	}
	ch := make(chan got, 1)
	go func() {
		b, err := getPprof(a.pprof, fmt.Sprintf("profile?seconds=%d", secs))
		ch <- got{b, err}
	}()
	run(w, time.Duration(secs)*time.Second, call)
	r := <-ch
	if r.err != nil {
		return r.err
	}
	if err := os.WriteFile(path, r.b, 0o644); err != nil {
		return err
	}
	// The heap as the workload ends, for peak RSS.
	heap, err := getPprof(a.pprof, "heap")
	if err != nil {
		return err
	}
	return os.WriteFile(strings.TrimSuffix(path, ".cpu.pprof")+".heap.pprof", heap, 0o644)
}

// getPprof fetches a profile from the pprof extension on port.
func getPprof(port int, profile string) ([]byte, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", port, profile))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("pprof %s: %s: %s", profile, resp.Status, b)
	}
	return b, err
}

// measureIdleCPU runs the full receiver, every capability on, at the
// default collection interval, with no traffic of the bench's, and reports
// its CPU over d as % of a core.
func measureIdleCPU(dist, dir string, d time.Duration) (*idleCPUResult, error) {
	os.MkdirAll(dir, 0o755)
	a, err := startAgent("idle", dist, dir)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	time.Sleep(2 * time.Second) // past start-up
	before := procTicks(a.pid())
	time.Sleep(d)
	ticks := procTicks(a.pid()) - before
	return &idleCPUResult{Seconds: d.Seconds(), AgentCPUPct: 100 * float64(ticks) / (d.Seconds() * clkTck)}, nil
}

// machine describes where the numbers come from.
func machine() string {
	var u syscall.Utsname
	syscall.Uname(&u)
	rel := func(b [65]int8) string {
		var s []byte
		for _, c := range b {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		return string(s)
	}
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	cpus := 0
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "cpu") && !strings.HasPrefix(l, "cpu ") {
				cpus++
			}
		}
	}
	var si syscall.Sysinfo_t
	syscall.Sysinfo(&si)
	return fmt.Sprintf("Linux %s, %d CPUs (%s), %.1f GiB RAM", rel(u.Release), cpus, model, float64(si.Totalram)*float64(si.Unit)/(1<<30))
}
