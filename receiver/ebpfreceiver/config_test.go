package ebpfreceiver

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/disksource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/processsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/schedsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	load := func(t *testing.T, id component.ID) *Config {
		cfg := NewFactory().CreateDefaultConfig()
		sub, err := cm.Sub(id.String())
		require.NoError(t, err)
		require.NoError(t, sub.Unmarshal(cfg))
		c := cfg.(*Config)
		// cgroup_root must be a cgroup v2 mount on the machine that
		// validates; TestValidateCgroupRoot covers that check.
		root := c.CgroupRoot
		c.CgroupRoot = ""
		require.NoError(t, confmap.Validate(cfg))
		c.CgroupRoot = root
		return c
	}

	t.Run("default", func(t *testing.T) {
		assert.Equal(t, createDefaultConfig(), load(t, component.NewID(metadata.Type)))
	})
	t.Run("custom", func(t *testing.T) {
		cfg := load(t, component.NewIDWithName(metadata.Type, "custom"))
		assert.Equal(t, 30*time.Second, cfg.CollectionInterval)
		assert.Equal(t, "/sys/fs/cgroup", cfg.CgroupRoot)
		assert.Equal(t, tcpsource.Config{
			Enabled:             true,
			Required:            true,
			MaxConnections:      1024,
			MaxFlows:            512,
			MaxPeersPerResource: 16,
			RTTSampleInterval:   250 * time.Millisecond,
			RTTHistogram:        false,
		}, cfg.TCP)
		assert.Equal(t, 512, cfg.HTTP.CaptureBytes)
		assert.Equal(t, []int{22}, cfg.HTTP.Ports.Exclude)
		assert.Equal(t, []string{"/kubepods.slice"}, cfg.HTTP.Cgroups.Include)
		assert.False(t, cfg.Metrics.TCPConnectionRetransmits.Enabled)
		assert.True(t, cfg.Metrics.TCPConnectionOpened.Enabled)
		assert.False(t, cfg.ResourceAttributes.CgroupPath.Enabled)
		assert.True(t, cfg.ResourceAttributes.ContainerID.Enabled)
		assert.Equal(t, schedsource.Config{Enabled: false, MaxCgroups: 100, RunQueueHistogram: true}, cfg.Sched)
		assert.Equal(t, processsource.Config{Enabled: true, Required: true, MaxSeries: 64, LogsPerSecond: 5}, cfg.Process)
		assert.Equal(t, disksource.Config{Enabled: true, MaxSeries: 32, MaxInflight: 128, LatencyHistogram: false}, cfg.Disk)
		assert.False(t, cfg.Events.ProcessSignalDeath.Enabled)
		assert.True(t, cfg.Events.ProcessOomKill.Enabled)
	})
}

func TestValidate(t *testing.T) {
	validate := func(c *Config) error { return confmap.Validate(c) }
	sourcetest.CheckValidate(t, createDefaultConfig, validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "zero interval", Modify: func(c *Config) { c.CollectionInterval = 0 }, Errs: []error{errCollectionInterval}},
		{Name: "interval without unit", Modify: func(c *Config) { c.CollectionInterval = 10 }, Errs: []error{errCollectionInterval}},
		{Name: "interval under the floor", Modify: func(c *Config) { c.CollectionInterval = minCollectionInterval - 1 }, Errs: []error{errCollectionInterval}},
		{Name: "interval at the floor", Modify: func(c *Config) { c.CollectionInterval = minCollectionInterval }},
		{Name: "relative cgroup root", Modify: func(c *Config) { c.CgroupRoot = "sys/fs/cgroup" }, Errs: []error{errCgroupRootNotAbs}},
	})
}

// The collector validates every capability's block too, and names the
// block in each error; every problem is reported at once.
func TestValidateEveryBlock(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.CollectionInterval = 0
	cfg.TCP.MaxFlows = 0
	cfg.HTTP.CaptureBytes = 1
	cfg.Sched.MaxCgroups = 0
	cfg.Process.LogsPerSecond = 0
	cfg.Disk.MaxInflight = 0
	err := confmap.Validate(cfg)
	require.Error(t, err)
	assert.ErrorIs(t, err, errCollectionInterval)
	for _, want := range []string{
		"tcp: max_flows must be between 1 and 1048576, got 0",
		"http: capture_bytes must be between 64 and 512, got 1",
		"sched: max_cgroups must be between 1 and 1048576, got 0",
		"process: logs_per_second must be between 1 and 100000, got 0",
		"disk: max_inflight must be between 1 and 1048576, got 0",
	} {
		assert.Contains(t, err.Error(), want)
	}
}

// Values past a uint32, which the kernel maps take, are refused as written:
// the config keeps them wide until Validate, so 2^32+1 does not wrap to 1.
func TestValidateBeforeNarrowing(t *testing.T) {
	const wraps = 1<<32 + 1 // decoded from YAML as an int
	for _, key := range []string{
		"tcp::max_connections",
		"tcp::max_flows",
		"sched::max_cgroups",
		"process::max_series",
		"process::logs_per_second",
		"disk::max_series",
		"disk::max_inflight",
		"http::max_connections",
		"http::max_pending_spans",
		"http::capture_bytes",
	} {
		t.Run(key, func(t *testing.T) {
			cfg := createDefaultConfig()
			cm := confmap.NewFromStringMap(map[string]any{key: wraps})
			require.NoError(t, cm.Unmarshal(cfg))
			err := confmap.Validate(cfg)
			require.Error(t, err)
			block, field, _ := strings.Cut(key, "::")
			assert.Contains(t, err.Error(), block+": "+field+" must be", "the error names the setting")
			assert.Contains(t, err.Error(), "4294967297", "the error names the value as written")
		})
	}
}
