//go:build e2e && linux

package ebpfreceiver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/internal/k8stest"
)

// connectEnv makes the test binary a client: it connects to the address in
// the variable k8sConns times and exits. The test runs it inside a fake
// pod's cgroup.
const connectEnv = "EBPFRECEIVER_E2E_CONNECT"

const k8sConns = 3

func init() {
	addr := os.Getenv(connectEnv)
	if addr == "" {
		return
	}
	for range k8sConns {
		if err := pingPong(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

func pingPong(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 4))
	return err
}

// k8sPod is a fake pod: an object in the API server and a cgroup shaped
// like the kubelet's.
type k8sPod struct {
	k8stest.Pod
	deployment  string // expected k8s.deployment.name, if any
	uid         string
	containerID string
	cgroup      *os.File
}

// TestK8sAttributes runs the built distribution with the node-agent
// pipeline against a real kube-apiserver and checks that the metrics of
// processes in fake pods' cgroups carry their pods' metadata.
func TestK8sAttributes(t *testing.T) {
	bpftest.RequireBPF(t)
	bin := collectorBinary(t)
	cluster := k8stest.Start(t)

	const ns, node = "shop", "node-e2e"
	cluster.CreateNamespace(t, ns)
	pods := []*k8sPod{
		{
			Pod: k8stest.Pod{
				Namespace: ns, Name: "web-6c45f8d6f6-x7k2p", Node: node, Container: "web",
				Labels:      map[string]string{"app": "web", "pod-template-hash": "6c45f8d6f6"},
				Annotations: map[string]string{"resource.opentelemetry.io/team": "storefront"},
				ReplicaSet:  "web-6c45f8d6f6",
			},
			deployment: "web",
		},
		{Pod: k8stest.Pod{Namespace: ns, Name: "cache", Node: node, Container: "redis",
			Labels: map[string]string{"app": "cache"}}},
	}
	cgroupTop := makeCgroup(t, bpftest.CgroupRoot(t), fmt.Sprintf("k8se2e-%d", os.Getpid()))
	for i, p := range pods {
		p.uid = cluster.CreatePod(t, p.Pod)
		p.containerID = randomHexID(t)
		cluster.SetPodStatus(t, ns, p.Name, k8stest.PodStatus{
			IP:          "10.244.0." + strconv.Itoa(10+i),
			ContainerID: "containerd://" + p.containerID,
		})
		p.cgroup = makePodCgroup(t, cgroupTop, p.uid, p.containerID)
	}

	addr := startPingServer(t)
	out := filepath.Join(t.TempDir(), "metrics.jsonl")
	collector := startCollector(t, bin, []string{
		"K8S_NODE_NAME=" + node,
		"K8S_AUTH_TYPE=kubeConfig",
		"KUBECONFIG=" + cluster.Kubeconfig,
		"OUTPUT_FILE=" + out,
	})

	// Connections made before the receiver is attached are not counted:
	// wait for its first export.
	waitFor(t, collector, 60*time.Second, "first export", func() error {
		if len(readExports(t, out)) == 0 {
			return errors.New("no export yet")
		}
		return nil
	})
	for _, p := range pods {
		runInCgroup(t, p.cgroup, addr)
	}

	port := int64(addr.Port)
	for _, p := range pods {
		want := map[string]string{
			"k8s.pod.uid":          p.uid,
			"k8s.pod.name":         p.Name,
			"k8s.namespace.name":   ns,
			"k8s.node.name":        node,
			"k8s.container.name":   p.Container,
			"k8s.pod.labels.app":   p.Labels["app"],
			"k8s.pod.qos_class":    "BestEffort",
			"k8s.deployment.name":  p.deployment,
			"team":                 p.Annotations["resource.opentelemetry.io/team"],
			"k8s.pod.labels.track": "",
		}
		waitFor(t, collector, 60*time.Second, p.Name, func() error {
			return checkPod(readExports(t, out), p.containerID, want, port)
		})
	}

	// A label set on a running pod reaches the metrics through the watch.
	web := pods[0]
	cluster.SetPodLabels(t, ns, web.Name, map[string]string{"track": "canary"})
	waitFor(t, collector, 60*time.Second, "relabelled "+web.Name, func() error {
		return checkPod(readExports(t, out), web.containerID, map[string]string{
			"k8s.pod.name":         web.Name,
			"k8s.pod.labels.track": "canary",
		}, -1)
	})
}

// checkPod returns nil when the latest export has a resource for
// containerID whose attributes are want (an empty value means absent) and,
// if port is not -1, a tcp.connection.opened client series to port with
// at least k8sConns established connections.
func checkPod(exports []pmetric.Metrics, containerID string, want map[string]string, port int64) error {
	var rm pmetric.ResourceMetrics
	found := false
	for i := len(exports) - 1; i >= 0 && !found; i-- {
		rms := exports[i].ResourceMetrics()
		for j := 0; j < rms.Len(); j++ {
			if v, ok := rms.At(j).Resource().Attributes().Get("container.id"); ok && v.Str() == containerID {
				rm, found = rms.At(j), true
				break
			}
		}
	}
	if !found {
		return fmt.Errorf("no resource with container.id %s", containerID)
	}
	attrs := rm.Resource().Attributes()
	var errs []error
	for k, w := range want {
		v, ok := attrs.Get(k)
		switch {
		case w == "" && ok:
			errs = append(errs, fmt.Errorf("%s = %q, want none", k, v.AsString()))
		case w != "" && (!ok || v.AsString() != w):
			errs = append(errs, fmt.Errorf("%s = %q, want %q", k, v.AsString(), w))
		}
	}
	if port != -1 {
		if n := openedTo(rm, port); n < k8sConns {
			errs = append(errs, fmt.Errorf("tcp.connection.opened client established to port %d = %d, want >= %d", port, n, k8sConns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resource %v: %w", attrs.AsRaw(), err)
	}
	return nil
}

// openedTo sums tcp.connection.opened on rm for established client
// connections to port.
func openedTo(rm pmetric.ResourceMetrics, port int64) int64 {
	var n int64
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			if ms.At(j).Name() != "tcp.connection.opened" {
				continue
			}
			dps := ms.At(j).Sum().DataPoints()
			for k := 0; k < dps.Len(); k++ {
				a := dps.At(k).Attributes()
				if str(a, "tcp.connection.direction") == "client" &&
					str(a, "tcp.connection.outcome") == "established" &&
					intAttr(a, "network.peer.port") == port {
					n += dps.At(k).IntValue()
				}
			}
		}
	}
	return n
}

func str(m pcommon.Map, k string) string {
	v, _ := m.Get(k)
	return v.Str()
}

func intAttr(m pcommon.Map, k string) int64 {
	v, _ := m.Get(k)
	return v.Int()
}

// readExports parses the file exporter's output: one OTLP JSON request per
// line. A last line still being written is left for the next read.
func readExports(t *testing.T, path string) []pmetric.Metrics {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []pmetric.Metrics
	var u pmetric.JSONUnmarshaler
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(nil, 64<<20)
	for s.Scan() {
		md, err := u.UnmarshalMetrics(s.Bytes())
		if err != nil {
			continue
		}
		out = append(out, md)
	}
	return out
}

// collectorBinary returns the distribution that make build writes.
func collectorBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector not built: %v; run make build first", err)
	}
	return bin
}

// collectorProc is the running collector.
type collectorProc struct {
	log  string
	done chan struct{}
}

func startCollector(t *testing.T, bin string, env []string) *collectorProc {
	t.Helper()
	config, err := filepath.Abs("testdata/k8s/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := &collectorProc{log: filepath.Join(t.TempDir(), "collector.log"), done: make(chan struct{})}
	f, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, "--config", config)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start collector: %v", err)
	}
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
		if t.Failed() {
			t.Logf("collector log:\n%s", c.logTail())
		}
	})
	return c
}

func (c *collectorProc) logTail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// waitFor polls check until it returns nil, and fails t when the collector
// exits or the timeout passes.
func waitFor(t *testing.T, c *collectorProc, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-c.done:
			t.Fatalf("collector exited while waiting for %s:\n%s", what, c.logTail())
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// startPingServer answers each connection's 4 bytes with 4 bytes. Cleanup
// stops it and waits for its goroutines.
func startPingServer(t *testing.T) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 4)); err == nil {
					c.Write([]byte("pong"))
				}
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr)
}

// runInCgroup runs the test binary as a client of addr inside cgroup.
func runInCgroup(t *testing.T, cgroup *os.File, addr *net.TCPAddr) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), connectEnv+"="+addr.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroup.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client in %s: %v: %s", cgroup.Name(), err, out)
	}
}

// makePodCgroup makes the cgroup the kubelet's systemd driver makes for a
// BestEffort pod's containerd container, below top, and opens it.
func makePodCgroup(t *testing.T, top, uid, containerID string) *os.File {
	t.Helper()
	dir := top
	for _, name := range []string{
		"kubepods.slice",
		"kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice",
		"cri-containerd-" + containerID + ".scope",
	} {
		dir = filepath.Join(dir, name)
		if _, err := os.Stat(dir); err != nil {
			makeCgroup(t, filepath.Dir(dir), name)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// makeCgroup makes the cgroup parent/name. Cleanup removes it.
func makeCgroup(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make cgroup: %v", err)
	}
	t.Cleanup(func() {
		// A cgroup is busy for a moment after its last process is reaped.
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
	return dir
}

// randomHexID returns a 64-hex container id.
func randomHexID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
