// Package tcpsource is the TCP capability: connections opened by outcome,
// active connections, bytes, retransmits, resets and RTT per cgroup and
// peer.
package tcpsource

import (
	"errors"
	"fmt"
	"time"
)

const (
	maxConnectionsLimit = 1 << 22
	maxFlowsLimit       = 1 << 20
)

var (
	errMaxConnections    = errors.New("max_connections must be between 1 and 4194304")
	errMaxFlows          = errors.New("max_flows must be between 1 and 1048576")
	errMaxPeers          = errors.New("max_peers_per_resource must be at least 1")
	errRTTSampleInterval = errors.New("rtt_sample_interval must not be negative")
)

// Config configures the TCP connection metrics.
type Config struct {
	// Enabled turns the TCP connection metrics on.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when any part of the TCP
	// metrics cannot run; otherwise that part is disabled and reported.
	Required bool `mapstructure:"required"`
	// MaxConnections bounds the connections tracked at once in the kernel.
	// A connection past it is counted in ebpf.tcp.lost and not measured.
	MaxConnections int `mapstructure:"max_connections"`
	// MaxFlows bounds the flows (cgroup, direction, peer) kept in the
	// kernel. Updates past it go to one overflow series per direction.
	MaxFlows int `mapstructure:"max_flows"`
	// MaxPeersPerResource caps the distinct peers exported per resource and
	// direction; the rest are folded into an overflow series.
	MaxPeersPerResource int `mapstructure:"max_peers_per_resource"`
	// RTTSampleInterval is the least time between two smoothed RTT samples
	// of one connection. Zero samples every received segment.
	RTTSampleInterval time.Duration `mapstructure:"rtt_sample_interval"`
	// RTTHistogram enables the tcp.connection.rtt histogram.
	RTTHistogram bool `mapstructure:"rtt_histogram"`

	// Faults makes loading fail for real, for tests; it cannot be
	// configured.
	Faults Faults `mapstructure:"-"`
}

// Faults are the failures that tests force on the TCP programs.
type Faults struct {
	// AttachTo renames the tracepoints of programs, to make a hook missing.
	AttachTo map[string]string
	// RejectProgram names a program that the verifier is made to reject.
	RejectProgram string
}

// DefaultConfig is the TCP metrics' default configuration.
func DefaultConfig() Config {
	return Config{
		Enabled:             true,
		MaxConnections:      65536,
		MaxFlows:            8192,
		MaxPeersPerResource: 256,
		RTTSampleInterval:   time.Second,
		RTTHistogram:        true,
	}
}

// Validate returns every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxConnections < 1 || c.MaxConnections > maxConnectionsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxConnections, c.MaxConnections))
	}
	if c.MaxFlows < 1 || c.MaxFlows > maxFlowsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxFlows, c.MaxFlows))
	}
	if c.MaxPeersPerResource < 1 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxPeers, c.MaxPeersPerResource))
	}
	if c.RTTSampleInterval < 0 {
		errs = append(errs, fmt.Errorf("%w, got %s", errRTTSampleInterval, c.RTTSampleInterval))
	}
	return errors.Join(errs...)
}
