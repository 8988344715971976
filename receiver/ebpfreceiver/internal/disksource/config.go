// Package disksource is the block I/O capability: bytes, operations and
// latency per cgroup, device and direction.
package disksource

import (
	"errors"
	"fmt"
)

const maxLimit = 1 << 20

var (
	errMaxSeries   = errors.New("max_series must be between 1 and 1048576")
	errMaxInflight = errors.New("max_inflight must be between 1 and 1048576")
)

// Config configures the block I/O metrics.
type Config struct {
	// Enabled turns the block request hooks on.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when they cannot run.
	Required bool `mapstructure:"required"`
	// MaxSeries bounds the (cgroup, device, direction) series kept in the
	// kernel; the rest go to the node's overflow series.
	MaxSeries int `mapstructure:"max_series"`
	// MaxInflight bounds the requests timed at once.
	MaxInflight int `mapstructure:"max_inflight"`
	// LatencyHistogram enables the disk.io.latency histogram.
	LatencyHistogram bool `mapstructure:"latency_histogram"`
}

// DefaultConfig is the block I/O metrics' default configuration.
func DefaultConfig() Config {
	return Config{Enabled: true, MaxSeries: 4096, MaxInflight: 16384, LatencyHistogram: true}
}

// Validate returns every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSeries < 1 || c.MaxSeries > maxLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxSeries, c.MaxSeries))
	}
	if c.MaxInflight < 1 || c.MaxInflight > maxLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxInflight, c.MaxInflight))
	}
	return errors.Join(errs...)
}
