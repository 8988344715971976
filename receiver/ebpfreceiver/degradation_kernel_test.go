//go:build linux

package ebpfreceiver

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

// hasSockLength reports whether the kernel has the sock:sock_send_length
// and sock:sock_recv_length tracepoints (Linux 6.3 and later). Without them
// the tcp.bytes part reports itself disabled, with the missing hook in the
// reason, and the tests check that instead; http captures at sys_exit.
func hasSockLength(t *testing.T) bool {
	return bpftest.HasTracepoint(t, "sock", "sock_send_length") && bpftest.HasTracepoint(t, "sock", "sock_recv_length")
}

// sockLengthReason matches the reason of a part disabled for want of them.
const sockLengthReason = `sock_(send|recv)_length`

// capabilities reads ebpf.capability.enabled from md: capability -> reason,
// with "" for enabled.
func capabilities(md pmetric.Metrics) map[string]string {
	got := make(map[string]string)
	for _, dp := range otlptest.Points(md, "ebpf.capability.enabled") {
		reason, hasReason := dp.Attributes().Get("ebpf.capability.reason")
		if dp.IntValue() == 1 && !hasReason {
			got[otlptest.Str(dp.Attributes(), "ebpf.capability")] = ""
		} else {
			got[otlptest.Str(dp.Attributes(), "ebpf.capability")] = reason.Str()
		}
	}
	return got
}

// scrapeOnce runs a receiver until it has exported twice, after traffic.
func scrapeOnce(t *testing.T, cfg *Config) pmetric.Metrics {
	t.Helper()
	cfg.CollectionInterval = 100 * time.Millisecond
	cfg.InitialDelay = 0
	sink := new(consumertest.MetricsSink)
	r := startReceiver(t, cfg, sink)
	defer func() { require.NoError(t, r.Shutdown(context.Background())) }()
	port := loopbackTraffic(t, 2, 100)
	var last pmetric.Metrics
	require.Eventually(t, func() bool {
		all := sink.AllMetrics()
		if len(all) == 0 {
			return false
		}
		last = all[len(all)-1]
		opened, _ := clientFlow(last, port)
		return opened == 2 || !cfg.TCP.Enabled || capabilities(last)["tcp"] != ""
	}, 5*time.Second, 50*time.Millisecond)
	return last
}

// A hook that does not exist disables its part only; the rest runs.
func TestMissingHookDisablesItsPart(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Faults.AttachTo = map[string]string{"ebr_tcp_probe": "ebpfreceiver_no_such_tracepoint"}
	md := scrapeOnce(t, cfg)

	caps := capabilities(md)
	assert.Contains(t, caps["tcp.rtt"], "ebr_tcp_probe on tcp:tcp_probe")
	for _, c := range []string{"cgroup_tracking", "tcp", "tcp.resets", "tcp.retransmits", "http"} {
		assert.Equal(t, "", caps[c], c)
	}
	if hasSockLength(t) {
		assert.Equal(t, "", caps["tcp.bytes"])
	} else {
		assert.Regexp(t, sockLengthReason, caps["tcp.bytes"])
	}
	assert.Equal(t, hasSockLength(t), otlptest.Has(md, "tcp.connection.io"), "bytes still measured where the kernel has the hooks")
	assert.False(t, otlptest.Has(md, "tcp.connection.rtt"))
}

// The capabilities that must run on every kernel this project supports.
var everyKernelCapabilities = []string{"cgroup_tracking", "tcp", "tcp.resets", "tcp.retransmits", "http", "sched", "process.exits", "process.oom", "disk"}

// A kernel BTF that cannot be read disables the capability that uses it
// only, with the path in the reason; the rest runs and measures.
func TestUnreadableBTFDisablesItsCapability(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.HTTP.Faults.KernelBTF = filepath.Join(t.TempDir(), "missing-vmlinux")
	md := scrapeOnce(t, cfg)

	caps := capabilities(md)
	assert.Contains(t, caps["http"], cfg.HTTP.Faults.KernelBTF)
	for _, c := range append(everyKernelCapabilities, "tcp.rtt") {
		if c != "http" {
			assert.Equal(t, "", caps[c], c)
		}
	}
	assert.True(t, otlptest.Has(md, "tcp.connection.opened"))
	assert.True(t, otlptest.Has(md, "container.cpu.time"))
}

// A program the verifier rejects disables its part only, with the program
// and the verifier in the reason; the rest runs and measures.
func TestVerifierRejectionDisablesItsPart(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Faults.RejectProgram = "ebr_tcp_probe"
	md := scrapeOnce(t, cfg)

	caps := capabilities(md)
	assert.Contains(t, caps["tcp.rtt"], "ebr_tcp_probe")
	assert.Contains(t, caps["tcp.rtt"], "verifier")
	for _, c := range everyKernelCapabilities {
		assert.Equal(t, "", caps[c], c)
	}
	assert.True(t, otlptest.Has(md, "tcp.connection.opened"))
	assert.False(t, otlptest.Has(md, "tcp.connection.rtt"))
}

// The base hook missing disables all TCP metrics; cgroup tracking and the
// receiver keep running.
func TestMissingBaseHookDisablesTCP(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Faults.AttachTo = map[string]string{"ebr_tcp_state": "ebpfreceiver_no_such_tracepoint"}
	md := scrapeOnce(t, cfg)

	caps := capabilities(md)
	assert.Equal(t, "", caps["cgroup_tracking"])
	for _, c := range []string{"tcp", "tcp.bytes", "tcp.resets", "tcp.retransmits", "tcp.rtt"} {
		assert.Contains(t, caps[c], "ebr_tcp_state on sock:inet_sock_set_state", c)
	}
	assert.False(t, otlptest.Has(md, "tcp.connection.opened"))
	assert.True(t, otlptest.Has(md, "ebpf.cgroups.cached"))
}

func TestTCPDisabledInConfig(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Enabled = false
	caps := capabilities(scrapeOnce(t, cfg))
	assert.Equal(t, source.ErrDisabledInConfig.Error(), caps["tcp"])
	assert.Equal(t, "", caps["cgroup_tracking"])
}

// A required capability that cannot run stops the receiver from starting,
// with the hook and the reason in the error.
func TestRequiredCapabilityFailsStart(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Required = true
	cfg.TCP.Faults.AttachTo = map[string]string{"ebr_tcp_probe": "ebpfreceiver_no_such_tracepoint"}
	r, err := NewFactory().CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, new(consumertest.MetricsSink))
	require.NoError(t, err)
	err = r.Start(context.Background(), componenttest.NewNopHost())
	require.Error(t, err)
	if hasSockLength(t) {
		assert.Contains(t, err.Error(), "tcp.rtt cannot run on tcp:tcp_probe")
		assert.Contains(t, err.Error(), "ebpfreceiver_no_such_tracepoint")
	} else { // the first part that cannot run is tcp.bytes
		assert.Contains(t, err.Error(), "tcp.bytes cannot run on sock:sock_send_length, sock:sock_recv_length")
	}
	require.NoError(t, r.Shutdown(context.Background()))
	coresMu.Lock()
	defer coresMu.Unlock()
	assert.Empty(t, cores, "nothing stays loaded")
}

// The log says in one line which capabilities run, and names each disabled
// one in its own message, with the reason: the collector's logger drops
// repeats of one message past 10 a second.
func TestCapabilitiesLogged(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.TCP.Faults.AttachTo = map[string]string{"ebr_tcp_probe": "ebpfreceiver_no_such_tracepoint"}
	core, logs := observer.New(zap.InfoLevel)
	set := receivertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	r, err := NewFactory().CreateMetrics(context.Background(), set, cfg, new(consumertest.MetricsSink))
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, r.Shutdown(context.Background()))

	enabled := logs.FilterMessage("capabilities enabled").All()
	require.Len(t, enabled, 1)
	var names []string
	for _, v := range enabled[0].ContextMap()["capabilities"].([]any) {
		names = append(names, v.(string))
	}
	assert.Subset(t, names, everyKernelCapabilities)
	assert.NotContains(t, names, "tcp.rtt")
	disabled := logs.FilterMessage("capability disabled: tcp.rtt").All()
	require.Len(t, disabled, 1)
	assert.Equal(t, zap.WarnLevel, disabled[0].Level)
	assert.Contains(t, disabled[0].ContextMap()["reason"], "ebr_tcp_probe on tcp:tcp_probe")
}
