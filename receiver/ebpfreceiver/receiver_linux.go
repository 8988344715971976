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

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
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
	coll source.Collector
}

func (s *metricsScraper) start(context.Context, component.Host) error {
	c, err := acquireCore(s.cfg, s.set.Logger)
	if err != nil {
		return err
	}
	s.core = c
	start := pcommon.NewTimestampFromTime(time.Now())
	s.mb = metadata.NewMetricsBuilder(s.cfg.MetricsBuilderConfig, s.set, metadata.WithStartTime(start))
	s.coll = source.Collector{MB: s.mb, Resources: c.resources(s.cfg)}
	env := source.MetricsEnv{MB: s.mb, Start: start, Removed: c.cgroups.IsRemoved, Logger: s.set.Logger}
	for _, src := range c.sources {
		s.coll.Parts = append(s.coll.Parts, src.NewMetrics(env))
	}
	return nil
}

func (s *metricsScraper) scrape(context.Context) (pmetric.Metrics, error) {
	for _, p := range s.coll.Parts {
		if err := p.Snapshot(); err != nil {
			return pmetric.NewMetrics(), err
		}
	}
	out, err := s.coll.Collect(pcommon.NewTimestampFromTime(time.Now()), func(now pcommon.Timestamp) {
		s.recordCapabilities(now)
		s.recordCgroupCache(now)
		s.recordProgramStats(now)
	})
	if err != nil {
		s.set.Logger.Warn("cannot resolve cgroup paths", zap.Error(err))
	}
	for _, p := range s.coll.Parts {
		if err := p.DropStale(); err != nil {
			s.set.Logger.Warn("cannot drop the data of removed cgroups", zap.Error(err))
		}
	}
	return out, nil
}

func (s *metricsScraper) recordCapabilities(now pcommon.Timestamp) {
	for _, c := range s.core.capabilities {
		if c.Err == nil {
			s.mb.RecordEbpfCapabilityEnabledDataPoint(now, 1, c.Name, "")
		} else {
			s.mb.RecordEbpfCapabilityEnabledDataPoint(now, 0, c.Name, c.Err.Error())
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
	obs, err := newObsReport(set)
	if err != nil {
		return nil, err
	}
	traces, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		ctx = obs.StartTracesOp(ctx)
		err := next.ConsumeTraces(ctx, td)
		obs.EndTracesOp(ctx, metadata.Type.String(), td.SpanCount(), err)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pushReceiver{cfg: cfg.(*Config), set: set, signal: "spans", connect: func(src source.Source, on bool) bool {
		s, ok := src.(source.SpansSource)
		if ok {
			var pipeline consumer.Traces
			if on {
				pipeline = traces
			}
			s.SetTracesConsumer(pipeline)
		}
		return ok
	}}, nil
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	obs, err := newObsReport(set)
	if err != nil {
		return nil, err
	}
	logs, err := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		ctx = obs.StartLogsOp(ctx)
		err := next.ConsumeLogs(ctx, ld)
		obs.EndLogsOp(ctx, metadata.Type.String(), ld.LogRecordCount(), err)
		return err
	})
	if err != nil {
		return nil, err
	}
	c := cfg.(*Config)
	lbc := metadata.LogsBuilderConfig{Events: c.Events, ResourceAttributes: c.ResourceAttributes}
	return &pushReceiver{cfg: c, set: set, signal: "logs", connect: func(src source.Source, on bool) bool {
		s, ok := src.(source.LogsSource)
		if ok {
			var pipeline consumer.Logs
			if on {
				pipeline = logs
			}
			s.SetLogsConsumer(pipeline, lbc, set)
		}
		return ok
	}}, nil
}

func newObsReport(set receiver.Settings) (*receiverhelper.ObsReport, error) {
	return receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		ReceiverCreateSettings: set,
	})
}

// pushReceiver exports a signal that sources push as the kernel reports
// it: the spans or the log records of the shared core.
type pushReceiver struct {
	cfg    *Config
	set    receiver.Settings
	signal string
	// connect hands the signal's pipeline to src (on) or takes it back, and
	// reports whether src exports the signal.
	connect func(src source.Source, on bool) bool
	core    *core
}

func (r *pushReceiver) Start(context.Context, component.Host) error {
	c, err := acquireCore(r.cfg, r.set.Logger)
	if err != nil {
		return err
	}
	r.core = c
	connected := 0
	for _, src := range c.sources {
		if r.connect(src, true) {
			connected++
		}
	}
	if connected == 0 {
		r.set.Logger.Warn("no " + r.signal + ": no enabled capability exports them; see the capability log lines")
	}
	return nil
}

func (r *pushReceiver) Shutdown(context.Context) error {
	if r.core == nil {
		return nil
	}
	for _, src := range r.core.sources {
		r.connect(src, false)
	}
	r.core = nil
	return releaseCore(r.cfg)
}
