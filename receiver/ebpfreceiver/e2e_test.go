//go:build e2e && linux

package ebpfreceiver

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// e2eClientEnv makes the test binary the client of TestE2E: it connects as
// e2eClient describes and exits. The test runs it inside a fake pod's cgroup.
const e2eClientEnv = "EBPFRECEIVER_E2E_CLIENT"

const (
	e2eConns   = 3    // established connections the client opens
	e2ePayload = 1234 // bytes the client sends on each
)

func init() {
	spec := os.Getenv(e2eClientEnv)
	if spec == "" {
		return
	}
	if err := e2eClient(spec); err != nil {
		fmt.Fprintln(os.Stderr, "e2e client:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// e2eClient reads "server,closed": it opens e2eConns connections to server,
// sends e2ePayload bytes on each and waits for the server to close it, then
// connects once to the closed address and expects a refusal.
func e2eClient(spec string) error {
	server, closed, ok := strings.Cut(spec, ",")
	if !ok {
		return fmt.Errorf("bad %s %q", e2eClientEnv, spec)
	}
	payload := bytes.Repeat([]byte{'x'}, e2ePayload)
	for range e2eConns {
		c, err := net.DialTimeout("tcp", server, 5*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(payload); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			return err
		}
		c.Close()
	}
	c, err := net.DialTimeout("tcp", closed, 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("connect to closed port %s succeeded", closed)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("connect to closed port %s: want connection refused, got %w", closed, err)
	}
	return nil
}

// TestE2E runs the distribution that make build writes with the shipped
// testdata/otelcol.yaml (collection interval, file path and ports
// overridden), makes known loopback traffic from a process in a
// kubepods-shaped cgroup and checks what the file exporter writes.
func TestE2E(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("TestE2E needs root: the collector loads eBPF programs and the test makes cgroups")
	}

	podUID := e2eUUID(t)
	containerID := e2eHex(t, 32)
	cgroup := e2eMakePodCgroup(t, podUID, containerID)

	dir := t.TempDir()
	out := filepath.Join(dir, "metrics.json")
	col := e2eStartCollector(t, bin, dir, out)
	col.waitHealthy(t, 60*time.Second)

	server, received := e2eServer(t)
	closed := e2eClosedAddr(t)
	e2eRunClient(t, cgroup, server.String()+","+closed.String())
	if got, want := received(), int64(e2eConns*e2ePayload); got != want {
		t.Fatalf("server received %d bytes, want %d", got, want)
	}

	var actual pmetric.Metrics
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		actual, err = e2eCheck(otlptest.ReadMetricsFile(t, out), containerID, podUID, int64(server.Port), int64(closed.Port))
		if err == nil {
			break
		}
		if col.exited() {
			t.Fatalf("collector exited: %v\n%s", err, col.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v\ncollector log:\n%s", err, col.logTail())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The set of metrics and attributes, ignoring values and timestamps.
	// Disk metrics are left out: whether the client's exec reads its binary
	// from disk depends on the page cache (after TestE2EPressure it often
	// does); TestE2EPressure checks them exactly.
	actual.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().RemoveIf(func(m pmetric.Metric) bool {
		return strings.HasPrefix(m.Name(), "disk.") || m.Name() == "container.disk.io"
	})
	expectedPath := filepath.Join("..", "..", "testdata", "e2e", "expected_metrics.yaml")
	if os.Getenv("WRITE_GOLDEN") != "" {
		golden.WriteMetrics(t, expectedPath, actual)
	}
	expected, err := golden.ReadMetrics(expectedPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := pmetrictest.CompareMetrics(expected, actual,
		pmetrictest.IgnoreResourceAttributeValue("host.name"),
		pmetrictest.IgnoreResourceAttributeValue("cgroup.id"),
		pmetrictest.IgnoreResourceAttributeValue("cgroup.path"),
		pmetrictest.IgnoreResourceAttributeValue("container.id"),
		pmetrictest.IgnoreResourceAttributeValue("k8s.pod.uid"),
		pmetrictest.IgnoreMetricAttributeValue("network.peer.port"),
		pmetrictest.IgnoreMetricValues(),
		pmetrictest.IgnoreTimestamp(),
		pmetrictest.IgnoreStartTimestamp(),
		pmetrictest.IgnoreScopeVersion(),
		pmetrictest.IgnoreMetricsOrder(),
		pmetrictest.IgnoreMetricDataPointsOrder(),
	); err != nil {
		t.Errorf("output differs from testdata/e2e/expected_metrics.yaml: %v", err)
	}
}

// e2eCheck finds the latest resource of the container and returns it once
// its values are those of the client's traffic.
func e2eCheck(exports []pmetric.Metrics, containerID, podUID string, port, closedPort int64) (pmetric.Metrics, error) {
	md, found := otlptest.Latest(exports, "container.id", containerID)
	if !found {
		return md, fmt.Errorf("no resource with container.id %s in %d exports", containerID, len(exports))
	}
	if uid := otlptest.Str(md.ResourceMetrics().At(0).Resource().Attributes(), "k8s.pod.uid"); uid != podUID {
		return md, fmt.Errorf("k8s.pod.uid is %q, want %q", uid, podUID)
	}
	client := func(peerPort int64, k, v string) func(pcommon.Map) bool {
		return func(a pcommon.Map) bool {
			return otlptest.Str(a, "tcp.connection.direction") == "client" && otlptest.Str(a, "network.peer.address") == "127.0.0.1" &&
				otlptest.Int(a, "network.peer.port") == peerPort && otlptest.Str(a, k) == v
		}
	}
	established := otlptest.SumInt(md, "tcp.connection.opened", client(port, "tcp.connection.outcome", "established"))
	refused := otlptest.SumInt(md, "tcp.connection.opened", client(closedPort, "tcp.connection.outcome", "refused"))
	sent := otlptest.SumInt(md, "tcp.connection.io", client(port, "network.io.direction", "transmit"))
	if established != e2eConns || refused != 1 || sent != e2eConns*e2ePayload {
		return md, fmt.Errorf("container %s: opened established=%d refused=%d, io transmit=%d; want %d, 1, %d",
			containerID, established, refused, sent, e2eConns, e2eConns*e2ePayload)
	}
	return md, nil
}

// e2eCollector is the running collector.
type e2eCollector struct {
	log    string
	health string
	pid    int
	done   chan struct{}
}

// e2eStartCollector starts bin with the shipped config plus overrides that
// write to out, then the extra config files. Cleanup stops it.
func e2eStartCollector(t *testing.T, bin, dir, out string, extra ...string) *e2eCollector {
	t.Helper()
	shipped, err := filepath.Abs("../../testdata/otelcol.yaml")
	if err != nil {
		t.Fatal(err)
	}
	health := e2eFreeAddr(t)
	override := filepath.Join(dir, "override.yaml")
	if err := os.WriteFile(override, fmt.Appendf(nil, `receivers:
  ebpf:
    collection_interval: 1s
exporters:
  file:
    path: %s
  file/traces:
    path: %s
  file/logs:
    path: %s
extensions:
  health_check:
    endpoint: %s
service:
  telemetry:
    metrics:
      level: none
`, out, filepath.Join(dir, "traces.json"), filepath.Join(dir, "logs.json"), health), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &e2eCollector{log: filepath.Join(dir, "collector.log"), health: health, done: make(chan struct{})}
	f, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args := []string{"--config", shipped, "--config", override}
	for _, e := range extra {
		args = append(args, "--config", e)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "K8S_NODE_NAME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start collector: %v", err)
	}
	c.pid = cmd.Process.Pid
	go func() {
		cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			t.Errorf("collector did not stop on SIGTERM:\n%s", c.logTail())
			cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *e2eCollector) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitHealthy waits until health_check answers 200, which it does once every
// component, the receiver with its programs attached, has started.
func (c *e2eCollector) waitHealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://" + c.health + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		if c.exited() {
			t.Fatalf("collector exited before it was healthy:\n%s", c.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not healthy after %s (%v):\n%s", timeout, err, c.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *e2eCollector) logTail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// e2eServer accepts on loopback, reads each connection to its end and
// closes it. It returns its address and the bytes read so far. Cleanup stops
// it.
func e2eServer(t *testing.T) (*net.TCPAddr, func() int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				m, _ := io.Copy(io.Discard, c)
				n.Add(m)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr), n.Load
}

// e2eClosedAddr returns a loopback address nothing listens on.
func e2eClosedAddr(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr)
	l.Close()
	return a
}

// e2eFreeAddr returns a free loopback host:port for a listener.
func e2eFreeAddr(t *testing.T) string {
	t.Helper()
	return e2eClosedAddr(t).String()
}

// e2eRunClient runs the test binary as the client inside cgroup.
func e2eRunClient(t *testing.T, cgroup *os.File, spec string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), e2eClientEnv+"="+spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroup.Fd()), Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client in %s: %v: %s", cgroup.Name(), err, out)
	}
}

// e2eMakePodCgroup makes, below a cgroup of its own under the cgroup v2
// mount, the cgroups the kubelet's systemd driver makes for a BestEffort
// pod's containerd container, and opens the container's. Cleanup removes
// them.
func e2eMakePodCgroup(t *testing.T, podUID, containerID string) *os.File {
	t.Helper()
	dir := e2eCgroupRoot(t)
	for _, name := range []string{
		fmt.Sprintf("otelcol-e2e-%d", os.Getpid()),
		"kubepods.slice",
		"kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice",
		"cri-containerd-" + containerID + ".scope",
	} {
		dir = filepath.Join(dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("make cgroup: %v", err)
		}
		dir := dir
		t.Cleanup(func() {
			// A cgroup stays busy for a moment after its last process is reaped.
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := unix.Rmdir(dir)
				if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
					if err != nil {
						t.Errorf("remove cgroup %s: %v", dir, err)
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// e2eCgroupRoot returns the first cgroup v2 mount.
func e2eCgroupRoot(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(postFields) > 0 && postFields[0] == "cgroup2" {
			return fields[4]
		}
	}
	t.Fatal("no cgroup v2 mount in /proc/self/mountinfo")
	return ""
}

func e2eHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// e2eUUID returns a random pod uid such as 1f0e...-....-....-....-............
func e2eUUID(t *testing.T) string {
	h := e2eHex(t, 16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// TestE2EHTTP runs the distribution while a known HTTP load runs on
// loopback, and checks that the file exporters wrote one server span per
// request and a server duration histogram that counts them all.
func TestE2EHTTP(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "metrics.json")
	col := e2eStartCollector(t, bin, dir, out)
	col.waitHealthy(t, 60*time.Second)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int64(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/0") {
			w.WriteHeader(http.StatusNotFound)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	const requests = 200
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for i := range requests {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/items/%d", port, i%5))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client.CloseIdleConnections()

	var spans, notFound int
	var histogram uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans, notFound = e2eServerSpans(t, filepath.Join(dir, "traces.json"), port)
		histogram = 0
		if exports := otlptest.ReadMetricsFile(t, out); len(exports) > 0 {
			histogram = e2eRouteCount(exports[len(exports)-1], "/items/{id}")
		}
		if spans >= requests && histogram >= requests || time.Now().After(deadline) || col.exited() {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if spans != requests || notFound != requests/5 || histogram != requests {
		t.Fatalf("server spans %d (404: %d), histogram count %d; want %d (%d), %d\ncollector log:\n%s",
			spans, notFound, histogram, requests, requests/5, requests, col.logTail())
	}
}

// e2eRouteCount sums the counts of http.server.request.duration for route.
func e2eRouteCount(md pmetric.Metrics, route string) uint64 {
	var n uint64
	for _, dp := range otlptest.Histograms(md, "http.server.request.duration") {
		if otlptest.Str(dp.Attributes(), "http.route") == route {
			n += dp.Count()
		}
	}
	return n
}

// e2eServerSpans counts the server spans on port in the traces file, and
// those that answered 404.
func e2eServerSpans(t *testing.T, path string, port int64) (spans, notFound int) {
	t.Helper()
	for _, sp := range otlptest.Spans(otlptest.ReadTracesFile(t, path)...) {
		if sp.Kind() != ptrace.SpanKindServer || otlptest.Int(sp.Attributes(), "server.port") != port {
			continue
		}
		spans++
		if otlptest.Int(sp.Attributes(), "http.response.status_code") == http.StatusNotFound {
			notFound++
		}
	}
	return spans, notFound
}
