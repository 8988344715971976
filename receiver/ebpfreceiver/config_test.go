package ebpfreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
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
		assert.Equal(t, TCPConfig{
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
		assert.Equal(t, SchedConfig{Enabled: false, MaxCgroups: 100, RunQueueHistogram: true}, cfg.Sched)
		assert.Equal(t, ProcessConfig{Enabled: true, Required: true, MaxSeries: 64, LogsPerSecond: 5}, cfg.Process)
		assert.Equal(t, DiskConfig{Enabled: true, MaxSeries: 32, MaxInflight: 128, LatencyHistogram: false}, cfg.Disk)
		assert.False(t, cfg.Events.ProcessSignalDeath.Enabled)
		assert.True(t, cfg.Events.ProcessOomKill.Enabled)
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		errs   []error
	}{
		{name: "default", modify: func(*Config) {}},
		{name: "zero interval", modify: func(c *Config) { c.CollectionInterval = 0 }, errs: []error{errCollectionInterval}},
		{name: "interval without unit", modify: func(c *Config) { c.CollectionInterval = 10 }, errs: []error{errCollectionInterval}},
		{name: "interval under the floor", modify: func(c *Config) { c.CollectionInterval = minCollectionInterval - 1 }, errs: []error{errCollectionInterval}},
		{name: "interval at the floor", modify: func(c *Config) { c.CollectionInterval = minCollectionInterval }},
		{name: "relative cgroup root", modify: func(c *Config) { c.CgroupRoot = "sys/fs/cgroup" }, errs: []error{errCgroupRootNotAbs}},
		{name: "no connections", modify: func(c *Config) { c.TCP.MaxConnections = 0 }, errs: []error{errMaxConnections}},
		{name: "too many connections", modify: func(c *Config) { c.TCP.MaxConnections = maxConnectionsLimit + 1 }, errs: []error{errMaxConnections}},
		{name: "most connections", modify: func(c *Config) { c.TCP.MaxConnections = maxConnectionsLimit }},
		{name: "no flows", modify: func(c *Config) { c.TCP.MaxFlows = 0 }, errs: []error{errMaxFlows}},
		{name: "too many flows", modify: func(c *Config) { c.TCP.MaxFlows = maxFlowsLimit + 1 }, errs: []error{errMaxFlows}},
		{name: "most flows", modify: func(c *Config) { c.TCP.MaxFlows = maxFlowsLimit }},
		{name: "one peer", modify: func(c *Config) { c.TCP.MaxPeersPerResource = 1 }},
		{name: "no peers", modify: func(c *Config) { c.TCP.MaxPeersPerResource = 0 }, errs: []error{errMaxPeers}},
		{name: "negative rtt interval", modify: func(c *Config) { c.TCP.RTTSampleInterval = -time.Second }, errs: []error{errRTTSampleInterval}},
		{name: "zero rtt interval", modify: func(c *Config) { c.TCP.RTTSampleInterval = 0 }},
		{name: "small capture", modify: func(c *Config) { c.HTTP.CaptureBytes = 63 }, errs: []error{errCaptureBytes}},
		{name: "large capture", modify: func(c *Config) { c.HTTP.CaptureBytes = 513 }, errs: []error{errCaptureBytes}},
		{name: "smallest capture", modify: func(c *Config) { c.HTTP.CaptureBytes = 64 }},
		{name: "largest capture", modify: func(c *Config) { c.HTTP.CaptureBytes = 512 }},
		{name: "no http connections", modify: func(c *Config) { c.HTTP.MaxConnections = 0 }, errs: []error{errHTTPConnections}},
		{name: "too many http connections", modify: func(c *Config) { c.HTTP.MaxConnections = maxHTTPConnsLimit + 1 }, errs: []error{errHTTPConnections}},
		{name: "most http connections", modify: func(c *Config) { c.HTTP.MaxConnections = maxHTTPConnsLimit }},
		{name: "no routes", modify: func(c *Config) { c.HTTP.MaxRoutesPerResource = 0 }, errs: []error{errMaxRoutes}},
		{name: "negative link window", modify: func(c *Config) { c.HTTP.LinkWindow = -1 }, errs: []error{errLinkWindow}},
		{name: "long link window", modify: func(c *Config) { c.HTTP.LinkWindow = 2 * time.Minute }, errs: []error{errLinkWindow}},
		{name: "longest link window", modify: func(c *Config) { c.HTTP.LinkWindow = maxLinkWindow }},
		{name: "no link window", modify: func(c *Config) { c.HTTP.LinkWindow = 0 }},
		{name: "no pending spans", modify: func(c *Config) { c.HTTP.MaxPendingSpans = 0 }, errs: []error{errMaxPendingSpans}},
		{name: "too many pending spans", modify: func(c *Config) { c.HTTP.MaxPendingSpans = maxPendingLimit + 1 }, errs: []error{errMaxPendingSpans}},
		{name: "bad port", modify: func(c *Config) { c.HTTP.Ports.Exclude = []int{0} }, errs: []error{errPort}},
		{name: "port too high", modify: func(c *Config) { c.HTTP.Ports.Include = []int{65536} }, errs: []error{errPort}},
		{name: "edge ports", modify: func(c *Config) { c.HTTP.Ports.Include = []int{1, 65535} }},
		{name: "bad cgroup prefix", modify: func(c *Config) { c.HTTP.Cgroups.Include = []string{"kubepods"} }, errs: []error{errCgroupPrefix}},
		{name: "no sched cgroups", modify: func(c *Config) { c.Sched.MaxCgroups = 0 }, errs: []error{errSchedCgroups}},
		{name: "too many sched cgroups", modify: func(c *Config) { c.Sched.MaxCgroups = maxSeriesLimit + 1 }, errs: []error{errSchedCgroups}},
		{name: "most sched cgroups", modify: func(c *Config) { c.Sched.MaxCgroups = maxSeriesLimit }},
		{name: "no process series", modify: func(c *Config) { c.Process.MaxSeries = 0 }, errs: []error{errProcessSeries}},
		{name: "too many process series", modify: func(c *Config) { c.Process.MaxSeries = maxSeriesLimit + 1 }, errs: []error{errProcessSeries}},
		{name: "no logs", modify: func(c *Config) { c.Process.LogsPerSecond = 0 }, errs: []error{errLogsPerSecond}},
		{name: "too many logs", modify: func(c *Config) { c.Process.LogsPerSecond = maxLogsPerSecond + 1 }, errs: []error{errLogsPerSecond}},
		{name: "most logs", modify: func(c *Config) { c.Process.LogsPerSecond = maxLogsPerSecond }},
		{name: "no disk series", modify: func(c *Config) { c.Disk.MaxSeries = 0 }, errs: []error{errDiskSeries}},
		{name: "too many disk series", modify: func(c *Config) { c.Disk.MaxSeries = maxSeriesLimit + 1 }, errs: []error{errDiskSeries}},
		{name: "no disk inflight", modify: func(c *Config) { c.Disk.MaxInflight = 0 }, errs: []error{errDiskInflight}},
		{name: "too many disk inflight", modify: func(c *Config) { c.Disk.MaxInflight = maxSeriesLimit + 1 }, errs: []error{errDiskInflight}},
		{
			name: "every error at once",
			modify: func(c *Config) {
				c.CollectionInterval = 0
				c.CgroupRoot = "x"
				c.TCP = TCPConfig{RTTSampleInterval: -1}
			},
			errs: []error{errCollectionInterval, errCgroupRootNotAbs, errMaxConnections, errMaxFlows, errMaxPeers, errRTTSampleInterval},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tt.modify(cfg)
			err := cfg.Validate()
			if len(tt.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.errs {
				assert.ErrorIs(t, err, want)
			}
		})
	}
}

// Values past a uint32, which the kernel maps take, are refused as written:
// the config keeps them wide until Validate, so 2^32+1 does not wrap to 1.
func TestValidateBeforeNarrowing(t *testing.T) {
	const wraps = 1<<32 + 1 // decoded from YAML as an int
	tests := []struct {
		key  string
		want error
	}{
		{"tcp::max_connections", errMaxConnections},
		{"tcp::max_flows", errMaxFlows},
		{"sched::max_cgroups", errSchedCgroups},
		{"process::max_series", errProcessSeries},
		{"process::logs_per_second", errLogsPerSecond},
		{"disk::max_series", errDiskSeries},
		{"disk::max_inflight", errDiskInflight},
		{"http::max_connections", errHTTPConnections},
		{"http::max_pending_spans", errMaxPendingSpans},
		{"http::capture_bytes", errCaptureBytes},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			cfg := createDefaultConfig()
			cm := confmap.NewFromStringMap(map[string]any{tt.key: wraps})
			require.NoError(t, cm.Unmarshal(cfg))
			err := cfg.Validate()
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), "4294967297", "the error names the value as written")
		})
	}
}

func TestFilters(t *testing.T) {
	ports := PortFilter{Include: []int{80, 8080}, Exclude: []int{8080}}
	assert.True(t, ports.allows(80))
	assert.False(t, ports.allows(8080), "exclude wins")
	assert.False(t, ports.allows(443))
	assert.True(t, PortFilter{}.allows(443))

	cg := CgroupFilter{Include: []string{"/kubepods.slice"}, Exclude: []string{"/kubepods.slice/kubepods-besteffort.slice"}}
	assert.True(t, cg.allows("/kubepods.slice/kubepods-burstable.slice/x", true))
	assert.False(t, cg.allows("/kubepods.slice/kubepods-besteffort.slice/x", true))
	assert.False(t, cg.allows("/system.slice/nginx.service", true))
	assert.False(t, cg.allows("", false), "unknown paths only when nothing is included")
	assert.True(t, CgroupFilter{Exclude: []string{"/system.slice"}}.allows("", false))
}
