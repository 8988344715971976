//go:build e2e && linux

package ebpfreceiver

import (
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
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// k8sClientEnv makes the test binary a client: it connects to the address in
// the variable k8sConns times and exits. The test runs it inside a fake
// pod's cgroup.
const k8sClientEnv = "EBPFRECEIVER_E2E_CONNECT"

const k8sConns = 3

func init() {
	addr := os.Getenv(k8sClientEnv)
	if addr == "" {
		return
	}
	for range k8sConns {
		if err := k8sPingPong(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

func k8sPingPong(addr string) error {
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
	bin := k8sCollectorBinary(t)
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
		{
			Pod: k8stest.Pod{
				Namespace: ns, Name: "cache", Node: node, Container: "redis",
				Labels: map[string]string{"app": "cache"},
			},
		},
	}
	cgroupTop := makeK8sCgroup(t, bpftest.CgroupRoot(t), fmt.Sprintf("k8se2e-%d", os.Getpid()))
	for i, p := range pods {
		p.uid = cluster.CreatePod(t, p.Pod)
		p.containerID = k8sContainerID(t)
		cluster.SetPodStatus(t, ns, p.Name, k8stest.PodStatus{
			IP:          "10.244.0." + strconv.Itoa(10+i),
			ContainerID: "containerd://" + p.containerID,
		})
		p.cgroup = makeK8sPodCgroup(t, cgroupTop, p.uid, p.containerID)
	}

	addr := startK8sServer(t)
	out := filepath.Join(t.TempDir(), "metrics.jsonl")
	collector := startK8sCollector(t, bin, []string{
		"K8S_NODE_NAME=" + node,
		"K8S_AUTH_TYPE=kubeConfig",
		"KUBECONFIG=" + cluster.Kubeconfig,
		"OUTPUT_FILE=" + out,
	})

	// Connections made before the receiver is attached are not counted:
	// wait for its first export.
	k8sWaitFor(t, collector, 60*time.Second, "first export", func() error {
		if len(otlptest.ReadMetricsFile(t, out)) == 0 {
			return errors.New("no export yet")
		}
		return nil
	})
	for _, p := range pods {
		runK8sClient(t, p.cgroup, addr)
	}

	port := int64(addr.Port)
	for _, p := range pods {
		want := map[string]string{
			"k8s.pod.uid":         p.uid,
			"k8s.pod.name":        p.Name,
			"k8s.namespace.name":  ns,
			"k8s.node.name":       node,
			"k8s.container.name":  p.Container,
			"k8s.pod.label.app":   p.Labels["app"],
			"k8s.pod.qos_class":   "BestEffort",
			"k8s.deployment.name": p.deployment,
			"team":                p.Annotations["resource.opentelemetry.io/team"],
			"k8s.pod.label.track": "",
		}
		k8sWaitFor(t, collector, 60*time.Second, p.Name, func() error {
			return checkK8sPod(otlptest.ReadMetricsFile(t, out), p.containerID, want, port)
		})
	}

	// A label set on a running pod reaches the metrics through the watch.
	web := pods[0]
	cluster.SetPodLabels(t, ns, web.Name, map[string]string{"track": "canary"})
	k8sWaitFor(t, collector, 60*time.Second, "relabelled "+web.Name, func() error {
		return checkK8sPod(otlptest.ReadMetricsFile(t, out), web.containerID, map[string]string{
			"k8s.pod.name":        web.Name,
			"k8s.pod.label.track": "canary",
		}, -1)
	})
}

// checkK8sPod returns nil when the latest export has a resource for
// containerID whose attributes are want (an empty value means absent) and,
// if port is not -1, a tcp.connection.opened client series to port with
// at least k8sConns established connections.
func checkK8sPod(exports []pmetric.Metrics, containerID string, want map[string]string, port int64) error {
	md, found := otlptest.Latest(exports, "container.id", containerID)
	if !found {
		return fmt.Errorf("no resource with container.id %s", containerID)
	}
	attrs := md.ResourceMetrics().At(0).Resource().Attributes()
	var errs []error
	for k, w := range want {
		got := ""
		v, ok := attrs.Get(k)
		if ok {
			got = v.AsString()
		}
		switch {
		case w == "" && ok:
			errs = append(errs, fmt.Errorf("%s = %q, want none", k, got))
		case w != "" && got != w:
			errs = append(errs, fmt.Errorf("%s = %q, want %q", k, got, w))
		}
	}
	if port != -1 {
		if n := k8sOpenedTo(md, port); n < k8sConns {
			errs = append(errs, fmt.Errorf("tcp.connection.opened client established to port %d = %d, want >= %d", port, n, k8sConns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resource %v: %w", attrs.AsRaw(), err)
	}
	return nil
}

// k8sOpenedTo sums tcp.connection.opened in md for established client
// connections to port.
func k8sOpenedTo(md pmetric.Metrics, port int64) int64 {
	return otlptest.SumInt(md, "tcp.connection.opened", func(a pcommon.Map) bool {
		return otlptest.Str(a, "tcp.connection.direction") == "client" &&
			otlptest.Str(a, "tcp.connection.outcome") == "established" &&
			otlptest.Int(a, "network.peer.port") == port
	})
}

// k8sCollectorBinary returns the distribution that make build writes.
func k8sCollectorBinary(t *testing.T) string {
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

// k8sCollector is the running collector.
type k8sCollector struct {
	log  string
	done chan struct{}
}

func startK8sCollector(t *testing.T, bin string, env []string) *k8sCollector {
	t.Helper()
	config, err := filepath.Abs("testdata/k8s/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := &k8sCollector{log: filepath.Join(t.TempDir(), "collector.log"), done: make(chan struct{})}
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

func (c *k8sCollector) logTail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// k8sWaitFor polls check until it returns nil, and fails t when the collector
// exits or the timeout passes.
func k8sWaitFor(t *testing.T, c *k8sCollector, timeout time.Duration, what string, check func() error) {
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

// startK8sServer answers each connection's 4 bytes with 4 bytes. Cleanup
// stops it and waits for its goroutines.
func startK8sServer(t *testing.T) *net.TCPAddr {
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

// runK8sClient runs the test binary as a client of addr inside cgroup.
func runK8sClient(t *testing.T, cgroup *os.File, addr *net.TCPAddr) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), k8sClientEnv+"="+addr.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroup.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client in %s: %v: %s", cgroup.Name(), err, out)
	}
}

// makeK8sPodCgroup makes the cgroup the kubelet's systemd driver makes for a
// BestEffort pod's containerd container, below top, and opens it.
func makeK8sPodCgroup(t *testing.T, top, uid, containerID string) *os.File {
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
			makeK8sCgroup(t, filepath.Dir(dir), name)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// makeK8sCgroup makes the cgroup parent/name. Cleanup removes it.
func makeK8sCgroup(t *testing.T, parent, name string) string {
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

// k8sContainerID returns a 64-hex container id.
func k8sContainerID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
