package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The substitutions Grafana makes in the dashboards' queries, with a range
// that holds several 1 s scrapes.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "20s", "$__interval", "5s", "$__range", "1m")

// healthDashboard is the receiver's own health: its panels show losses and
// disabled capabilities, which are 0 when all is well.
const healthDashboard = "otelcol-ebpf-receiver"

// panelQuery is one panel query with the template variables resolved.
type panelQuery struct {
	expr string
	// nonZero: the query must give a non-zero value, not only a series.
	// True on every dashboard but the health one: their panels show the
	// test's load, and a rate of 0 or a quantile of no samples (NaN) would
	// show nothing.
	nonZero bool
}

// dashboardQueries returns every panel query of the dashboards, by
// "dashboard uid / panel title / refId", with the template variables set to
// their "All" value.
func dashboardQueries(t *testing.T) map[string]panelQuery {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	queries := map[string]panelQuery{}
	for _, f := range files {
		var d struct {
			UID        string `json:"uid"`
			Templating struct {
				List []struct {
					Name     string `json:"name"`
					Type     string `json:"type"`
					AllValue string `json:"allValue"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				Title      string `json:"title"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					RefID string `json:"refId"`
					Expr  string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal([]byte(readFile(t, f)), &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var vars []string
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				vars = append(vars, "${"+v.Name+"}", v.AllValue, "$"+v.Name, v.AllValue)
			}
		}
		subst := strings.NewReplacer(vars...)
		for _, p := range d.Panels {
			if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s %q: want targets on the ${datasource} variable", f, p.Title)
			}
			for _, tg := range p.Targets {
				expr := grafanaMacros.Replace(subst.Replace(tg.Expr))
				if strings.Contains(expr, "$") {
					t.Errorf("%s %q: unresolved variable in %s", f, p.Title, expr)
				}
				queries[fmt.Sprintf("%s / %s / %s", d.UID, p.Title, tg.RefID)] = panelQuery{expr: expr, nonZero: d.UID != healthDashboard}
			}
		}
	}
	return queries
}

// TestDashboards runs the distribution with the prometheus exporter under
// TCP and HTTP traffic and node pressure (CPU, failed exits, deaths by
// signal, OOM kills, disk I/O), has a real Prometheus scrape it, and checks
// that every panel query of deploy/dashboards returns a series with a
// finite value, non-zero outside the receiver's health dashboard; that the
// pressure panels show the load's exit status, signals and loop device; and
// that the log records of its deaths by signal and OOM kills come out of
// the logs pipeline. The collector runs as the DaemonSet does: with only
// CAP_BPF and CAP_PERFMON, and with the DaemonSet's view of the host (a
// /sys of its own with only the DaemonSet's host mounts); the test checks
// that every capability then runs.
func TestDashboards(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the collector loads eBPF programs and the test makes a network namespace")
	}
	queries := dashboardQueries(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (apt-get install prometheus; make test-deploy does it)")
	}
	for _, tool := range []string{"setpriv", "unshare", "mount", "umount", "ip", "nft", "dd", "tail"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat(distBinary); err != nil {
		t.Fatalf("%v: run make build first", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The collector, with the capability set of the DaemonSet: uid 0,
	// bounding set BPF and PERFMON, no_new_privs (allowPrivilegeEscalation:
	// false); and in its view of the host's file systems.
	exporter := freeAddr(t)
	logsFile := filepath.Join(dir, "logs.json")
	cmd, inView := daemonSetView(t, dir, "setpriv",
		"--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all", "--no-new-privs",
		distBinary, "--config", "testdata/collector.yaml")
	collector := start(t, dir, "collector", cmd, "EXPORTER_ENDPOINT="+exporter, "LOGS_FILE="+logsFile,
		"CGROUP_ROOT="+inView(cgroup2Mount(t)))
	waitHTTP(t, "http://"+exporter+"/metrics", collector)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	httpTraffic(ctx, t, &wg)
	refusedTraffic(ctx, t, &wg)
	lossyTraffic(ctx, t, &wg)
	load := pressureTraffic(ctx, t, &wg, dir)

	promAddr := freeAddr(t)
	promConfig := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promConfig, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: otelcol-ebpf
    static_configs:
      - targets: [%q]
`, exporter), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := start(t, dir, "prometheus", exec.Command(promBin, "--config.file="+promConfig,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr))
	waitHTTP(t, "http://"+promAddr+"/-/ready", prom)

	// Every query must return data; poll until all do or time runs out.
	pending := queries
	deadline := time.Now().Add(2 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
		next := map[string]panelQuery{}
		for name, q := range pending {
			if ok, err := hasData(promAddr, q); err != nil {
				t.Fatalf("%s: %s: %v", name, q.expr, err)
			} else if !ok {
				next[name] = q
			}
		}
		pending = next
	}
	for name, q := range pending {
		if q.nonZero {
			t.Errorf("no series with a finite non-zero value for %s:\n  %s", name, q.expr)
		} else {
			t.Errorf("no series with a finite value for %s:\n  %s", name, q.expr)
		}
	}
	if t.Failed() {
		t.Logf("collector log:\n%s", tail(collector.log, 4000))
		return
	}
	t.Logf("%d panel queries returned data", len(queries))

	checkPressurePanels(t, promAddr, queries, load)
	checkProcessLogs(t, logsFile, load)

	// With only BPF and PERFMON, every capability the main receiver has runs:
	// each one that appears at 0 (ebpf/off's) also appears at 1.
	all := labelValues(t, promAddr, "ebpf_capability_enabled_ratio", "ebpf_capability")
	enabled := labelValues(t, promAddr, "ebpf_capability_enabled_ratio == 1", "ebpf_capability")
	if !slices.Equal(all, enabled) || !slices.Contains(enabled, "tcp") || !slices.Contains(enabled, "http") {
		t.Errorf("capabilities %v, of which enabled %v, under CAP_BPF and CAP_PERFMON", all, enabled)
	}
}

// process is a child started by start.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it exits
}

// start runs cmd with its output in dir/name.log and stops it at cleanup.
func start(t *testing.T, dir, name string, cmd *exec.Cmd, env ...string) *process {
	t.Helper()
	p := &process{cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitHTTP waits for url to answer 200 while p runs.
func waitHTTP(t *testing.T, url string, p *process) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.cmd.Path, p.cmd.ProcessState, tail(p.log, 4000))
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not answer in time:\n%s", url, tail(p.log, 4000))
}

// hasData runs a panel query and reports whether a series has a finite
// value, and a non-zero one if the query must.
func hasData(addr string, q panelQuery) (bool, error) {
	result, err := query(addr, q.expr)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(result, func(s map[string]any) bool {
		v, ok := sampleValue(s)
		return ok && (!q.nonZero || v != 0)
	}), nil
}

// sampleValue returns the value of an instant query's series, and whether it
// is finite.
func sampleValue(s map[string]any) (float64, bool) {
	pair, _ := s["value"].([]any)
	if len(pair) != 2 {
		return 0, false
	}
	text, _ := pair[1].(string)
	v, err := strconv.ParseFloat(text, 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// checkPressurePanels checks that the pressure dashboard shows the load
// itself: its exit status and signals, its loop device both ways, and its
// cgroup (a container's Resource in a cluster) in every pressure metric.
func checkPressurePanels(t *testing.T, addr string, queries map[string]panelQuery, load pressure) {
	t.Helper()
	panel := func(title string) string {
		q, ok := queries["otelcol-ebpf-pressure / "+title+" / A"]
		if !ok {
			t.Fatalf("pressure dashboard has no panel %q", title)
		}
		return q.expr
	}
	// nonZero returns the label sets of the series of expr with a non-zero
	// value.
	nonZero := func(expr string) []map[string]any {
		result, err := query(addr, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		var labels []map[string]any
		for _, s := range result {
			if v, ok := sampleValue(s); ok && v != 0 {
				labels = append(labels, s["metric"].(map[string]any))
			}
		}
		return labels
	}
	has := func(series []map[string]any, want map[string]string) bool {
		return slices.ContainsFunc(series, func(l map[string]any) bool {
			for k, v := range want {
				if l[k] != v {
					return false
				}
			}
			return true
		})
	}
	exits := nonZero(panel("Failed exits"))
	for _, want := range []map[string]string{
		{"process_exit_code": "3"}, {"process_exit_signal": "SIGSEGV"}, {"process_exit_signal": "SIGKILL"},
	} {
		if !has(exits, want) {
			t.Errorf("Failed exits shows no %v: %v", want, exits)
		}
	}
	for _, title := range []string{"Disk throughput", "Disk operations", "Disk latency p99"} {
		series := nonZero(panel(title))
		for _, dir := range []string{"read", "write"} {
			if want := map[string]string{"system_device": load.Device, "disk_io_direction": dir}; !has(series, want) {
				t.Errorf("%s shows no %v: %v", title, want, series)
			}
		}
	}
	// The panels sum by pod and container, which k8s_attributes adds in a
	// cluster; here the load's cgroup stands for its container.
	sel := fmt.Sprintf(`{cgroup_path=%q}`, load.CgroupPath)
	for _, expr := range []string{
		"rate(container_cpu_time_seconds_total" + sel + "[20s])",
		"rate(sched_switches_involuntary_total" + sel + "[20s])",
		"rate(sched_run_queue_latency_seconds_count" + sel + "[20s])",
		"rate(process_exits_total" + sel + "[20s])",
		"rate(process_oom_kills_total" + sel + "[1m])",
		"rate(container_disk_io_bytes_total" + sel + "[20s])",
		"rate(disk_operations_total" + sel + "[20s])",
		"rate(disk_io_latency_seconds_count" + sel + "[20s])",
	} {
		if len(nonZero(expr)) == 0 {
			t.Errorf("no non-zero series for the load's cgroup: %s", expr)
		}
	}
}

// checkProcessLogs checks that the logs pipeline delivered the load's deaths
// by SIGSEGV and its OOM kills as log records of its cgroup, with a severity
// and a body.
func checkProcessLogs(t *testing.T, path string, load pressure) {
	t.Helper()
	var segv, oom int
	deadline := time.Now().Add(30 * time.Second)
	for {
		segv, oom = 0, 0
		for _, r := range readLogs(t, path) {
			if r.cgroupPath != load.CgroupPath || r.severity == 0 || r.body == "" {
				continue
			}
			switch {
			case r.event == "process.signal_death" && r.attrs["process.exit.signal"] == "SIGSEGV" && r.attrs["process.executable.name"] == "sh":
				segv++
			case r.event == "process.oom_kill" && r.attrs["process.executable.name"] == "tail":
				oom++
			}
		}
		if segv > 0 && oom > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if segv == 0 || oom == 0 {
		t.Errorf("%s: %d process.signal_death records of sh by SIGSEGV and %d process.oom_kill records of tail in cgroup %s; want both",
			path, segv, oom, load.CgroupPath)
	} else {
		t.Logf("logs: %d deaths by SIGSEGV and %d OOM kills of the load", segv, oom)
	}
}

// daemonSetView returns a command that runs name with args in the
// DaemonSet's view of the host's file systems: a mount namespace whose /sys
// is a sysfs of its own, read-only, as a container's is (no tracefs, no
// cgroup mounts), plus the host paths the rendered DaemonSet mounts, at its
// mount paths (those outside /sys under dir/root). inView maps a path of
// the host to its path in that view, as CGROUP_ROOT does in the DaemonSet.
func daemonSetView(t *testing.T, dir, name string, args ...string) (cmd *exec.Cmd, inView func(string) string) {
	t.Helper()
	pod := render(t, "kubernetes").daemonSets[0].Spec.Template.Spec
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	// Bind the host paths aside before /sys goes, then into the new view.
	var stage, bind strings.Builder
	stage.WriteString("set -e\n")
	view := map[string]string{} // host path: path in the view
	for _, m := range pod.Containers[0].VolumeMounts {
		host, ok := hostPaths[m.Name]
		if !ok {
			continue
		}
		aside := filepath.Join(dir, "host", m.Name)
		target := m.MountPath
		if !strings.HasPrefix(target, "/sys/") {
			target = filepath.Join(dir, "root", target)
		}
		view[host] = target
		fmt.Fprintf(&stage, "mkdir -p %[2]q\nmount --rbind %[1]q %[2]q\n", host, aside)
		fmt.Fprintf(&bind, "mkdir -p %[2]q\nmount --rbind %[1]q %[2]q\numount -l %[1]q\n", aside, target)
		if m.ReadOnly {
			fmt.Fprintf(&bind, "mount -o remount,bind,ro %q\n", target)
		}
	}
	script := stage.String() + "umount -l /sys\nmount -t sysfs -o ro sysfs /sys\n" + bind.String() + `exec "$@"` + "\n"
	inView = func(path string) string {
		for host, target := range view {
			if rel, err := filepath.Rel(host, path); err == nil && !strings.HasPrefix(rel, "..") {
				return filepath.Join(target, rel)
			}
		}
		t.Fatalf("the DaemonSet does not mount %s", path)
		return ""
	}
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", name}, args...)...), inView
}

func query(addr, expr string) ([]map[string]any, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []map[string]any `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s", r.Error)
	}
	return r.Data.Result, nil
}

// labelValues returns the sorted distinct values of label in the series of
// expr.
func labelValues(t *testing.T, addr, expr, label string) []string {
	t.Helper()
	result, err := query(addr, expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var values []string
	for _, s := range result {
		if v, ok := s["metric"].(map[string]any)[label].(string); ok && !slices.Contains(values, v) {
			values = append(values, v)
		}
	}
	slices.Sort(values)
	return values
}

// httpTraffic serves HTTP/1.1 on loopback and calls it: successes and 500s,
// each on a new connection.
func httpTraffic(ctx context.Context, t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "failed", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer srv.Close()
		for tick := time.Tick(50 * time.Millisecond); ; {
			for _, path := range []string{"/", "/items", "/fail"} {
				if resp, err := client.Get("http://" + ln.Addr().String() + path); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
}

// refusedTraffic connects to a closed port: failed attempts and resets.
func refusedTraffic(ctx context.Context, t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	closed := freeAddr(t)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for tick := time.Tick(200 * time.Millisecond); ; {
			if c, err := net.DialTimeout("tcp", closed, time.Second); err == nil {
				c.Close()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
}

// lossyTraffic streams data over loopback in a network namespace of its own
// whose loopback drops every third data segment, so TCP retransmits. The
// drop rule sits on the ingress of lo: a segment dropped on output would be
// a local send error, which TCP does not retransmit as a loss.
func lossyTraffic(ctx context.Context, t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	ns := fmt.Sprintf("otelcol-ebpf-deploy-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")

	// Make the sockets from a thread inside the namespace; they stay in it.
	type conns struct {
		ln     net.Listener
		client net.Conn
		err    error
	}
	made := make(chan conns)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var c conns
		defer func() { made <- c }()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			c.err = err
			return
		}
		defer f.Close()
		if c.err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); c.err != nil {
			return
		}
		if c.ln, c.err = net.Listen("tcp", "127.0.0.1:0"); c.err != nil {
			return
		}
		c.client, c.err = net.Dial("tcp", c.ln.Addr().String())
	}()
	c := <-made
	if c.err != nil {
		t.Fatalf("sockets in netns %s: %v", ns, c.err)
	}
	port := c.ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`table netdev loss {
	chain ingress {
		type filter hook ingress device "lo" priority 0;
		tcp dport %d ip length > 100 numgen inc mod 3 == 0 drop
	}
}
`, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	server, err := c.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.ln.Close()
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer server.Close()
		io.Copy(io.Discard, server)
	}()
	go func() {
		defer wg.Done()
		defer c.client.Close()
		chunk := bytes.Repeat([]byte{'x'}, 16<<10)
		for ctx.Err() == nil {
			c.client.SetWriteDeadline(time.Now().Add(time.Second))
			c.client.Write(chunk)
		}
	}()
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tail returns the last n bytes of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
