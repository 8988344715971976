package ebpfreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	c := cfg.(*Config)
	s := &tcpScraper{cfg: c, set: set}
	sc, err := scraper.NewMetrics(s.scrape, scraper.WithStart(s.start), scraper.WithShutdown(s.shutdown))
	if err != nil {
		return nil, err
	}
	return scraperhelper.NewMetricsController(&c.ControllerConfig, set, next,
		scraperhelper.AddMetricsScraper(metadata.Type, sc))
}

// tcpScraper reads the TCP flow maps at each collection interval.
type tcpScraper struct {
	cfg     *Config
	set     receiver.Settings
	core    *core
	builder *tcpBuilder
	snap    tcpconn.Snapshot
	lost    tcpconn.Lost
}

func (s *tcpScraper) start(context.Context, component.Host) error {
	c, err := acquireCore(s.cfg, s.set.Logger)
	if err != nil {
		return err
	}
	s.core = c
	start := pcommon.NewTimestampFromTime(time.Now())
	mb := metadata.NewMetricsBuilder(s.cfg.MetricsBuilderConfig, s.set, metadata.WithStartTime(start))
	s.builder = newTCPBuilder(mb, start, c.hostName, s.cfg.TCP)
	return nil
}

func (s *tcpScraper) scrape(context.Context) (pmetric.Metrics, error) {
	if err := s.core.tcp.Snapshot(&s.snap); err != nil {
		return pmetric.NewMetrics(), err
	}
	if err := s.core.cgroups.Refresh(func(yield func(uint64) bool) {
		for f := range s.snap.Flows {
			if f.CgroupId != 0 && !yield(f.CgroupId) {
				return
			}
		}
	}); err != nil {
		// Resources then lack their path, never their data.
		s.set.Logger.Warn("cannot resolve cgroup paths", zap.Error(err))
	}
	if s.snap.Lost != s.lost {
		s.set.Logger.Warn("tcp kernel maps are full; see ebpf.tcp.lost",
			zap.Uint64("connections_untracked", s.snap.Lost.ConnsFull-s.lost.ConnsFull),
			zap.Uint64("flow_updates_in_overflow", s.snap.Lost.FlowsFull-s.lost.FlowsFull))
		s.lost = s.snap.Lost
	}
	return s.builder.build(&s.snap, s.core.cgroups, pcommon.NewTimestampFromTime(time.Now())), nil
}

func (s *tcpScraper) shutdown(context.Context) error {
	if s.core == nil {
		return nil
	}
	s.core = nil
	return releaseCore(s.cfg)
}
