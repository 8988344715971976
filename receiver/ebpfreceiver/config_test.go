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
		require.NoError(t, confmap.Validate(cfg))
		return cfg.(*Config)
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
		assert.False(t, cfg.Metrics.TCPConnectionRetransmits.Enabled)
		assert.True(t, cfg.Metrics.TCPConnectionOpened.Enabled)
		assert.False(t, cfg.ResourceAttributes.CgroupPath.Enabled)
		assert.True(t, cfg.ResourceAttributes.ContainerID.Enabled)
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
		{name: "relative cgroup root", modify: func(c *Config) { c.CgroupRoot = "sys/fs/cgroup" }, errs: []error{errCgroupRootNotAbs}},
		{name: "no connections", modify: func(c *Config) { c.TCP.MaxConnections = 0 }, errs: []error{errMaxConnections}},
		{name: "too many connections", modify: func(c *Config) { c.TCP.MaxConnections = maxConnectionsLimit + 1 }, errs: []error{errMaxConnections}},
		{name: "no flows", modify: func(c *Config) { c.TCP.MaxFlows = 0 }, errs: []error{errMaxFlows}},
		{name: "too many flows", modify: func(c *Config) { c.TCP.MaxFlows = maxFlowsLimit + 1 }, errs: []error{errMaxFlows}},
		{name: "no peers", modify: func(c *Config) { c.TCP.MaxPeersPerResource = 0 }, errs: []error{errMaxPeers}},
		{name: "negative rtt interval", modify: func(c *Config) { c.TCP.RTTSampleInterval = -time.Second }, errs: []error{errRTTSampleInterval}},
		{name: "zero rtt interval", modify: func(c *Config) { c.TCP.RTTSampleInterval = 0 }},
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
