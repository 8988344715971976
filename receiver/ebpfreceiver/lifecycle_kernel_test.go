//go:build linux

package ebpfreceiver

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/disksource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/processsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/schedsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
)

// loadedIDs returns the ids of the programs and maps that the core of cfg
// has loaded. Other tests may load programs concurrently, so the checks go
// by id, not by counting the kernel's objects.
func loadedIDs(t *testing.T, cfg *Config) (progs []ebpf.ProgramID, maps []ebpf.MapID) {
	t.Helper()
	coresMu.Lock()
	c := cores[cfg]
	coresMu.Unlock()
	require.NotNil(t, c, "no core loaded for this config")
	require.NotNil(t, c.tracker, "cgroup tracking must load on this kernel")
	loaded[*tcpsource.Source](t, c)
	loaded[*schedsource.Source](t, c)
	loaded[*processsource.Source](t, c)
	loaded[*disksource.Source](t, c)
	loaded[*httpsource.Source](t, c)
	all, allMaps := c.tracker.Programs(), c.tracker.Maps()
	for _, src := range c.sources {
		all, allMaps = append(all, src.Kernel().Programs()...), append(allMaps, src.Kernel().Maps()...)
	}
	for _, p := range all {
		info, err := p.Info()
		require.NoError(t, err)
		id, ok := info.ID()
		require.True(t, ok)
		progs = append(progs, id)
	}
	for _, m := range allMaps {
		info, err := m.Info()
		require.NoError(t, err)
		id, ok := info.ID()
		require.True(t, ok)
		maps = append(maps, id)
	}
	require.Len(t, progs, wantPrograms(t))
	slices.Sort(progs)
	slices.Sort(maps)
	return progs, maps
}

// loaded returns the source of type S that c loaded, and fails the test
// when c has none.
func loaded[S source.Source](t *testing.T, c *core) S {
	t.Helper()
	for _, src := range c.sources {
		if s, ok := src.(S); ok {
			return s
		}
	}
	var none S
	require.Failf(t, "capability not loaded", "no %T in the core", none)
	return none
}

// wantPrograms is the number of programs a default config loads: 2 for
// cgroup tracking, 8 for tcp, 4 for http, 3 for sched, 2 for process exits
// and 4 for disk; without sock_*_length, 2 fewer of tcp's and 3 for http
// (sys_exit in place of the two socket length tracepoints).
func wantPrograms(t *testing.T) int {
	if hasSockLength(t) {
		return 23
	}
	return 20
}

// requireFreed waits until the kernel has freed every given program and map.
func requireFreed(t *testing.T, progs []ebpf.ProgramID, maps []ebpf.MapID) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(id); !errors.Is(err, os.ErrNotExist) {
				if p != nil {
					p.Close()
				}
				return false
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); !errors.Is(err, os.ErrNotExist) {
				if m != nil {
					m.Close()
				}
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "programs %v or maps %v still loaded", progs, maps)
}

func requireLoaded(t *testing.T, progs []ebpf.ProgramID) {
	t.Helper()
	for _, id := range progs {
		p, err := ebpf.NewProgramFromID(id)
		require.NoError(t, err, "program %d", id)
		p.Close()
	}
}

func startReceiver(t *testing.T, cfg *Config, sink *consumertest.MetricsSink) receiver.Metrics {
	t.Helper()
	r, err := NewFactory().CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	return r
}

// loopbackTraffic makes n connections to a loopback server, each sending
// payload bytes, and returns the server's port.
func loopbackTraffic(t *testing.T, n, payload int) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		require.NoError(t, err)
		_, err = c.Write(make([]byte, payload))
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	<-done
	return ln.Addr().(*net.TCPAddr).Port
}

// clientFlow finds the client-side series to 127.0.0.1:port in md.
func clientFlow(md pmetric.Metrics, port int) (opened, sent int64) {
	toPort := func(a pcommon.Map, k, v string) bool {
		return otlptest.Int(a, "network.peer.port") == int64(port) && otlptest.Str(a, k) == v
	}
	opened = otlptest.SumInt(md, "tcp.connection.opened", func(a pcommon.Map) bool { return toPort(a, "tcp.connection.outcome", "established") })
	sent = otlptest.SumInt(md, "tcp.connection.io", func(a pcommon.Map) bool { return toPort(a, "network.io.direction", "transmit") })
	return opened, sent
}

// The receiver loads its programs at Start, sees real loopback traffic, and
// leaves no program or map behind at Shutdown.
func TestReceiverLifecycle(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.CollectionInterval = 100 * time.Millisecond
	cfg.InitialDelay = 0
	sink := new(consumertest.MetricsSink)
	r := startReceiver(t, cfg, sink)
	progs, maps := loadedIDs(t, cfg)

	port := loopbackTraffic(t, 3, 1000)
	require.Eventually(t, func() bool {
		all := sink.AllMetrics()
		if len(all) == 0 {
			return false
		}
		opened, sent := clientFlow(all[len(all)-1], port)
		return opened == 3 && (sent == 3000 || !hasSockLength(t) && sent == 0)
	}, 5*time.Second, 50*time.Millisecond, "3 connections and 3000 bytes (none without sock_*_length) to port %d", port)

	require.NoError(t, r.Shutdown(context.Background()))
	requireFreed(t, progs, maps)
}

// Receivers sharing one config share one loaded core.
func TestReceiverSharesCore(t *testing.T) {
	cfg := createDefaultConfig()
	a := startReceiver(t, cfg, new(consumertest.MetricsSink))
	progs, maps := loadedIDs(t, cfg)
	b := startReceiver(t, cfg, new(consumertest.MetricsSink))
	progsB, _ := loadedIDs(t, cfg)
	assert.Equal(t, progs, progsB, "the second receiver loads nothing")

	require.NoError(t, a.Shutdown(context.Background()))
	requireLoaded(t, progs)
	require.NoError(t, b.Shutdown(context.Background()))
	requireFreed(t, progs, maps)
}

// Start and Shutdown in a loop leave no program, map or file descriptor
// behind, and no goroutine (goleak checks those in TestMain).
func TestReceiverStartStopCycles(t *testing.T) {
	openFDs := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(fds)
	}
	// One warm-up cycle opens what the process keeps for good (the
	// runtime's poller, cached BTF of the kernel).
	r := startReceiver(t, createDefaultConfig(), new(consumertest.MetricsSink))
	require.NoError(t, r.Shutdown(context.Background()))
	fdsBefore := openFDs()
	for range 20 {
		cfg := createDefaultConfig()
		r := startReceiver(t, cfg, new(consumertest.MetricsSink))
		progs, maps := loadedIDs(t, cfg)
		require.NoError(t, r.Shutdown(context.Background()))
		requireFreed(t, progs, maps)
	}
	assert.Equal(t, fdsBefore, openFDs())
}

// With kernel.bpf_stats_enabled=1 every program reports its run time and
// count.
func TestProgramStats(t *testing.T) {
	const knob = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(knob)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(knob, []byte("1"), 0))
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0) })

	cfg := createDefaultConfig()
	cfg.CollectionInterval = 100 * time.Millisecond
	cfg.InitialDelay = 0
	cfg.Metrics.EbpfProgramRuns.Enabled = true // off by default
	sink := new(consumertest.MetricsSink)
	r := startReceiver(t, cfg, sink)
	defer func() { require.NoError(t, r.Shutdown(context.Background())) }()
	loopbackTraffic(t, 2, 100)
	require.Eventually(t, func() bool {
		all := sink.AllMetrics()
		if len(all) == 0 {
			return false
		}
		runs := map[string]int64{}
		for _, dp := range otlptest.Points(all[len(all)-1], "ebpf.program.runs") {
			runs[otlptest.Str(dp.Attributes(), "ebpf.program")] = dp.IntValue()
		}
		return len(runs) == wantPrograms(t) && runs["ebr_tcp_state"] > 0 && runs["ebr_l7_enter"] > 0
	}, 5*time.Second, 50*time.Millisecond)
}
