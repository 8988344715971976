//go:build e2e && linux

package ebpfreceiver

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

// e2eRSSBound is the collector's documented peak RSS under churn with the
// default configuration (README, "Memory").
const e2eRSSBound = 192 << 20

// TestE2EChurnRSS runs the distribution with the shipped config while
// 10,000 short-lived processes in 100 short-lived containers, some failing,
// and 100,000 connections come and go, and checks the collector's peak RSS.
func TestE2EChurnRSS(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	bpftest.RequireRoot(t)
	bpftest.RequireTool(t, "bash")
	dir := t.TempDir()
	out := filepath.Join(dir, "metrics.json")
	col := e2eStartCollector(t, bin, dir, out)
	col.waitHealthy(t, 60*time.Second)
	idle := e2eMemory(t, col.pid)

	const containers, perContainer, conns = 100, 100, 100_000
	node := bpftest.NewNode(t)
	server := netip.AddrPortFrom(node.IP, 8080)
	srv := node.StartTCPServer(t, bpftest.ServerOptions{Port: server.Port(), Conns: conns})
	start := time.Now()
	pod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	for range containers {
		c := pod.AddContainer(t)
		// Each process connects once; every tenth exits 1.
		script := fmt.Sprintf("for i in $(seq %d); do (exec 3<>/dev/tcp/%s/%d; [ $((i %% 10)) -ne 0 ]); done; true",
			perContainer, server.Addr(), server.Port())
		if out, err := c.Command(t.Context(), "bash", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("container processes: %v: %s", err, out)
		}
		c.Remove(t)
	}
	other := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	other.RunTCPClient(t, bpftest.ClientOptions{Addr: server, Conns: conns - containers*perContainer, Reset: true})
	srv.Wait(t)
	// Let a few collections export and drop the removed containers.
	time.Sleep(3 * time.Second)
	if col.exited() {
		t.Fatalf("collector exited during churn:\n%s", col.logTail())
	}
	after := e2eMemory(t, col.pid)
	t.Logf("churn took %v; collector RSS idle %d MiB, after churn %d MiB, peak %d MiB",
		time.Since(start).Round(time.Second), idle.rss>>20, after.rss>>20, after.peak>>20)
	if after.peak > e2eRSSBound {
		t.Errorf("collector peak RSS %d MiB, over the documented %d MiB", after.peak>>20, e2eRSSBound>>20)
	}
}

type e2eMem struct{ rss, peak int64 }

// e2eMemory reads the resident set of pid now (VmRSS) and at its peak
// (VmHWM).
func e2eMemory(t *testing.T, pid int) e2eMem {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var m e2eMem
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch {
		case err != nil:
		case k == "VmRSS":
			m.rss = kb << 10
		case k == "VmHWM":
			m.peak = kb << 10
		}
	}
	if m.rss == 0 || m.peak == 0 {
		t.Fatalf("no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return m
}
