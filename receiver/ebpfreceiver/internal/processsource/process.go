//go:build linux

package processsource

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/procexit"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

const (
	// logsFlush is the longest a log record waits before it is
	// handed to the logs pipeline.
	logsFlush = 200 * time.Millisecond
	// maxPendingLogs bounds the records waiting for the logs pipeline;
	// past it they are counted as refused.
	maxPendingLogs = 8192
)

// signalName names a signal as its C constant does: SIGSEGV, SIGKILL, SIG34.
func signalName(sig uint8) string {
	if name := unix.SignalName(unix.Signal(sig)); name != "" {
		return name
	}
	return fmt.Sprintf("SIG%d", sig)
}

// pollInterval bounds how long a process record waits in the
// kernel's ring buffer before the receiver reads it.
const pollInterval = 100 * time.Millisecond

// Load loads the process exit and OOM kill hooks and records the status of
// each part.
func Load(cfg Config, env source.Env) (source.Source, []source.Capability, error) {
	tr, caps, err := source.LoadParts("process", procexit.Hooks, procexit.Parts(), cfg.Enabled, cfg.Required, func() (*procexit.Tracer, error) {
		return procexit.Load(procexit.Options{
			MaxSeries:     uint32(cfg.MaxSeries),
			LogsPerSecond: uint32(cfg.LogsPerSecond),
			PollInterval:  pollInterval,
		})
	})
	if tr == nil {
		return nil, caps, err
	}
	return &Source{tracer: tr, cfg: cfg, logs: newLogs(tr, env.Resources, env.Logger)}, caps, nil
}

// Source is the loaded process capability.
type Source struct {
	tracer *procexit.Tracer
	cfg    Config
	logs   *logs
}

func (s *Source) Kernel() source.KernelObjects { return s.tracer }

func (s *Source) Close() error {
	err := s.tracer.Close()
	s.logs.close()
	return err
}

func (s *Source) NewMetrics(env source.MetricsEnv) source.MetricsPart {
	return &metrics{tracer: s.tracer, logs: s.logs, mb: env.MB, capacity: int64(s.cfg.MaxSeries), removed: env.Removed}
}

func (s *Source) SetLogsConsumer(next consumer.Logs, cfg metadata.LogsBuilderConfig, set receiver.Settings) {
	s.logs.setConsumer(next, cfg, set)
}

// metrics records the failed exits and OOM kills of each cgroup.
type metrics struct {
	tracer   *procexit.Tracer
	logs     *logs
	mb       *metadata.MetricsBuilder
	capacity int64
	removed  func(id uint64) bool
	snap     procexit.Snapshot
	byCgroup map[uint64][]procexit.ExitKey
	stale    source.StaleKeys[uint64]
}

func (s *metrics) Snapshot() error {
	if err := s.tracer.Snapshot(&s.snap); err != nil {
		return err
	}
	s.index()
	return nil
}

// index groups the snapshot's series by cgroup.
func (s *metrics) index() {
	s.byCgroup = source.ByCgroup(s.snap.Exits, func(k procexit.ExitKey) uint64 { return k.CgroupId })
	for id := range s.snap.OOMKills {
		if _, ok := s.byCgroup[id]; !ok {
			s.byCgroup[id] = nil
		}
	}
}

func (s *metrics) Cgroups(yield func(uint64) bool) {
	for id := range s.byCgroup {
		if !yield(id) {
			return
		}
	}
}

func (s *metrics) Record(id uint64, now pcommon.Timestamp, _ pmetric.MetricSlice) {
	keys, ok := s.byCgroup[id]
	if !ok {
		return
	}
	slices.SortFunc(keys, func(a, b procexit.ExitKey) int {
		return cmp.Or(cmp.Compare(a.Status, b.Status), cmp.Compare(a.Signal, b.Signal))
	})
	for _, k := range keys {
		var signal string
		if k.Signal != 0 {
			signal = signalName(k.Signal)
		}
		s.mb.RecordProcessExitsDataPoint(now, int64(s.snap.Exits[k]), int64(k.Status), signal, false)
	}
	if n, ok := s.snap.OOMKills[id]; ok {
		s.mb.RecordProcessOomKillsDataPoint(now, int64(n), false)
	}
	if s.removed(id) {
		s.stale.Add(id)
	}
}

func (s *metrics) RecordNode(now pcommon.Timestamp, _ pmetric.MetricSlice) {
	if n := s.snap.Overflow.Exits; n > 0 {
		s.mb.RecordProcessExitsDataPoint(now, int64(n), 0, "", true)
	}
	if n := s.snap.Overflow.OOMKills; n > 0 {
		s.mb.RecordProcessOomKillsDataPoint(now, int64(n), true)
	}
	lost := s.snap.Lost
	s.mb.RecordEbpfProcessLostDataPoint(now, int64(lost.SeriesFull), metadata.AttributeEbpfLostReasonSeriesMapFull)
	s.mb.RecordEbpfProcessLostDataPoint(now, int64(lost.RateLimited), metadata.AttributeEbpfLostReasonRateLimited)
	s.mb.RecordEbpfProcessLostDataPoint(now, int64(lost.RingbufFull), metadata.AttributeEbpfLostReasonRingBufferFull)
	events, refused := s.logs.counts()
	s.mb.RecordEbpfProcessLostDataPoint(now, int64(refused), metadata.AttributeEbpfLostReasonLogsRefused)
	s.mb.RecordEbpfProcessEventsDataPoint(now, int64(events))
	source.RecordMapFill(s.mb, now, int64(len(s.snap.Exits)), s.capacity, metadata.AttributeEbpfMapProcessExits)
	source.RecordMapFill(s.mb, now, int64(len(s.snap.OOMKills)), s.capacity, metadata.AttributeEbpfMapProcessOomKills)
}

func (s *metrics) DropStale() error { return s.stale.Drop(s.tracer.DeleteCgroups) }

// logs turns the kernel's death-by-signal and OOM kill records into
// log records, batched for at most logsFlush.
type logs struct {
	tracer *procexit.Tracer
	res    source.Resources
	logger *zap.Logger
	// bootNS turns the kernel's monotonic timestamps into wall time.
	bootNS int64

	mu      sync.Mutex // guards what follows
	next    consumer.Logs
	lb      *metadata.LogsBuilder
	pending []procexit.Event
	events  uint64 // records read from the kernel
	refused uint64 // log records not delivered

	stop chan struct{}
	done sync.WaitGroup
}

func newLogs(tr *procexit.Tracer, res source.Resources, logger *zap.Logger) *logs {
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	l := &logs{
		tracer: tr,
		res:    res,
		logger: logger,
		bootNS: time.Now().UnixNano() - mono.Nano(),
		stop:   make(chan struct{}),
	}
	l.done.Add(2)
	go l.read()
	go l.flushLoop()
	return l
}

// setConsumer starts (next != nil) or stops delivering log records.
func (l *logs) setConsumer(next consumer.Logs, cfg metadata.LogsBuilderConfig, set receiver.Settings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next = next
	l.pending = nil
	l.lb = nil
	if next != nil {
		l.lb = metadata.NewLogsBuilder(cfg, set)
	}
}

func (l *logs) counts() (events, refused uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events, l.refused
}

func (l *logs) read() {
	defer l.done.Done()
	source.ReadEach(l.tracer.Read, l.logger, "process record", func(e *procexit.Event) {
		l.mu.Lock()
		l.events++
		switch {
		case l.next == nil:
		case len(l.pending) >= maxPendingLogs:
			l.refused++
		default:
			l.pending = append(l.pending, *e)
		}
		l.mu.Unlock()
	})
}

func (l *logs) flushLoop() {
	defer l.done.Done()
	tick := time.NewTicker(logsFlush)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			l.flush()
		}
	}
}

// flush builds the pending records, one Resource per cgroup, and hands
// them to the logs pipeline.
func (l *logs) flush() {
	l.mu.Lock()
	next, lb, pending := l.next, l.lb, l.pending
	l.pending = nil
	l.mu.Unlock()
	if next == nil || len(pending) == 0 {
		return
	}
	byCgroup := make(map[uint64][]*procexit.Event)
	for i := range pending {
		e := &pending[i]
		byCgroup[e.CgroupID] = append(byCgroup[e.CgroupID], e)
	}
	_ = l.res.Paths.Resolve(maps.Keys(byCgroup)) // a failure leaves paths out, never records
	ctx := context.Background()
	for _, id := range slices.Sorted(maps.Keys(byCgroup)) {
		for _, e := range byCgroup[id] {
			l.record(ctx, lb, e)
		}
		lb.EmitForResource(metadata.WithLogsResource(l.res.Cgroup(id)))
	}
	logs := lb.Emit()
	describe(logs)
	if err := next.ConsumeLogs(ctx, logs); err != nil {
		l.mu.Lock()
		l.refused += uint64(logs.LogRecordCount())
		l.mu.Unlock()
		l.logger.Debug("logs pipeline refused process records", zap.Error(err))
	}
}

func (l *logs) record(ctx context.Context, lb *metadata.LogsBuilder, e *procexit.Event) {
	ts := pcommon.Timestamp(uint64(l.bootNS + int64(e.Time)))
	switch e.Kind {
	case procexit.KindOOMKill:
		var opts []metadata.EventAttributeOption
		if e.HasFigures {
			const kB = 1024
			opts = append(opts,
				metadata.WithOomMemoryTotalVMEventAttribute(int64(e.TotalVMKB*kB)),
				metadata.WithOomMemoryAnonRssEventAttribute(int64(e.AnonRSSKB*kB)),
				metadata.WithOomMemoryFileRssEventAttribute(int64(e.FileRSSKB*kB)),
				metadata.WithOomMemoryShmemRssEventAttribute(int64(e.ShmemRSSKB*kB)),
				metadata.WithOomMemoryPageTablesEventAttribute(int64(e.PgtablesKB*kB)),
				metadata.WithOomScoreAdjEventAttribute(int64(e.OOMScoreAdj)),
				metadata.WithProcessUserIDEventAttribute(int64(e.UID)))
		}
		lb.RecordProcessOomKillEvent(ctx, ts, int64(e.PID), e.Comm, opts...)
	case procexit.KindSignaled:
		lb.RecordProcessSignalDeathEvent(ctx, ts, int64(e.PID), e.Comm, signalName(e.Signal), e.CoreDumped)
	}
}

// describe gives each record a severity and a one-line body, for log
// backends that show those rather than event names and attributes.
func describe(logs plog.Logs) {
	rls := logs.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				lr := lrs.At(k)
				attrs := lr.Attributes()
				pid, _ := attrs.Get("process.pid")
				comm, _ := attrs.Get("process.executable.name")
				switch lr.EventName() {
				case "process.oom_kill":
					lr.SetSeverityNumber(plog.SeverityNumberError)
					lr.SetSeverityText("ERROR")
					lr.Body().SetStr(fmt.Sprintf("OOM killer killed process %d (%s)", pid.Int(), comm.Str()))
				case "process.signal_death":
					sig, _ := attrs.Get("process.exit.signal")
					core, _ := attrs.Get("process.exit.core_dumped")
					body := fmt.Sprintf("process %d (%s) died by %s", pid.Int(), comm.Str(), sig.Str())
					if core.Bool() {
						body += ", core dumped"
					}
					lr.SetSeverityNumber(plog.SeverityNumberWarn)
					lr.SetSeverityText("WARN")
					lr.Body().SetStr(body)
				}
			}
		}
	}
}

// close stops the loops; the tracer must be closed first, which ends read.
func (l *logs) close() {
	close(l.stop)
	l.done.Wait()
}
