// Package httpsource is the HTTP/1.x capability: spans of every exchange
// and RED metrics per cgroup and route.
package httpsource

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const (
	maxConnsLimit   = 1 << 20
	maxPendingLimit = 1 << 20
	maxLinkWindow   = time.Minute
)

var (
	errCaptureBytes    = errors.New("capture_bytes must be between 64 and 512")
	errMaxConnections  = errors.New("max_connections must be between 1 and 1048576")
	errMaxRoutes       = errors.New("max_routes_per_resource must be at least 1")
	errLinkWindow      = errors.New("link_window must be between 0 and 1m")
	errMaxPendingSpans = errors.New("max_pending_spans must be between 1 and 1048576")
	errPort            = errors.New("ports: a port must be between 1 and 65535")
	errCgroupPrefix    = errors.New("cgroups: a prefix must start with /")
	errKeepPercent     = errors.New("spans: keep_percent must be between 0 and 100")
	errSlowThreshold   = errors.New("spans: slow_threshold must not be negative")
)

// Config configures HTTP/1.x tracing and RED metrics.
type Config struct {
	// Enabled turns HTTP capture on.
	Enabled bool `mapstructure:"enabled"`
	// Required makes the receiver fail to start when HTTP capture cannot
	// run; otherwise it is disabled and reported.
	Required bool `mapstructure:"required"`
	// CaptureBytes is how many bytes of each read or write are copied from
	// the kernel: enough for the request line, status line and headers.
	CaptureBytes int `mapstructure:"capture_bytes"`
	// Ports selects connections by their server port. Empty Include means
	// every port; Exclude wins.
	Ports PortFilter `mapstructure:"ports"`
	// Cgroups selects connections by the cgroup path of their owner, by
	// prefix: "/kubepods.slice" takes every pod. Empty Include means every
	// cgroup; Exclude wins.
	Cgroups CgroupFilter `mapstructure:"cgroups"`
	// MaxConnections bounds the connections parsed at once.
	MaxConnections int `mapstructure:"max_connections"`
	// MaxRoutesPerResource caps the route templates of
	// http.server.request.duration per resource; the rest are folded.
	MaxRoutesPerResource int `mapstructure:"max_routes_per_resource"`
	// LinkWindow is how long a finished span waits for the other spans of
	// its request on this node, to link client and server spans.
	LinkWindow time.Duration `mapstructure:"link_window"`
	// MaxPendingSpans bounds the spans waiting to be linked and exported.
	MaxPendingSpans int `mapstructure:"max_pending_spans"`
	// Spans chooses the spans exported.
	Spans SpansConfig `mapstructure:"spans"`
	// TraceSelf traces the collector's own connections, and those of its
	// container when it runs in one. Off, its exports never become spans.
	// For debugging.
	TraceSelf bool `mapstructure:"trace_self"`
	// TraceOTLPExports keeps OTLP/HTTP export requests (POST /v1/traces,
	// /v1/metrics, /v1/logs, /v1development/profiles with an OTLP content
	// type) of any process. Off, they are counted in ebpf.http.excluded
	// instead, so that agents and gateways do not trace each other's
	// telemetry. For debugging.
	TraceOTLPExports bool `mapstructure:"trace_otlp_exports"`

	// Faults makes loading fail for real, for tests; it cannot be
	// configured.
	Faults Faults `mapstructure:"-"`
}

// SpansConfig chooses the spans exported. Failed and slow spans are always
// kept, with their trace on this node; the RED metrics count every request.
type SpansConfig struct {
	// SlowThreshold makes a span slow from this duration on; 0: none is.
	SlowThreshold time.Duration `mapstructure:"slow_threshold"`
	// KeepPercent is the share of the other traces kept, chosen by trace
	// id: 100 keeps every span, 0 only the failed and slow ones.
	KeepPercent float64 `mapstructure:"keep_percent"`
}

// Faults are the failures that tests force on HTTP capture.
type Faults struct {
	// KernelBTF is a BTF file for the programs' CO-RE, to make it unreadable.
	KernelBTF string
}

// DefaultConfig is HTTP capture's default configuration.
func DefaultConfig() Config {
	return Config{
		Enabled:              true,
		CaptureBytes:         256,
		MaxConnections:       16384,
		MaxRoutesPerResource: 100,
		LinkWindow:           time.Second,
		MaxPendingSpans:      65536,
		Spans:                SpansConfig{SlowThreshold: time.Second, KeepPercent: 100},
	}
}

// Validate returns every problem with the configuration at once.
func (h Config) Validate() error {
	var errs []error
	if h.CaptureBytes < 64 || h.CaptureBytes > 512 {
		errs = append(errs, fmt.Errorf("%w, got %d", errCaptureBytes, h.CaptureBytes))
	}
	if h.MaxConnections < 1 || h.MaxConnections > maxConnsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxConnections, h.MaxConnections))
	}
	if h.MaxRoutesPerResource < 1 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxRoutes, h.MaxRoutesPerResource))
	}
	if h.LinkWindow < 0 || h.LinkWindow > maxLinkWindow {
		errs = append(errs, fmt.Errorf("%w, got %s", errLinkWindow, h.LinkWindow))
	}
	if h.MaxPendingSpans < 1 || h.MaxPendingSpans > maxPendingLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxPendingSpans, h.MaxPendingSpans))
	}
	if !(h.Spans.KeepPercent >= 0 && h.Spans.KeepPercent <= 100) { // NaN too
		errs = append(errs, fmt.Errorf("%w, got %g", errKeepPercent, h.Spans.KeepPercent))
	}
	if h.Spans.SlowThreshold < 0 {
		errs = append(errs, fmt.Errorf("%w, got %s", errSlowThreshold, h.Spans.SlowThreshold))
	}
	for _, p := range append(slices.Clone(h.Ports.Include), h.Ports.Exclude...) {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%w, got %d", errPort, p))
		}
	}
	for _, p := range append(slices.Clone(h.Cgroups.Include), h.Cgroups.Exclude...) {
		if !strings.HasPrefix(p, "/") {
			errs = append(errs, fmt.Errorf("%w, got %q", errCgroupPrefix, p))
		}
	}
	return errors.Join(errs...)
}

// allows reports whether the filter selects port.
func (f PortFilter) allows(port uint16) bool {
	p := int(port)
	if slices.Contains(f.Exclude, p) {
		return false
	}
	return len(f.Include) == 0 || slices.Contains(f.Include, p)
}

// CgroupFilter selects cgroup paths by prefix.
type CgroupFilter struct {
	Include []string `mapstructure:"include"`
	Exclude []string `mapstructure:"exclude"`
}

// allows reports whether the filter selects a cgroup path; an unknown path
// is selected only when nothing is included explicitly.
func (f CgroupFilter) allows(path string, known bool) bool {
	under := func(prefix string) bool { return known && strings.HasPrefix(path, prefix) }
	if slices.ContainsFunc(f.Exclude, under) {
		return false
	}
	return len(f.Include) == 0 || slices.ContainsFunc(f.Include, under)
}

// PortFilter selects ports.
type PortFilter struct {
	Include []int `mapstructure:"include"`
	Exclude []int `mapstructure:"exclude"`
}
