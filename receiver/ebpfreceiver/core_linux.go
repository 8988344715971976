package ebpfreceiver

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/cgrouptrack"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/disksource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/processsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/schedsource"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/tcpsource"
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
	// sources holds the loaded capabilities, in the order of the registry.
	sources []source.Source
	// capabilities holds every capability's status, in a stable order.
	capabilities []source.Capability
}

// loader loads one capability: the source is nil when nothing of it runs,
// the capabilities are the status of each of its parts, and the error says
// why a required capability cannot run.
type loader func(env source.Env) (source.Source, []source.Capability, error)

// sources is the registry of capabilities, in the order they load and
// report: each binds its package's Load to its config block.
func (cfg *Config) sources() []loader {
	return []loader{
		bind(tcpsource.Load, cfg.TCP),
		bind(httpsource.Load, cfg.HTTP),
		bind(schedsource.Load, cfg.Sched),
		bind(processsource.Load, cfg.Process),
		bind(disksource.Load, cfg.Disk),
	}
}

func bind[C any](load func(C, source.Env) (source.Source, []source.Capability, error), cfg C) loader {
	return func(env source.Env) (source.Source, []source.Capability, error) { return load(cfg, env) }
}

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
	for _, src := range c.sources {
		progs = append(progs, src.Kernel().Programs()...)
	}
	return progs
}

func (c *core) close() error {
	var errs []error
	if c.tracker != nil {
		errs = append(errs, c.tracker.Close())
		<-c.done
	}
	for _, src := range c.sources {
		errs = append(errs, src.Close())
	}
	return errors.Join(errs...)
}

// followCgroups keeps the resolver's paths current until the tracker closes.
func (c *core) followCgroups(logger *zap.Logger) {
	defer close(c.done)
	source.ReadEach(c.tracker.Read, logger, "cgroup event", func(e *cgrouptrack.Event) {
		switch e.Op {
		case cgrouptrack.OpMkdir:
			c.cgroups.Learn(e.ID, e.Path)
		case cgrouptrack.OpRmdir:
			c.cgroups.MarkRemoved(e.ID)
		}
	})
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

	tracking := source.Capability{Name: "cgroup_tracking", Hooks: cgrouptrack.Hooks}
	if c.tracker, tracking.Err = cgrouptrack.Load(cgrouptrack.Options{}); tracking.Err == nil {
		c.done = make(chan struct{})
		go c.followCgroups(logger)
	}
	c.capabilities = append(c.capabilities, tracking)

	env := source.Env{Resources: c.resources(cfg), Logger: logger}
	for _, load := range cfg.sources() {
		src, caps, err := load(env)
		if err != nil {
			c.close()
			return nil, err
		}
		if src != nil {
			c.sources = append(c.sources, src)
		}
		c.capabilities = append(c.capabilities, caps...)
	}
	// One line for the enabled and one message per disabled capability: the
	// collector's logger drops repeats of a message past 10 a second.
	var enabled []string
	for _, cp := range c.capabilities {
		if cp.Err == nil {
			enabled = append(enabled, cp.Name)
			continue
		}
		logger.Warn("capability disabled: "+cp.Name, zap.String("capability", cp.Name),
			zap.Strings("hooks", cp.Hooks), zap.String("reason", cp.Err.Error()))
	}
	logger.Info("capabilities enabled", zap.Strings("capabilities", enabled))
	return c, nil
}

// nodeNameEnv names the variable that carries the Kubernetes node name; the
// DaemonSet sets it from the downward API's spec.nodeName.
const nodeNameEnv = "K8S_NODE_NAME"

// resources builds the Resources of cfg's data.
func (c *core) resources(cfg *Config) source.Resources {
	return source.Resources{Attributes: cfg.ResourceAttributes, Paths: c.cgroups, HostName: c.hostName, NodeName: c.nodeName}
}

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
