package ebpfreceiver

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/disksource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/processsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/schedsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
)

var (
	errCollectionInterval = errors.New("collection_interval must be at least 100ms; a number without a unit is nanoseconds: write 10s")
	errCgroupRootNotAbs   = errors.New("cgroup_root must be an absolute path")
)

const minCollectionInterval = 100 * time.Millisecond

// Config is the receiver's configuration.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	metadata.MetricsBuilderConfig  `mapstructure:",squash"`

	// CgroupRoot is where the cgroup v2 hierarchy is mounted. Empty means
	// the first cgroup2 mount in /proc/self/mountinfo.
	CgroupRoot string `mapstructure:"cgroup_root"`

	// TCP configures the TCP connection metrics.
	TCP tcpsource.Config `mapstructure:"tcp"`

	// HTTP configures HTTP/1.x tracing and RED metrics.
	HTTP httpsource.Config `mapstructure:"http"`

	// Sched configures the scheduler metrics: on-CPU time, involuntary
	// switches and run-queue latency.
	Sched schedsource.Config `mapstructure:"sched"`

	// Process configures the counts and log records of failed exits,
	// deaths by signal and OOM kills.
	Process processsource.Config `mapstructure:"process"`

	// Disk configures the block I/O metrics.
	Disk disksource.Config `mapstructure:"disk"`

	// Events turns each log record (event) on or off.
	Events metadata.EventsConfig `mapstructure:"events"`
}

func createDefaultConfig() *Config {
	cc := scraperhelper.NewDefaultControllerConfig()
	cc.CollectionInterval = 10 * time.Second
	return &Config{
		ControllerConfig:     cc,
		MetricsBuilderConfig: metadata.DefaultMetricsBuilderConfig(),
		TCP:                  tcpsource.DefaultConfig(),
		HTTP:                 httpsource.DefaultConfig(),
		Sched:                schedsource.DefaultConfig(),
		Process:              processsource.DefaultConfig(),
		Disk:                 disksource.DefaultConfig(),
		Events:               metadata.DefaultEventsConfig(),
	}
}

// Validate returns every problem with the receiver's own settings at once;
// each capability's block validates itself.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.CollectionInterval < minCollectionInterval {
		errs = append(errs, fmt.Errorf("%w, got %s", errCollectionInterval, cfg.CollectionInterval))
	}
	switch {
	case cfg.CgroupRoot == "":
	case !filepath.IsAbs(cfg.CgroupRoot):
		errs = append(errs, fmt.Errorf("%w, got %q", errCgroupRootNotAbs, cfg.CgroupRoot))
	default:
		if err := checkCgroupRoot(cfg.CgroupRoot); err != nil {
			errs = append(errs, fmt.Errorf("cgroup_root: %w", err))
		}
	}
	return errors.Join(errs...)
}
