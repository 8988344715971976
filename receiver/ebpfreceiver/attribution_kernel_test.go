//go:build linux

package ebpfreceiver

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
)

// The package's TestMain is generated; helper processes start here.
func init() { bpftest.RunHelperIfRequested(httpHelpers) }

// connected is, for one Resource, the established client connections to
// server by cgroup.
type connected struct {
	attrs  map[string]any
	opened int64
}

// clientConns collects, per cgroup.id, the established client connections
// to server in md.
func clientConns(md pmetric.Metrics, server netip.AddrPort) map[int64]connected {
	got := make(map[int64]connected)
	for res, dp := range otlptest.Points(md, "tcp.connection.opened") {
		id, ok := res.Get("cgroup.id")
		a := dp.Attributes()
		if !ok || otlptest.Str(a, "tcp.connection.outcome") != "established" || otlptest.Str(a, "tcp.connection.direction") != "client" ||
			otlptest.Str(a, "network.peer.address") != server.Addr().String() || otlptest.Int(a, "network.peer.port") != int64(server.Port()) {
			continue
		}
		c := got[id.Int()]
		c.attrs = res.AsRaw()
		c.opened += dp.IntValue()
		got[id.Int()] = c
	}
	return got
}

func startAttributionReceiver(t *testing.T) *consumertest.MetricsSink {
	t.Helper()
	sink, _ := startAttributionReceiverConfig(t)
	return sink
}

func startAttributionReceiverConfig(t *testing.T) (*consumertest.MetricsSink, *Config) {
	t.Helper()
	cfg := createDefaultConfig()
	cfg.CollectionInterval = 200 * time.Millisecond
	cfg.InitialDelay = 0
	sink := new(consumertest.MetricsSink)
	r := startReceiver(t, cfg, sink)
	t.Cleanup(func() { require.NoError(t, r.Shutdown(context.Background())) })
	return sink, cfg
}

// latest waits for a collection that started after now and returns it.
func latest(t *testing.T, sink *consumertest.MetricsSink) pmetric.Metrics {
	t.Helper()
	n := len(sink.AllMetrics())
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) > n+1 }, 10*time.Second, 20*time.Millisecond)
	all := sink.AllMetrics()
	return all[len(all)-1]
}

// connectOnce runs one short-lived process in s that connects to server,
// sends one byte and exits. bash's /dev/tcp keeps the process small.
func connectOnce(t *testing.T, s *bpftest.Sandbox, server netip.AddrPort) time.Duration {
	t.Helper()
	cmd := s.Command(context.Background(), "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && printf x >&3", server.Addr(), server.Port()))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return time.Since(start)
}

// 20 pods, half containerd and half CRI-O, each in its own network
// namespace. 200 processes, each in a container cgroup of its own that is
// removed as soon as the process exits, connect to a server on the node.
// Every connection must be attributed to its own container and pod.
func TestShortLivedPodsAttribution(t *testing.T) {
	bpftest.RequireBPF(t)
	bpftest.RequireTool(t, "bash")
	node := bpftest.NewNode(t)
	const pods, perPod = 20, 10
	server := netip.AddrPortFrom(node.IP, 8080)
	srv := node.StartTCPServer(t, bpftest.ServerOptions{Port: server.Port(), Conns: pods * perPod, Recv: 1})
	sink, cfg := startAttributionReceiverConfig(t)

	type want struct{ podUID, containerID string }
	wants := make(map[int64]want)
	var lifetimes []time.Duration
	for i := range pods {
		runtime := bpftest.RuntimeContainerd
		if i%2 == 1 {
			runtime = bpftest.RuntimeCRIO
		}
		pod := bpftest.NewPod(t, bpftest.PodOptions{Node: node, Runtime: runtime, QoS: bpftest.QoSBestEffort})
		for range perPod {
			c := pod.AddContainer(t)
			lifetimes = append(lifetimes, connectOnce(t, &c.Sandbox, server))
			c.Remove(t)
			wants[int64(c.CgroupID)] = want{podUID: pod.UID, containerID: c.ID}
		}
	}
	srv.Wait(t)
	slices.Sort(lifetimes)
	t.Logf("process lifetimes: median %v, max %v", lifetimes[len(lifetimes)/2], lifetimes[len(lifetimes)-1])

	// A removed container's flows are exported once more, then dropped:
	// look at every collection.
	latest(t, sink)
	got := map[int64]connected{}
	for _, md := range sink.AllMetrics() {
		for id, c := range clientConns(md, server) {
			if c.opened >= got[id].opened {
				got[id] = c
			}
		}
	}
	attributed := 0
	for id, w := range wants {
		c, ok := got[id]
		if !assert.True(t, ok, "no resource for cgroup %d (container %s)", id, w.containerID) {
			continue
		}
		if assert.Equal(t, w.containerID, c.attrs["container.id"]) &&
			assert.Equal(t, w.podUID, c.attrs["k8s.pod.uid"]) &&
			assert.Equal(t, "BestEffort", c.attrs["k8s.pod.qos_class"]) &&
			assert.Equal(t, int64(1), c.opened, "container %s", w.containerID) {
			attributed++
		}
	}
	assert.Equal(t, pods*perPod, attributed, "connections attributed to their own container and pod")

	// Once exported, the flows of the removed containers leave the kernel.
	coresMu.Lock()
	tracer := loaded[*tcpsource.Source](t, cores[cfg]).Tracer()
	coresMu.Unlock()
	var snap tcpconn.Snapshot
	require.NoError(t, tracer.Snapshot(&snap))
	for f := range snap.Flows {
		_, removed := wants[int64(f.CgroupId)]
		assert.False(t, removed, "flow of removed cgroup %d still in the kernel", f.CgroupId)
	}
}

// A host process outside any pod, and one in a systemd service's cgroup,
// each keep a Resource of their own, with their cgroup path and no
// container.
func TestHostProcessesKeepTheirResource(t *testing.T) {
	bpftest.RequireBPF(t)
	node := bpftest.NewNode(t)
	server := netip.AddrPortFrom(node.IP, 8081)
	srv := node.StartTCPServer(t, bpftest.ServerOptions{Port: server.Port(), Conns: 2, Recv: 1})
	sink := startAttributionReceiver(t)

	// A service cgroup, shaped like systemd's, in a directory of the test.
	root := bpftest.CgroupRoot(t)
	dir := filepath.Join(root, "ebpfreceiver-host-"+filepath.Base(t.TempDir()))
	service := filepath.Join(dir, "system.slice", "demo.service")
	require.NoError(t, os.MkdirAll(service, 0o755))
	t.Cleanup(func() {
		_ = os.Remove(service)
		_ = os.Remove(filepath.Dir(service))
		_ = os.Remove(dir)
	})
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(service, &st))
	fd, err := os.Open(service)
	require.NoError(t, err)
	defer fd.Close()

	// The node's own processes run in the root cgroup: a host process.
	hostSandbox := node.Sandbox
	connectOnce(t, &hostSandbox, server)
	cmd := hostSandbox.Command(context.Background(), "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && printf x >&3", server.Addr(), server.Port()))
	cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	srv.Wait(t)

	got := clientConns(latest(t, sink), server)
	rootID := int64(node.CgroupID)
	require.Contains(t, got, rootID)
	require.Contains(t, got, int64(st.Ino))
	assert.Equal(t, strings.TrimPrefix(service, root), got[int64(st.Ino)].attrs["cgroup.path"])
	for _, id := range []int64{rootID, int64(st.Ino)} {
		assert.Equal(t, int64(1), got[id].opened)
		assert.NotContains(t, got[id].attrs, "container.id")
		assert.NotContains(t, got[id].attrs, "k8s.pod.uid")
	}
	assert.NotEqual(t, got[rootID].attrs, got[int64(st.Ino)].attrs)
}
