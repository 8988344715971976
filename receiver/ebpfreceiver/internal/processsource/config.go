// Package processsource is the process capability: counts of failed exits
// and OOM kills per cgroup, and a log record of each death by signal and
// OOM kill.
package processsource

import (
	"errors"
	"fmt"
)

const (
	maxSeriesLimit   = 1 << 20
	maxLogsPerSecond = 100000
)

var (
	errMaxSeries     = errors.New("max_series must be between 1 and 1048576")
	errLogsPerSecond = errors.New("logs_per_second must be between 1 and 100000")
)

// Config configures the process exit and OOM kill data.
type Config struct {
	// Enabled turns the process exit and OOM kill hooks on.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when any part cannot run.
	Required bool `mapstructure:"required"`
	// MaxSeries bounds the (cgroup, exit status or signal) series kept in
	// the kernel, and the cgroups with OOM kills.
	MaxSeries int `mapstructure:"max_series"`
	// LogsPerSecond caps the death-by-signal log records over the node;
	// the rest are counted in ebpf.process.lost and in process.exits.
	LogsPerSecond int `mapstructure:"logs_per_second"`
}

// DefaultConfig is the process data's default configuration.
func DefaultConfig() Config {
	return Config{Enabled: true, MaxSeries: 4096, LogsPerSecond: 50}
}

// Validate returns every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSeries < 1 || c.MaxSeries > maxSeriesLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxSeries, c.MaxSeries))
	}
	if c.LogsPerSecond < 1 || c.LogsPerSecond > maxLogsPerSecond {
		errs = append(errs, fmt.Errorf("%w, got %d", errLogsPerSecond, c.LogsPerSecond))
	}
	return errors.Join(errs...)
}
