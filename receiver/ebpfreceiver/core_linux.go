package ebpfreceiver

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/blockio"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/cgrouptrack"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/httptrace"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/procexit"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
)

// core is the kernel side of one receiver config: loaded once, however many
// signals and pipelines use it, and closed when the last one shuts down.
type core struct {
	refs     int
	cgroups  *cgroup.Resolver
	hostName string
	nodeName string
	// tracker feeds cgroup paths to cgroups as cgroups are made; nil when
	// it could not load, and paths then come from scanning alone.
	tracker *cgrouptrack.Tracer
	done    chan struct{}
	// tcp is nil when the TCP metrics are disabled.
	tcp *tcpconn.Tracer
	// http is nil when HTTP capture is disabled.
	http *httpPipeline
	// sched is nil when the scheduler metrics are disabled.
	sched *schedstat.Tracer
	// proc and procLogs are nil when process exits are disabled.
	proc     *procexit.Tracer
	procLogs *processLogs
	// disk is nil when the block I/O metrics are disabled.
	disk *blockio.Tracer
	// capabilities holds every capability's status, in a stable order.
	capabilities []capability
}

// capability is one thing the receiver measures; err says why it is off.
type capability struct {
	name  string
	hooks []string
	err   error
}

var errDisabledInConfig = errors.New("disabled in the configuration")

var (
	coresMu sync.Mutex
	cores   = make(map[*Config]*core)
)

func acquireCore(cfg *Config, logger *zap.Logger) (*core, error) {
	coresMu.Lock()
	defer coresMu.Unlock()
	if c, ok := cores[cfg]; ok {
		c.refs++
		return c, nil
	}
	c, err := loadCore(cfg, logger)
	if err != nil {
		return nil, err
	}
	c.refs = 1
	cores[cfg] = c
	return c, nil
}

func releaseCore(cfg *Config) error {
	coresMu.Lock()
	defer coresMu.Unlock()
	c, ok := cores[cfg]
	if !ok {
		return nil
	}
	if c.refs--; c.refs > 0 {
		return nil
	}
	delete(cores, cfg)
	return c.close()
}

// programs returns every loaded program.
func (c *core) programs() []*ebpf.Program {
	var progs []*ebpf.Program
	if c.tracker != nil {
		progs = append(progs, c.tracker.Programs()...)
	}
	if c.tcp != nil {
		progs = append(progs, c.tcp.Programs()...)
	}
	if c.http != nil {
		progs = append(progs, c.http.tracer.Programs()...)
	}
	if c.sched != nil {
		progs = append(progs, c.sched.Programs()...)
	}
	if c.proc != nil {
		progs = append(progs, c.proc.Programs()...)
	}
	if c.disk != nil {
		progs = append(progs, c.disk.Programs()...)
	}
	return progs
}

func (c *core) close() error {
	var errs []error
	if c.tracker != nil {
		errs = append(errs, c.tracker.Close())
		<-c.done
	}
	if c.tcp != nil {
		errs = append(errs, c.tcp.Close())
	}
	if c.http != nil {
		errs = append(errs, c.http.tracer.Close())
		c.http.close()
	}
	if c.sched != nil {
		errs = append(errs, c.sched.Close())
	}
	if c.proc != nil {
		errs = append(errs, c.proc.Close())
		c.procLogs.close()
	}
	if c.disk != nil {
		errs = append(errs, c.disk.Close())
	}
	return errors.Join(errs...)
}

// followCgroups keeps the resolver's paths current until the tracker closes.
func (c *core) followCgroups(logger *zap.Logger) {
	defer close(c.done)
	var e cgrouptrack.Event
	for {
		err := c.tracker.Read(&e)
		switch {
		case errors.Is(err, os.ErrClosed):
			return
		case err != nil:
			logger.Warn("bad cgroup event", zap.Error(err))
		case e.Op == cgrouptrack.OpMkdir:
			c.cgroups.Learn(e.ID, e.Path)
		case e.Op == cgrouptrack.OpRmdir:
			c.cgroups.MarkRemoved(e.ID)
		}
	}
}

func loadCore(cfg *Config, logger *zap.Logger) (*core, error) {
	if err := checkCapabilities(); err != nil {
		return nil, err
	}
	// Kernels from 5.11 on charge BPF memory to the cgroup and ignore the
	// rlimit; older ones need it raised. Failing to raise it is not fatal.
	if err := rlimit.RemoveMemlock(); err != nil {
		logger.Debug("cannot raise RLIMIT_MEMLOCK", zap.Error(err))
	}
	resolver, err := cgroup.NewResolver(cfg.CgroupRoot)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("host name: %w", err)
	}
	c := &core{cgroups: resolver, hostName: host, nodeName: os.Getenv(nodeNameEnv)}

	tracking := capability{name: "cgroup_tracking", hooks: cgrouptrack.Hooks}
	if c.tracker, tracking.err = cgrouptrack.Load(cgrouptrack.Options{}); tracking.err == nil {
		c.done = make(chan struct{})
		go c.followCgroups(logger)
	}
	c.capabilities = append(c.capabilities, tracking)

	if err := c.loadTCP(cfg); err != nil {
		c.close()
		return nil, err
	}
	for _, load := range []func(*Config, *zap.Logger) error{c.loadHTTP, c.loadSched, c.loadProcess, c.loadDisk} {
		if err := load(cfg, logger); err != nil {
			c.close()
			return nil, err
		}
	}
	for _, cp := range c.capabilities {
		if cp.err == nil {
			logger.Info("capability enabled", zap.String("capability", cp.name), zap.Strings("hooks", cp.hooks))
		} else {
			logger.Warn("capability disabled", zap.String("capability", cp.name),
				zap.Strings("hooks", cp.hooks), zap.String("reason", cp.err.Error()))
		}
	}
	return c, nil
}

// loadTCP loads the TCP metrics and records the status of each of their
// parts. It fails only when they are required and a part cannot run.
func (c *core) loadTCP(cfg *Config) error {
	hooks := tcpconn.Hooks()
	if !cfg.TCP.Enabled {
		for _, part := range tcpconn.Parts() {
			c.capabilities = append(c.capabilities, capability{name: part, hooks: hooks[part], err: errDisabledInConfig})
		}
		return nil
	}
	tr, err := tcpconn.Load(tcpconn.Options{
		MaxConnections:    uint32(cfg.TCP.MaxConnections),
		MaxFlows:          uint32(cfg.TCP.MaxFlows),
		RTTSampleInterval: cfg.TCP.RTTSampleInterval,
		AttachTo:          cfg.tcpAttachTo,
		RejectProgram:     cfg.tcpRejectProgram,
	})
	disabled := make(map[string]error)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			err = fmt.Errorf("%w: loading eBPF programs needs CAP_BPF and CAP_PERFMON", err)
		}
		for _, part := range tcpconn.Parts() {
			disabled[part] = err
		}
	} else {
		c.tcp = tr
		disabled = tr.Disabled()
	}
	for _, part := range tcpconn.Parts() {
		err := disabled[part]
		if err != nil && cfg.TCP.Required {
			return fmt.Errorf("tcp metrics are required but %s cannot run on %s: %w",
				part, strings.Join(hooks[part], ", "), err)
		}
		c.capabilities = append(c.capabilities, capability{name: part, hooks: hooks[part], err: err})
	}
	return nil
}

// loadHTTP starts HTTP capture. It fails only when HTTP is required and
// cannot run.
func (c *core) loadHTTP(cfg *Config, logger *zap.Logger) error {
	cp := capability{name: "http", hooks: httptrace.Hooks}
	defer func() { c.capabilities = append(c.capabilities, cp) }()
	if !cfg.HTTP.Enabled {
		cp.err = errDisabledInConfig
		return nil
	}
	opts := httptrace.Options{
		CaptureBytes: uint32(cfg.HTTP.CaptureBytes),
		PollInterval: httpPollInterval,
		KernelBTF:    cfg.httpKernelBTF,
	}
	if !cfg.HTTP.TraceSelf {
		opts.IgnorePID = uint32(os.Getpid())
		opts.IgnoreItsCgroup = cgroup.SelfInContainer()
	}
	tr, err := httptrace.Load(opts)
	if err != nil {
		cp.err = err
		if cfg.HTTP.Required {
			return fmt.Errorf("http is required but cannot run on %s: %w", strings.Join(cp.hooks, ", "), err)
		}
		return nil
	}
	res := resources{rac: cfg.ResourceAttributes, paths: c.cgroups, hostName: c.hostName, nodeName: c.nodeName}
	c.http = newHTTPPipeline(tr, cfg.HTTP, res, logger)
	return nil
}

// loadSched loads the scheduler metrics. It fails only when they are
// required and cannot run.
func (c *core) loadSched(cfg *Config, _ *zap.Logger) error {
	cp := capability{name: "sched", hooks: schedstat.Hooks}
	defer func() { c.capabilities = append(c.capabilities, cp) }()
	if !cfg.Sched.Enabled {
		cp.err = errDisabledInConfig
		return nil
	}
	c.sched, cp.err = schedstat.Load(schedstat.Options{MaxCgroups: uint32(cfg.Sched.MaxCgroups)})
	if cp.err != nil && cfg.Sched.Required {
		return fmt.Errorf("sched is required but cannot run on %s: %w", strings.Join(cp.hooks, ", "), cp.err)
	}
	return nil
}

// loadDisk loads the block I/O metrics. It fails only when they are
// required and cannot run.
func (c *core) loadDisk(cfg *Config, _ *zap.Logger) error {
	cp := capability{name: "disk", hooks: blockio.Hooks}
	defer func() { c.capabilities = append(c.capabilities, cp) }()
	if !cfg.Disk.Enabled {
		cp.err = errDisabledInConfig
		return nil
	}
	c.disk, cp.err = blockio.Load(blockio.Options{MaxSeries: uint32(cfg.Disk.MaxSeries), MaxInflight: uint32(cfg.Disk.MaxInflight)})
	if cp.err != nil && cfg.Disk.Required {
		return fmt.Errorf("disk is required but cannot run on %s: %w", strings.Join(cp.hooks, ", "), cp.err)
	}
	return nil
}

// loadProcess loads the process exit and OOM kill hooks and records the
// status of each part. It fails only when they are required and a part
// cannot run.
func (c *core) loadProcess(cfg *Config, logger *zap.Logger) error {
	hooks := procexit.Hooks()
	disabled := make(map[string]error)
	if !cfg.Process.Enabled {
		for _, part := range procexit.Parts() {
			c.capabilities = append(c.capabilities, capability{name: part, hooks: hooks[part], err: errDisabledInConfig})
		}
		return nil
	}
	tr, err := procexit.Load(procexit.Options{
		MaxSeries:     uint32(cfg.Process.MaxSeries),
		LogsPerSecond: uint32(cfg.Process.LogsPerSecond),
		PollInterval:  processPollInterval,
	})
	if err != nil {
		for _, part := range procexit.Parts() {
			disabled[part] = err
		}
	} else {
		c.proc = tr
		disabled = tr.Disabled()
		res := resources{rac: cfg.ResourceAttributes, paths: c.cgroups, hostName: c.hostName, nodeName: c.nodeName}
		c.procLogs = newProcessLogs(tr, res, logger)
	}
	for _, part := range procexit.Parts() {
		err := disabled[part]
		if err != nil && cfg.Process.Required {
			return fmt.Errorf("process exits are required but %s cannot run on %s: %w",
				part, strings.Join(hooks[part], ", "), err)
		}
		c.capabilities = append(c.capabilities, capability{name: part, hooks: hooks[part], err: err})
	}
	return nil
}

// processPollInterval bounds how long a process record waits in the
// kernel's ring buffer before the receiver reads it.
const processPollInterval = 100 * time.Millisecond

// httpPollInterval is how long the idle HTTP reader waits for the kernel's
// wakeup before it looks anyway: 10 looks a second on an idle node. While
// records come, it looks every httptrace.MinPollInterval.
const httpPollInterval = 100 * time.Millisecond

// checkCapabilities names the capabilities the process lacks to load and
// attach tracing programs.
func checkCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read process capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var missing []string
	if !has(unix.CAP_BPF) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(unix.CAP_PERFMON) {
		missing = append(missing, "CAP_PERFMON")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the ebpf receiver needs root or the capabilities %s, which this process lacks",
			strings.Join(missing, " and "))
	}
	return nil
}
