//go:build linux

package httpsource

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/l7trace"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

// recorded is one ring buffer record as testdata/events keeps it, one JSON
// object per line.
type recorded struct {
	TS       uint64         `json:"ts"`
	Start    uint64         `json:"start,omitempty"`
	Conn     uint64         `json:"conn"`
	CgroupID uint64         `json:"cgroup"`
	PID      uint32         `json:"pid"`
	Comm     string         `json:"comm"`
	Size     uint32         `json:"size"`
	Local    netip.AddrPort `json:"local"`
	Remote   netip.AddrPort `json:"remote"`
	Dir      string         `json:"dir"`
	Protocol string         `json:"protocol"`
	Data     string         `json:"data,omitempty"`
}

var (
	dirNames      = map[l7trace.Dir]string{l7trace.DirIngress: "ingress", l7trace.DirEgress: "egress", l7trace.DirClose: "close"}
	protocolNames = map[l7trace.Protocol]string{l7trace.ProtocolHTTP1: "http1"}
)

func keyOf[K comparable](m map[K]string, v string) (K, bool) {
	for k, name := range m {
		if name == v {
			return k, true
		}
	}
	var zero K
	return zero, false
}

func readEvents(t *testing.T, path string) []l7trace.Event {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []l7trace.Event
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var r recorded
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "%s:%d", path, line)
		dir, ok := keyOf(dirNames, r.Dir)
		require.True(t, ok, "%s:%d: direction %q", path, line, r.Dir)
		proto, ok := keyOf(protocolNames, r.Protocol)
		require.True(t, ok, "%s:%d: protocol %q", path, line, r.Protocol)
		out = append(out, l7trace.Event{TS: r.TS, Start: r.Start, Conn: r.Conn, CgroupID: r.CgroupID, PID: r.PID, Comm: r.Comm,
			Size: r.Size, Local: r.Local, Remote: r.Remote, Dir: dir, Protocol: proto, Data: []byte(r.Data)})
	}
	require.NoError(t, sc.Err())
	return out
}

func writeEvents(t *testing.T, path string, events []l7trace.Event) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	enc.SetEscapeHTML(false)
	for _, e := range events {
		require.NoError(t, enc.Encode(recorded{TS: e.TS, Start: e.Start, Conn: e.Conn, CgroupID: e.CgroupID, PID: e.PID, Comm: e.Comm,
			Size: e.Size, Local: e.Local, Remote: e.Remote, Dir: dirNames[e.Dir], Protocol: protocolNames[e.Protocol],
			Data: string(e.Data)}))
	}
	require.NoError(t, f.Close())
}

// replay hands recorded events to a pipeline, once start is closed.
type replay struct {
	start  chan struct{}
	events []l7trace.Event
}

func (r *replay) Read(e *l7trace.Event) error {
	<-r.start
	if len(r.events) == 0 {
		return os.ErrClosed
	}
	*e, r.events = r.events[0], r.events[1:]
	return nil
}

func (r *replay) Counters() (l7trace.Counters, error) { return l7trace.Counters{}, nil }

// replayBootNS is the wall time at the kernel's monotonic 0 in replays.
const replayBootNS = 1_700_000_000_000_000_000

// runReplay feeds events through a whole pipeline, as the kernel's reader
// would, and returns the spans it exported, in one canonical Traces, and
// the pipeline for its metrics.
func runReplay(t *testing.T, events []l7trace.Event) (ptrace.Traces, *pipeline) {
	t.Helper()
	r := &replay{start: make(chan struct{}), events: events}
	p := newPipeline(r, DefaultConfig(), sourcetest.Resources, zap.NewNop())
	p.spans.bootNS = replayBootNS // the wall clock of the golden files
	sink := new(consumertest.TracesSink)
	p.spans.setConsumer(sink)
	close(r.start)
	p.close()
	return canonical(sink.AllTraces()), p
}

// canonical merges exports into one Traces whose spans are grouped by
// resource and sorted by start, with their random ids renumbered in that
// order, so that a golden file can hold them with their links.
func canonical(exports []ptrace.Traces) ptrace.Traces {
	type group struct {
		res   pcommon.Resource
		scope pcommon.InstrumentationScope
		spans []ptrace.Span
	}
	groups := make(map[string]*group)
	for _, td := range exports {
		for _, rs := range td.ResourceSpans().All() {
			key := fmt.Sprint(rs.Resource().Attributes().AsRaw())
			g := groups[key]
			if g == nil {
				g = &group{res: rs.Resource()}
				groups[key] = g
			}
			for _, ss := range rs.ScopeSpans().All() {
				g.scope = ss.Scope()
				for _, s := range ss.Spans().All() {
					g.spans = append(g.spans, s)
				}
			}
		}
	}
	out := ptrace.NewTraces()
	traces := make(map[pcommon.TraceID]pcommon.TraceID)
	spans := make(map[pcommon.SpanID]pcommon.SpanID)
	spanID := func(id pcommon.SpanID) pcommon.SpanID {
		if id.IsEmpty() {
			return id
		}
		if _, ok := spans[id]; !ok {
			spans[id] = pcommon.SpanID{7: byte(len(spans) + 1)}
		}
		return spans[id]
	}
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		rs := out.ResourceSpans().AppendEmpty()
		g.res.CopyTo(rs.Resource())
		ss := rs.ScopeSpans().AppendEmpty()
		g.scope.CopyTo(ss.Scope())
		slices.SortStableFunc(g.spans, func(a, b ptrace.Span) int {
			return cmp.Or(cmp.Compare(a.StartTimestamp(), b.StartTimestamp()), cmp.Compare(a.Kind(), b.Kind()))
		})
		for _, s := range g.spans {
			c := ss.Spans().AppendEmpty()
			s.CopyTo(c)
			if _, ok := traces[s.TraceID()]; !ok {
				traces[s.TraceID()] = pcommon.TraceID{15: byte(len(traces) + 1)}
			}
			c.SetTraceID(traces[s.TraceID()])
			c.SetSpanID(spanID(s.SpanID()))
			c.SetParentSpanID(spanID(s.ParentSpanID()))
		}
	}
	return out
}

// Recorded HTTP/1 traffic (see TestRecordHTTP1) through the whole
// pipeline, with no kernel: the spans with their links, and the RED
// metrics.
func TestReplayHTTP1(t *testing.T) {
	events := readEvents(t, filepath.Join("testdata", "events", "http1.jsonl"))
	traces, p := runReplay(t, events)
	compareGoldenTraces(t, filepath.Join("testdata", "replay_http1_spans.yaml"), traces)

	env := sourcetest.MetricsEnv()
	part := cgroupsOnly{(&Source{p: p}).NewMetrics(env).(metrics)}
	sourcetest.CompareGolden(t, filepath.Join("testdata", "replay_http1_metrics.yaml"), sourcetest.Collect(t, env, part))
}

// A client's read of an answer can reach the ring before the write of the
// request it answers, when the writer got to its tracepoint after the
// server had answered: the read waits for that write's record, and each
// request still pairs with its own answer.
func TestReplayAnswerBeforeRequest(t *testing.T) {
	client := netip.MustParseAddrPort("198.18.0.1:40000")
	server := netip.MustParseAddrPort("198.18.0.2:80")
	event := func(ts uint64, dir l7trace.Dir, data string) l7trace.Event {
		return l7trace.Event{TS: ts, Conn: 1, CgroupID: sourcetest.PodCgroup, PID: 10, Comm: "client",
			Size: uint32(len(data)), Local: client, Remote: server, Dir: dir, Protocol: l7trace.ProtocolHTTP1,
			Data: []byte(data)}
	}
	const failed, ok = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	traces, _ := runReplay(t, []l7trace.Event{
		event(300, l7trace.DirIngress, failed), // the connection's first record
		event(100, l7trace.DirEgress, "GET /a HTTP/1.1\r\n\r\n"),
		event(400, l7trace.DirEgress, "GET /b HTTP/1.1\r\n\r\n"),
		event(500, l7trace.DirIngress, ok),
		event(700, l7trace.DirIngress, failed),
		event(600, l7trace.DirEgress, "GET /c HTTP/1.1\r\n\r\n"),
		event(800, l7trace.DirClose, ""),
	})
	type got struct {
		path       string
		status     int64
		start, end uint64
	}
	var spans []got
	for _, s := range allSpans(traces) {
		path, _ := s.Attributes().Get("url.path")
		status, _ := s.Attributes().Get("http.response.status_code")
		spans = append(spans, got{path.Str(), status.Int(),
			uint64(s.StartTimestamp()) - replayBootNS, uint64(s.EndTimestamp()) - replayBootNS})
	}
	require.Equal(t, []got{{"/a", 500, 100, 300}, {"/b", 200, 400, 500}, {"/c", 500, 600, 700}}, spans)
}

// A socket whose close was not seen (it closed before the close hook was
// attached) and a new one at its kernel address: the new one's exchanges
// are its own, with its own role and ends, not the old one's.
func TestReplayMissedClose(t *testing.T) {
	node := netip.MustParseAddrPort("198.18.0.1:40000")
	health := netip.MustParseAddrPort("198.18.0.2:13133")
	api := netip.MustParseAddrPort("198.18.0.1:8080")
	peer := netip.MustParseAddrPort("198.18.0.3:51000")
	event := func(ts uint64, local, remote netip.AddrPort, dir l7trace.Dir, data string) l7trace.Event {
		return l7trace.Event{TS: ts, Conn: 1, CgroupID: sourcetest.PodCgroup, PID: 10, Comm: "app",
			Size: uint32(len(data)), Local: local, Remote: remote, Dir: dir, Protocol: l7trace.ProtocolHTTP1,
			Data: []byte(data)}
	}
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	traces, _ := runReplay(t, []l7trace.Event{
		event(100, node, health, l7trace.DirEgress, "GET / HTTP/1.1\r\n\r\n"),
		event(200, node, health, l7trace.DirIngress, ok),
		// No close: the next socket at that address is a server's.
		event(300, api, peer, l7trace.DirIngress, "GET /items HTTP/1.1\r\n\r\n"),
		event(400, api, peer, l7trace.DirEgress, ok),
		event(500, api, peer, l7trace.DirClose, ""),
	})
	type got struct {
		kind       ptrace.SpanKind
		path       string
		serverPort int64
		err        bool
	}
	var spans []got
	for _, s := range allSpans(traces) {
		path, _ := s.Attributes().Get("url.path")
		port, _ := s.Attributes().Get("server.port")
		_, failed := s.Attributes().Get("error.type")
		spans = append(spans, got{s.Kind(), path.Str(), port.Int(), failed})
	}
	require.Equal(t, []got{{ptrace.SpanKindClient, "/", 13133, false}, {ptrace.SpanKindServer, "/items", 8080, false}}, spans)
}
