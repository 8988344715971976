// Package schedsource is the scheduler capability: on-CPU time,
// involuntary switches and run-queue latency per cgroup.
package schedsource

import (
	"errors"
	"fmt"
)

const maxCgroupsLimit = 1 << 20

var errMaxCgroups = errors.New("max_cgroups must be between 1 and 1048576")

// Config configures the scheduler metrics.
type Config struct {
	// Enabled turns the scheduler hooks on. They run at every context
	// switch on the node.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when they cannot run.
	Required bool `mapstructure:"required"`
	// MaxCgroups bounds the cgroups aggregated in the kernel at once; the
	// rest go to the node's overflow series.
	MaxCgroups int `mapstructure:"max_cgroups"`
	// RunQueueHistogram enables the sched.run_queue.latency histogram.
	RunQueueHistogram bool `mapstructure:"run_queue_histogram"`
}

// DefaultConfig is the scheduler metrics' default configuration.
func DefaultConfig() Config {
	return Config{Enabled: true, MaxCgroups: 8192, RunQueueHistogram: true}
}

// Validate returns every problem with the configuration at once.
func (c Config) Validate() error {
	if c.MaxCgroups < 1 || c.MaxCgroups > maxCgroupsLimit {
		return fmt.Errorf("%w, got %d", errMaxCgroups, c.MaxCgroups)
	}
	return nil
}
