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
	sources []source
	// capabilities holds every capability's status, in a stable order.
	capabilities []capability
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
		progs = append(progs, src.kernel().Programs()...)
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
		errs = append(errs, src.close())
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

	env := sourceEnv{res: c.resources(cfg), logger: logger}
	for _, load := range sources {
		src, caps, err := load(cfg, env)
		if err != nil {
			c.close()
			return nil, err
		}
		if src != nil {
			c.sources = append(c.sources, src)
		}
		c.capabilities = append(c.capabilities, caps...)
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

// resources builds the Resources of cfg's data.
func (c *core) resources(cfg *Config) resources {
	return resources{rac: cfg.ResourceAttributes, paths: c.cgroups, hostName: c.hostName, nodeName: c.nodeName}
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
