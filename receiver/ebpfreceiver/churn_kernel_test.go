//go:build linux

package ebpfreceiver

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/schedsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
)

// 10,000 short-lived processes and 100,000 connections in fake pods whose
// cgroups are then removed: the kernel maps return to their baseline and
// the receiver's own state stays bounded.
func TestChurnReturnsToBaseline(t *testing.T) {
	bpftest.RequireBPF(t)
	bpftest.RequireTool(t, "bash")
	sink, cfg := startAttributionReceiverConfig(t)
	coresMu.Lock()
	c := cores[cfg]
	coresMu.Unlock()
	tcp, sched := loaded[*tcpsource.Source](t, c).Tracer(), loaded[*schedsource.Source](t, c).Tracer()
	var snap tcpconn.Snapshot
	var schedSnap schedstat.Snapshot
	require.NoError(t, tcp.Snapshot(&snap))
	baseConns := snap.Conns

	node := bpftest.NewNode(t)
	const processes, conns = 10_000, 100_000
	server := netip.AddrPortFrom(node.IP, 8080)
	srv := node.StartTCPServer(t, bpftest.ServerOptions{Port: server.Port(), Conns: conns})
	start := time.Now()

	// 10,000 processes, each making one connection, in one pod.
	a := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	cmd := a.Command(context.Background(), "bash", "-c", fmt.Sprintf(
		"for i in $(seq %d); do (exec 3<>/dev/tcp/%s/%d) || exit 1; done", processes, server.Addr(), server.Port()))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	// The other 90,000 connections from a second pod, one process.
	b := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	// An abortive close leaves no TIME_WAIT socket holding the client port.
	b.RunTCPClient(t, bpftest.ClientOptions{Addr: server, Conns: conns - processes, Reset: true})
	srv.Wait(t)
	t.Logf("churn took %v", time.Since(start).Round(time.Second))

	// Remove the pods' cgroups, as the kubelet does.
	for _, p := range []*bpftest.Pod{a, b} {
		p.RemoveCgroup(t)
	}
	// A collection exports the removed pods' flows, and drops them. Each
	// look waits for a fresh collection, which takes seconds under load at
	// this size.
	deadline := time.Now().Add(time.Minute)
	for {
		latest(t, sink)
		require.NoError(t, tcp.Snapshot(&snap))
		require.NoError(t, sched.Snapshot(&schedSnap))
		var left []string
		for f, st := range snap.Flows {
			if f.CgroupId == a.CgroupID || f.CgroupId == b.CgroupID {
				left = append(left, fmt.Sprintf("%+v removed=%v %+v", f, c.cgroups.IsRemoved(f.CgroupId), st))
			}
		}
		for _, id := range []uint64{a.CgroupID, b.CgroupID} {
			if _, ok := schedSnap.Cgroups[id]; ok {
				left = append(left, fmt.Sprintf("sched entry of cgroup %d", id))
			}
		}
		if len(left) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d entries of removed pods left in the kernel, first: %s", len(left), left[0])
	}
	assert.Zero(t, snap.Lost, "nothing lost at this size")
	assert.Zero(t, schedSnap.Lost, "no sched cgroup lost at this size")
	// Connections of other tests may be open too; ours have all closed.
	assert.LessOrEqual(t, snap.Conns, baseConns+100, "tracked connections back to the baseline %d", baseConns)
	assert.Less(t, c.cgroups.Len(), 10_000, "cgroup cache bounded")

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("receiver heap in use after churn: %d MiB", ms.HeapInuse>>20)
	assert.Less(t, ms.HeapInuse, uint64(200<<20), "heap stays bounded")
}
