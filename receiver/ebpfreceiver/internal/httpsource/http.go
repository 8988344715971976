//go:build linux

package httpsource

import (
	"bytes"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/l7trace"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

const (
	// httpIdleFlush ends a response whose end could only be inferred once
	// its connection has been quiet this long.
	httpIdleFlush = time.Second
	// httpIdleTimeout evicts a connection whose close was never seen.
	httpIdleTimeout = 2 * time.Minute
)

// pollInterval is how long the idle HTTP reader waits for the kernel's
// wakeup before it looks anyway: 10 looks a second on an idle node. While
// records come, it looks every l7trace.MinPollInterval.
const pollInterval = 100 * time.Millisecond

// Load starts HTTP capture.
func Load(cfg Config, env source.Env) (source.Source, []source.Capability, error) {
	opts := l7trace.Options{
		CaptureBytes: uint32(cfg.CaptureBytes),
		PollInterval: pollInterval,
		KernelBTF:    cfg.Faults.KernelBTF,
	}
	if !cfg.TraceSelf {
		opts.IgnorePID = uint32(os.Getpid())
		opts.IgnoreItsCgroup = cgroup.SelfInContainer()
	}
	tr, caps, err := source.LoadOnePart("http", l7trace.Hooks(), cfg.Enabled, cfg.Required,
		func() (*l7trace.Tracer, error) { return l7trace.Load(opts) })
	if tr == nil {
		return nil, caps, err
	}
	return &Source{tracer: tr, p: newPipeline(tr, cfg, env.Resources, env.Logger)}, caps, nil
}

// Source is the loaded HTTP capability.
type Source struct {
	tracer *l7trace.Tracer
	p      *pipeline
}

func (s *Source) Kernel() source.KernelObjects { return s.tracer }

func (s *Source) Close() error {
	err := s.tracer.Close()
	s.p.close()
	return err
}

func (s *Source) NewMetrics(env source.MetricsEnv) source.MetricsPart {
	return metrics{p: s.p, mb: env.MB, removed: env.Removed}
}

func (s *Source) SetTracesConsumer(next consumer.Traces) { s.p.spans.setConsumer(next) }

// conn is one traced connection.
type conn struct {
	parser   parser // nil when a filter skips the connection
	emit     func(*exchange)
	role     httpflow.Role
	local    netip.AddrPort
	remote   netip.AddrPort
	cgroupID uint64
	pid      uint32
	exe      string // the kernel's name of the executable (comm)
	command  string // argv[0], or exe when the process is gone
	lastSeen time.Time
	flushed  bool // nothing fed since the last idle Flush
	// early holds reads that answer no request seen yet (parser.Early):
	// the request's writer may get to its tracepoint after the answer was
	// read, so the request's record comes after the answer's. They are fed
	// after the connection's next write.
	early []earlyRead
}

// earlyRead is a held record's data.
type earlyRead struct {
	ts   uint64
	size int
	data []byte
}

// maxEarly is the most reads held per connection: more answer no request
// at all, and are fed as they are.
const maxEarly = 4

func (c *conn) feed(dir httpflow.Dir, ts uint64, data []byte, size int) {
	c.parser.Feed(dir, ts, data, size, c.emit)
}

// feedEarly feeds the held reads.
func (c *conn) feedEarly() {
	for _, r := range c.early {
		c.feed(httpflow.Ingress, r.ts, r.data, r.size)
	}
	c.early = c.early[:0]
}

// events is where the pipeline reads records: the kernel's ring buffer, or
// in tests a recording of it.
type events interface {
	// Read blocks until the next record, and returns os.ErrClosed after the
	// last.
	Read(*l7trace.Event) error
	// Counters is the totals of the side that wrote the records.
	Counters() (l7trace.Counters, error)
}

// pipeline is the L7 engine: it reads the kernel's records, parses each
// connection with its protocol's parser, and hands each finished exchange
// to the spans and, for HTTP, to the RED metrics.
type pipeline struct {
	events events
	cfg    Config
	logger *zap.Logger
	// bootNS turns the kernel's monotonic timestamps into wall time.
	bootNS int64
	// monoStart is CLOCK_MONOTONIC at started: the read loop measures
	// delivery with time.Since, which reads the clock through the vDSO
	// where unix.ClockGettime is a real syscall, one that our own hooks see.
	monoStart int64
	started   time.Time

	connsMu sync.Mutex
	conns   map[uint64]*conn
	// clients indexes the parsed client connections by their ends.
	clients map[connKey]uint64
	// locals counts the open connections by their local address: the
	// node's own addresses, as far as they are traced.
	locals map[netip.Addr]int

	res   source.Resources
	red   *redMetrics
	spans *spanQueue

	mu   sync.Mutex // guards the counters below
	lost map[string]uint64
	// stat totals the parsers': Excluded is the OTLP export requests
	// left out.
	stat parserStats
	seen uint64
	// delivery counts, in power-of-two microsecond buckets, how long records
	// took from the kernel's timestamp to the parser.
	delivery [deliveryBuckets]uint64
	delaySum time.Duration

	done chan struct{}
}

func newPipeline(events events, cfg Config, res source.Resources, logger *zap.Logger) *pipeline {
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	p := &pipeline{
		events:    events,
		cfg:       cfg,
		logger:    logger,
		bootNS:    time.Now().UnixNano() - mono.Nano(),
		monoStart: mono.Nano(),
		started:   time.Now(),
		conns:     make(map[uint64]*conn),
		clients:   make(map[connKey]uint64),
		locals:    make(map[netip.Addr]int),
		res:       res,
		red:       newREDMetrics(cfg.MaxRoutesPerResource),
		lost:      make(map[string]uint64),
		done:      make(chan struct{}),
	}
	p.spans = newSpanQueue(cfg, res, p.bootNS, p.countLost, p.clientOf)
	go p.run()
	go p.idle()
	return p
}

// close stops the pipeline once its events have ended.
func (p *pipeline) close() {
	<-p.done
	p.spans.close()
}

// idle flushes quiet connections and forgets those whose close was never
// seen, until the read loop ends.
func (p *pipeline) idle() {
	tick := time.NewTicker(httpIdleFlush / 4)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case now := <-tick.C:
			p.connsMu.Lock()
			for id, c := range p.conns {
				switch quiet := now.Sub(c.lastSeen); {
				case quiet > httpIdleTimeout:
					p.forget(id, c)
				case quiet > httpIdleFlush && c.parser != nil && !c.flushed:
					before := c.parser.Stats()
					c.feedEarly()
					c.parser.Flush(c.emit)
					p.count(before, c.parser.Stats())
					c.flushed = true
				}
			}
			p.connsMu.Unlock()
		}
	}
}

func (p *pipeline) run() {
	defer close(p.done)
	source.ReadEach(p.events.Read, p.logger, "http event", func(e *l7trace.Event) {
		delay := time.Duration(p.monoStart + int64(time.Since(p.started)) - int64(e.TS))
		p.mu.Lock()
		p.seen++
		p.delivery[deliveryBucket(delay)]++
		p.delaySum += delay
		p.mu.Unlock()
		p.connsMu.Lock()
		p.handle(e)
		p.connsMu.Unlock()
	})
}

// handle feeds one event to its connection's parser. connsMu is held.
func (p *pipeline) handle(e *l7trace.Event) {
	c := p.conns[e.Conn]
	if c != nil && (c.local != e.Local || c.remote != e.Remote) {
		// A new socket at the address of one whose close was not seen:
		// that one is gone.
		p.end(e.Conn, c, e.TS)
		c = nil
	}
	if e.Dir == l7trace.DirClose {
		if c != nil {
			p.end(e.Conn, c, e.TS)
		}
		return
	}
	if c == nil {
		if c = p.open(e); c == nil {
			return
		}
		p.conns[e.Conn] = c
		p.locals[c.local.Addr()]++
	}
	c.lastSeen, c.flushed = time.Now(), false
	if c.parser == nil {
		return
	}
	dir, ts := httpflow.Ingress, e.TS
	if e.Dir == l7trace.DirEgress {
		dir = httpflow.Egress
		if c.role == httpflow.Client && e.Start != 0 {
			// A request starts when its write began: the server may read
			// and answer it before the write's record is stamped.
			ts = e.Start
		}
	}
	before := c.parser.Stats()
	switch early := c.parser.Early(dir); {
	case early && len(c.early) < maxEarly:
		c.early = append(c.early, earlyRead{ts: ts, size: int(e.Size), data: bytes.Clone(e.Data)})
	case early:
		c.feedEarly()
		c.feed(dir, ts, e.Data, int(e.Size))
	default:
		c.feed(dir, ts, e.Data, int(e.Size))
		c.feedEarly()
	}
	p.count(before, c.parser.Stats())
}

// open starts tracking the connection of its first event, or returns nil
// when the event cannot tell its role or the table is full. connsMu is
// held.
func (p *pipeline) open(e *l7trace.Event) *conn {
	proto, ok := protocols[e.Protocol]
	if !ok {
		p.countLost(lostUnknownProtocol, 1)
		return nil
	}
	role, ok := proto.roleOf(e)
	if !ok {
		return nil // no captured bytes to tell a request from a response
	}
	if len(p.conns) >= p.cfg.MaxConnections {
		p.countLost(lostConnectionTableFull, 1)
		return nil
	}
	c := &conn{role: role, local: e.Local, remote: e.Remote, cgroupID: e.CgroupID, pid: e.PID,
		exe: e.Comm, command: commandOf(e.PID, e.Comm)}
	serverPort := e.Local.Port()
	if role == httpflow.Client {
		serverPort = e.Remote.Port()
	}
	if p.cfg.Ports.allows(serverPort) && p.cgroupAllowed(e.CgroupID) {
		c.parser = proto.newParser(role, p.cfg)
		c.emit = func(x *exchange) { p.finish(c, x) }
		if role == httpflow.Client {
			p.clients[connKey{c.local, c.remote}] = e.Conn
		}
	}
	return c
}

// finish hands on an exchange of c.
func (p *pipeline) finish(c *conn, x *exchange) {
	x.local, x.remote, x.cgroupID, x.pid, x.exe, x.command = c.local, c.remote, c.cgroupID, c.pid, c.exe, c.command
	if x.protocol == l7trace.ProtocolHTTP1 {
		p.red.add(x)
	}
	p.spans.add(x)
}

// end ends connection id's last exchange at ts and forgets it. connsMu is
// held.
func (p *pipeline) end(id uint64, c *conn, ts uint64) {
	if c.parser != nil {
		before := c.parser.Stats()
		c.feedEarly()
		c.parser.Close(ts, c.emit)
		p.count(before, c.parser.Stats())
	}
	p.forget(id, c)
}

// forget drops connection id. connsMu is held.
func (p *pipeline) forget(id uint64, c *conn) {
	delete(p.conns, id)
	if p.locals[c.local.Addr()]--; p.locals[c.local.Addr()] == 0 {
		delete(p.locals, c.local.Addr())
	}
	if k := (connKey{c.local, c.remote}); p.clients[k] == id {
		delete(p.clients, k)
	}
}

// clientOf tells where the client end of a connection is, local then
// remote.
func (p *pipeline) clientOf(k connKey) clientEnd {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	switch _, ok := p.clients[k]; {
	case ok:
		return clientTraced
	case k.local.Addr().IsLoopback() || p.locals[k.local.Addr()] > 0:
		return clientMaybe
	}
	return clientElsewhere
}

// count adds what a parser step dropped and excluded.
func (p *pipeline) count(before, after parserStats) {
	if before == after {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stat.Dropped += after.Dropped - before.Dropped
	p.stat.Excluded += after.Excluded - before.Excluded
}

// cgroupAllowed applies the cgroup filter to a new connection's owner.
func (p *pipeline) cgroupAllowed(id uint64) bool {
	f := p.cfg.Cgroups
	if len(f.Include) == 0 && len(f.Exclude) == 0 {
		return true
	}
	_ = p.res.Paths.Resolve(slices.Values([]uint64{id})) // unknown stays unknown
	path, known := p.res.Paths.Path(id)
	return f.allows(path, known)
}

// commandOf reads argv[0] of a process, falling back to its executable name
// when the process is gone or /proc is not the host's.
func commandOf(pid uint32, exe string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return exe
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func (p *pipeline) countLost(reason string, n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lost[reason] += n
}

// deliveryBuckets is the delivery histogram's bucket count.
const deliveryBuckets = source.Pow2Buckets

func deliveryBucket(d time.Duration) int {
	us := max(d.Microseconds(), 1)
	return min(bits.Len64(uint64(us))-1, deliveryBuckets-1)
}

// httpCounters is the pipeline's totals, kernel side included.
type httpCounters struct {
	events      uint64
	otlpExports uint64
	lost        map[string]uint64
	delivery    [deliveryBuckets]uint64
	delaySum    time.Duration
}

func (p *pipeline) counters() (httpCounters, error) {
	k, err := p.events.Counters()
	if err != nil {
		return httpCounters{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := httpCounters{events: p.seen, otlpExports: p.stat.Excluded, lost: make(map[string]uint64),
		delivery: p.delivery, delaySum: p.delaySum}
	for r, n := range p.lost {
		c.lost[r] = n
	}
	c.lost[lostRingBufferFull] = k.Lost
	c.lost[lostDataNotCaptured] = k.NoBuffer
	c.lost[lostRequestsDropped] = p.stat.Dropped
	return c, nil
}

// metrics is the HTTP capability's part of a collection.
type metrics struct {
	p  *pipeline
	mb *metadata.MetricsBuilder
	// removed reports a removed cgroup: its histograms are exported one
	// last time, then forgotten.
	removed func(uint64) bool
}

// snapshot reads nothing: the pipeline aggregates as records come.
func (s metrics) Snapshot() error { return nil }

// dropStale has nothing to drop: record forgets removed cgroups.
func (s metrics) DropStale() error { return nil }

func (s metrics) Cgroups(yield func(uint64) bool) { s.p.red.cgroups(yield) }

func (s metrics) Record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	if folded := s.p.red.appendHistograms(id, now, histograms); folded > 0 {
		s.mb.RecordHTTPServerRoutesFoldedDataPoint(now, int64(folded))
	}
	if s.removed(id) {
		s.p.red.forget(id)
	}
}

func (s metrics) RecordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice) {
	c, err := s.p.counters()
	if err != nil {
		s.p.logger.Warn("cannot read http counters", zap.Error(err))
		return
	}
	s.mb.RecordEbpfHTTPEventsDataPoint(now, int64(c.events))
	s.mb.RecordEbpfHTTPExcludedDataPoint(now, int64(c.otlpExports), metadata.AttributeEbpfExcludedReasonOtlpExport)
	s.mb.RecordEbpfSpansDroppedDataPoint(now, int64(s.p.spans.dropped.Load()), metadata.AttributeEbpfDropReasonSampledOut)
	dp := source.NewDurationHistogram(histograms, "ebpf.http.delivery.duration",
		"Time from a syscall in the kernel to its record reaching the receiver's parser.").AppendEmpty()
	source.SetPow2Histogram(dp, s.p.red.start, now, c.events, uint64(c.delaySum), c.delivery[:])
	for _, reason := range slices.Sorted(maps.Keys(c.lost)) {
		s.mb.RecordEbpfHTTPLostDataPoint(now, int64(c.lost[reason]), metadata.MapAttributeEbpfLostReason[reason])
	}
}
