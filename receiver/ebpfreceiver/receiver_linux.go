package ebpfreceiver

import (
	"context"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	c := cfg.(*Config)
	s := &metricsScraper{cfg: c, set: set}
	sc, err := scraper.NewMetrics(s.scrape, scraper.WithStart(s.start), scraper.WithShutdown(s.shutdown))
	if err != nil {
		return nil, err
	}
	return scraperhelper.NewMetricsController(&c.ControllerConfig, set, next,
		scraperhelper.AddMetricsScraper(metadata.Type, sc))
}

// metricsScraper reads the kernel maps at each collection interval.
type metricsScraper struct {
	cfg  *Config
	set  receiver.Settings
	core *core
	mb   *metadata.MetricsBuilder
	coll collector
	tcp  *tcpBuilder
	snap tcpconn.Snapshot
	lost tcpconn.Lost
	// kernel holds the sources read from a kernel snapshot at each
	// collection, whose removed cgroups are deleted once exported.
	kernel []kernelSource
}

// kernelSource is a source whose data is a snapshot of kernel maps kept per
// cgroup.
type kernelSource interface {
	source
	load() error
	// takeStale returns the removed cgroups exported since the last call.
	takeStale() []uint64
	deleteCgroups(ids []uint64) error
}

func (s *metricsScraper) start(context.Context, component.Host) error {
	c, err := acquireCore(s.cfg, s.set.Logger)
	if err != nil {
		return err
	}
	s.core = c
	start := pcommon.NewTimestampFromTime(time.Now())
	s.mb = metadata.NewMetricsBuilder(s.cfg.MetricsBuilderConfig, s.set, metadata.WithStartTime(start))
	s.coll = collector{mb: s.mb, res: resources{rac: s.cfg.ResourceAttributes, paths: c.cgroups, hostName: c.hostName, nodeName: c.nodeName}}
	if c.tcp != nil {
		s.tcp = newTCPBuilder(s.mb, start, s.cfg.TCP, c.cgroups.IsRemoved)
		s.coll.sources = append(s.coll.sources, s.tcp)
	}
	if c.http != nil {
		s.coll.sources = append(s.coll.sources, httpSource{p: c.http, mb: s.mb, removed: c.cgroups.IsRemoved})
	}
	if c.sched != nil {
		s.kernel = append(s.kernel, newSchedSource(c.sched, s.mb, start, s.cfg.Sched, c.cgroups.IsRemoved))
	}
	if c.proc != nil {
		s.kernel = append(s.kernel, &processSource{tracer: c.proc, logs: c.procLogs, mb: s.mb,
			capacity: int64(s.cfg.Process.MaxSeries), removed: c.cgroups.IsRemoved})
	}
	if c.disk != nil {
		s.kernel = append(s.kernel, newDiskSource(c.disk, s.mb, start, s.cfg.Disk, c.cgroups.IsRemoved))
	}
	for _, k := range s.kernel {
		s.coll.sources = append(s.coll.sources, k)
	}
	return nil
}

func (s *metricsScraper) scrape(context.Context) (pmetric.Metrics, error) {
	if s.tcp != nil {
		if err := s.core.tcp.Snapshot(&s.snap); err != nil {
			return pmetric.NewMetrics(), err
		}
		s.warnLost()
		s.tcp.load(&s.snap)
	}
	for _, k := range s.kernel {
		if err := k.load(); err != nil {
			return pmetric.NewMetrics(), err
		}
	}
	out, err := s.coll.collect(pcommon.NewTimestampFromTime(time.Now()), func(now pcommon.Timestamp) {
		s.recordCapabilities(now)
		s.recordCgroupCache(now)
		s.recordProgramStats(now)
	})
	if err != nil {
		s.set.Logger.Warn("cannot resolve cgroup paths", zap.Error(err))
	}
	if s.tcp != nil {
		if err := s.core.tcp.DeleteFlows(s.tcp.takeStale()); err != nil {
			s.set.Logger.Warn("cannot drop the flows of removed cgroups", zap.Error(err))
		}
	}
	for _, k := range s.kernel {
		if err := k.deleteCgroups(k.takeStale()); err != nil {
			s.set.Logger.Warn("cannot drop the data of removed cgroups", zap.Error(err))
		}
	}
	return out, nil
}

func (s *metricsScraper) warnLost() {
	if s.snap.Lost == s.lost {
		return
	}
	s.set.Logger.Warn("tcp kernel maps are full; see ebpf.tcp.lost",
		zap.Uint64("connections_untracked", s.snap.Lost.ConnsFull-s.lost.ConnsFull),
		zap.Uint64("flow_updates_in_overflow", s.snap.Lost.FlowsFull-s.lost.FlowsFull))
	s.lost = s.snap.Lost
}

func (s *metricsScraper) recordCapabilities(now pcommon.Timestamp) {
	for _, c := range s.core.capabilities {
		if c.err == nil {
			s.mb.RecordEbpfCapabilityEnabledDataPoint(now, 1, c.name, "")
		} else {
			s.mb.RecordEbpfCapabilityEnabledDataPoint(now, 0, c.name, c.err.Error())
		}
	}
}

// recordProgramStats records the kernel's run time and count of every
// program, while the kernel keeps them (kernel.bpf_stats_enabled=1).
func (s *metricsScraper) recordProgramStats(now pcommon.Timestamp) {
	if b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err != nil || strings.TrimSpace(string(b)) != "1" {
		return
	}
	for _, p := range s.core.programs() {
		info, err := p.Info()
		if err != nil {
			continue
		}
		st, err := p.Stats()
		if err != nil {
			continue
		}
		s.mb.RecordEbpfProgramRunTimeDataPoint(now, st.Runtime.Seconds(), info.Name)
		s.mb.RecordEbpfProgramRunsDataPoint(now, int64(st.RunCount), info.Name)
	}
}

func (s *metricsScraper) recordCgroupCache(now pcommon.Timestamp) {
	s.mb.RecordEbpfCgroupsCachedDataPoint(now, int64(s.core.cgroups.Len()))
	if s.core.tracker == nil {
		return
	}
	lost, err := s.core.tracker.Lost()
	if err != nil {
		s.set.Logger.Warn("cannot read lost cgroup events", zap.Error(err))
		return
	}
	s.mb.RecordEbpfCgroupEventsLostDataPoint(now, int64(lost))
}

func (s *metricsScraper) shutdown(context.Context) error {
	if s.core == nil {
		return nil
	}
	s.core = nil
	return releaseCore(s.cfg)
}

func createTraces(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
	obs, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, err
	}
	return &tracesReceiver{cfg: cfg.(*Config), set: set, next: next, obs: obs}, nil
}

// tracesReceiver exports the spans of the shared HTTP capture.
type tracesReceiver struct {
	cfg  *Config
	set  receiver.Settings
	next consumer.Traces
	obs  *receiverhelper.ObsReport
	core *core
}

func (r *tracesReceiver) Start(context.Context, component.Host) error {
	c, err := acquireCore(r.cfg, r.set.Logger)
	if err != nil {
		return err
	}
	r.core = c
	if c.http == nil {
		r.set.Logger.Warn("no spans: http capture is disabled; see the capability log lines")
		return nil
	}
	next, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		ctx = r.obs.StartTracesOp(ctx)
		err := r.next.ConsumeTraces(ctx, td)
		r.obs.EndTracesOp(ctx, metadata.Type.String(), td.SpanCount(), err)
		return err
	})
	if err != nil {
		return err
	}
	c.http.spans.setConsumer(next)
	return nil
}

func (r *tracesReceiver) Shutdown(context.Context) error {
	if r.core == nil {
		return nil
	}
	if r.core.http != nil {
		r.core.http.spans.setConsumer(nil)
	}
	r.core = nil
	return releaseCore(r.cfg)
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	obs, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, err
	}
	return &logsReceiver{cfg: cfg.(*Config), set: set, next: next, obs: obs}, nil
}

// logsReceiver exports the log records of deaths by signal and OOM kills.
type logsReceiver struct {
	cfg  *Config
	set  receiver.Settings
	next consumer.Logs
	obs  *receiverhelper.ObsReport
	core *core
}

func (r *logsReceiver) Start(context.Context, component.Host) error {
	c, err := acquireCore(r.cfg, r.set.Logger)
	if err != nil {
		return err
	}
	r.core = c
	if c.procLogs == nil {
		r.set.Logger.Warn("no logs: process exits are disabled; see the capability log lines")
		return nil
	}
	next, err := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		ctx = r.obs.StartLogsOp(ctx)
		err := r.next.ConsumeLogs(ctx, ld)
		r.obs.EndLogsOp(ctx, metadata.Type.String(), ld.LogRecordCount(), err)
		return err
	})
	if err != nil {
		return err
	}
	lbc := metadata.LogsBuilderConfig{Events: r.cfg.Events, ResourceAttributes: r.cfg.ResourceAttributes}
	c.procLogs.setConsumer(next, lbc, r.set)
	return nil
}

func (r *logsReceiver) Shutdown(context.Context) error {
	if r.core == nil {
		return nil
	}
	if r.core.procLogs != nil {
		r.core.procLogs.setConsumer(nil, metadata.LogsBuilderConfig{}, r.set)
	}
	r.core = nil
	return releaseCore(r.cfg)
}
