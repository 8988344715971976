package ebpfreceiver

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

var (
	errCollectionInterval = errors.New("collection_interval must be positive")
	errCgroupRootNotAbs   = errors.New("cgroup_root must be an absolute path")
	errMaxConnections     = errors.New("tcp.max_connections must be between 1 and 4194304")
	errMaxFlows           = errors.New("tcp.max_flows must be between 1 and 1048576")
	errMaxPeers           = errors.New("tcp.max_peers_per_resource must be at least 1")
	errRTTSampleInterval  = errors.New("tcp.rtt_sample_interval must not be negative")
)

const (
	maxConnectionsLimit = 1 << 22
	maxFlowsLimit       = 1 << 20
)

// Config is the receiver's configuration.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	metadata.MetricsBuilderConfig  `mapstructure:",squash"`

	// CgroupRoot is where the cgroup v2 hierarchy is mounted. Empty means
	// the first cgroup2 mount in /proc/self/mountinfo.
	CgroupRoot string `mapstructure:"cgroup_root"`

	// TCP configures the TCP connection metrics.
	TCP TCPConfig `mapstructure:"tcp"`

	// tcpAttachTo renames the tracepoints of tcpconn programs. Tests use it
	// to make a hook missing for real; it cannot be configured.
	tcpAttachTo map[string]string
}

// TCPConfig configures the TCP connection metrics.
type TCPConfig struct {
	// Enabled turns the TCP connection metrics on.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when any part of the TCP
	// metrics cannot run; otherwise that part is disabled and reported.
	Required bool `mapstructure:"required"`
	// MaxConnections bounds the connections tracked at once in the kernel.
	// A connection past it is counted in ebpf.tcp.lost and not measured.
	MaxConnections uint32 `mapstructure:"max_connections"`
	// MaxFlows bounds the flows (cgroup, direction, peer) kept in the
	// kernel. Updates past it go to one overflow series per direction.
	MaxFlows uint32 `mapstructure:"max_flows"`
	// MaxPeersPerResource caps the distinct peers exported per resource and
	// direction; the rest are folded into an overflow series.
	MaxPeersPerResource int `mapstructure:"max_peers_per_resource"`
	// RTTSampleInterval is the least time between two smoothed RTT samples
	// of one connection. Zero samples every received segment.
	RTTSampleInterval time.Duration `mapstructure:"rtt_sample_interval"`
	// RTTHistogram enables the tcp.connection.rtt histogram.
	RTTHistogram bool `mapstructure:"rtt_histogram"`
}

func createDefaultConfig() *Config {
	cc := scraperhelper.NewDefaultControllerConfig()
	cc.CollectionInterval = 10 * time.Second
	return &Config{
		ControllerConfig:     cc,
		MetricsBuilderConfig: metadata.DefaultMetricsBuilderConfig(),
		TCP: TCPConfig{
			Enabled:             true,
			MaxConnections:      65536,
			MaxFlows:            8192,
			MaxPeersPerResource: 256,
			RTTSampleInterval:   time.Second,
			RTTHistogram:        true,
		},
	}
}

// Validate returns every problem with the configuration at once.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.CollectionInterval <= 0 {
		errs = append(errs, errCollectionInterval)
	}
	if cfg.CgroupRoot != "" && !filepath.IsAbs(cfg.CgroupRoot) {
		errs = append(errs, fmt.Errorf("%w, got %q", errCgroupRootNotAbs, cfg.CgroupRoot))
	}
	t := cfg.TCP
	if t.MaxConnections < 1 || t.MaxConnections > maxConnectionsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxConnections, t.MaxConnections))
	}
	if t.MaxFlows < 1 || t.MaxFlows > maxFlowsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxFlows, t.MaxFlows))
	}
	if t.MaxPeersPerResource < 1 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxPeers, t.MaxPeersPerResource))
	}
	if t.RTTSampleInterval < 0 {
		errs = append(errs, fmt.Errorf("%w, got %s", errRTTSampleInterval, t.RTTSampleInterval))
	}
	return errors.Join(errs...)
}
