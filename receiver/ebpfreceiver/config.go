package ebpfreceiver

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

var (
	errCollectionInterval = errors.New("collection_interval must be at least 100ms; a number without a unit is nanoseconds: write 10s")
	errCgroupRootNotAbs   = errors.New("cgroup_root must be an absolute path")
	errMaxConnections     = errors.New("tcp.max_connections must be between 1 and 4194304")
	errMaxFlows           = errors.New("tcp.max_flows must be between 1 and 1048576")
	errMaxPeers           = errors.New("tcp.max_peers_per_resource must be at least 1")
	errRTTSampleInterval  = errors.New("tcp.rtt_sample_interval must not be negative")
	errCaptureBytes       = errors.New("http.capture_bytes must be between 64 and 512")
	errHTTPConnections    = errors.New("http.max_connections must be between 1 and 1048576")
	errMaxRoutes          = errors.New("http.max_routes_per_resource must be at least 1")
	errLinkWindow         = errors.New("http.link_window must be between 0 and 1m")
	errMaxPendingSpans    = errors.New("http.max_pending_spans must be between 1 and 1048576")
	errPort               = errors.New("http.ports: a port must be between 1 and 65535")
	errCgroupPrefix       = errors.New("http.cgroups: a prefix must start with /")
	errSchedCgroups       = errors.New("sched.max_cgroups must be between 1 and 1048576")
	errProcessSeries      = errors.New("process.max_series must be between 1 and 1048576")
	errLogsPerSecond      = errors.New("process.logs_per_second must be between 1 and 100000")
	errDiskSeries         = errors.New("disk.max_series must be between 1 and 1048576")
	errDiskInflight       = errors.New("disk.max_inflight must be between 1 and 1048576")
)

const (
	minCollectionInterval = 100 * time.Millisecond
	maxConnectionsLimit   = 1 << 22
	maxFlowsLimit         = 1 << 20
	maxHTTPConnsLimit     = 1 << 20
	maxPendingLimit       = 1 << 20
	maxLinkWindow         = time.Minute
	maxSeriesLimit        = 1 << 20
	maxLogsPerSecond      = 100000
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

	// HTTP configures HTTP/1.x tracing and RED metrics.
	HTTP HTTPConfig `mapstructure:"http"`

	// Sched configures the scheduler metrics: on-CPU time, involuntary
	// switches and run-queue latency.
	Sched SchedConfig `mapstructure:"sched"`

	// Process configures the counts and log records of failed exits,
	// deaths by signal and OOM kills.
	Process ProcessConfig `mapstructure:"process"`

	// Disk configures the block I/O metrics.
	Disk DiskConfig `mapstructure:"disk"`

	// Events turns each log record (event) on or off.
	Events metadata.EventsConfig `mapstructure:"events"`

	// tcpAttachTo renames the tracepoints of tcpconn programs. Tests use it
	// to make a hook missing for real; it cannot be configured.
	tcpAttachTo map[string]string
	// tcpRejectProgram names a tcpconn program that the verifier is made to
	// reject, and httpKernelBTF a BTF file for httptrace's CO-RE. Tests use
	// them to force those failures for real; they cannot be configured.
	tcpRejectProgram string
	httpKernelBTF    string
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
}

// HTTPConfig configures HTTP/1.x tracing and RED metrics.
type HTTPConfig struct {
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
}

// SchedConfig configures the scheduler metrics.
type SchedConfig struct {
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

// ProcessConfig configures the process exit and OOM kill data.
type ProcessConfig struct {
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

// DiskConfig configures the block I/O metrics.
type DiskConfig struct {
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
		HTTP: HTTPConfig{
			Enabled:              true,
			CaptureBytes:         256,
			MaxConnections:       16384,
			MaxRoutesPerResource: 100,
			LinkWindow:           time.Second,
			MaxPendingSpans:      65536,
		},
		Sched:   SchedConfig{Enabled: true, MaxCgroups: 8192, RunQueueHistogram: true},
		Process: ProcessConfig{Enabled: true, MaxSeries: 4096, LogsPerSecond: 50},
		Disk:    DiskConfig{Enabled: true, MaxSeries: 4096, MaxInflight: 16384, LatencyHistogram: true},
		Events:  metadata.DefaultEventsConfig(),
	}
}

// Validate returns every problem with the configuration at once.
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
	errs = append(errs, cfg.HTTP.validate()...)
	if n := cfg.Sched.MaxCgroups; n < 1 || n > maxSeriesLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errSchedCgroups, n))
	}
	if n := cfg.Process.MaxSeries; n < 1 || n > maxSeriesLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errProcessSeries, n))
	}
	if n := cfg.Process.LogsPerSecond; n < 1 || n > maxLogsPerSecond {
		errs = append(errs, fmt.Errorf("%w, got %d", errLogsPerSecond, n))
	}
	if n := cfg.Disk.MaxSeries; n < 1 || n > maxSeriesLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errDiskSeries, n))
	}
	if n := cfg.Disk.MaxInflight; n < 1 || n > maxSeriesLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errDiskInflight, n))
	}
	return errors.Join(errs...)
}

func (h HTTPConfig) validate() []error {
	var errs []error
	if h.CaptureBytes < 64 || h.CaptureBytes > 512 {
		errs = append(errs, fmt.Errorf("%w, got %d", errCaptureBytes, h.CaptureBytes))
	}
	if h.MaxConnections < 1 || h.MaxConnections > maxHTTPConnsLimit {
		errs = append(errs, fmt.Errorf("%w, got %d", errHTTPConnections, h.MaxConnections))
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
	return errs
}

// allows reports whether the filter selects port.
func (f PortFilter) allows(port uint16) bool {
	p := int(port)
	if slices.Contains(f.Exclude, p) {
		return false
	}
	return len(f.Include) == 0 || slices.Contains(f.Include, p)
}
