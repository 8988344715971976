//go:build linux

package httpsource

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/l7trace"
	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

// recordPID is where a recording's first process id goes: beyond the
// kernel's pid_max, so that in a replay no live process lends its command
// line.
const recordPID = 4_200_000

// Real HTTP/1 traffic through the real kernel programs: a keep-alive curl
// with a traceparent (200, 500, chunked), a HEAD, two pipelined requests,
// and an HTTP/1.0 response that ends at close. Its records go through the
// pipeline, which must give every span; WRITE_GOLDEN=1 keeps them, made
// stable (times from 1 s, connection ids, pids and cgroup), as the
// recording that TestReplayHTTP1 replays with no kernel. It runs on each
// capture path of the kernel: the socket length tracepoints (Linux 6.3 and
// later), whose records are the recording, and sys_exit.
func TestRecordHTTP1(t *testing.T) {
	bpftest.RequireBPF(t)
	if bpftest.HasTracepoint(t, "sock", "sock_send_length") && bpftest.HasTracepoint(t, "sock", "sock_recv_length") {
		t.Run("sock_length", func(t *testing.T) { recordHTTP1(t, false) })
	}
	t.Run("sys_exit", func(t *testing.T) { recordHTTP1(t, true) })
}

func recordHTTP1(t *testing.T, atExit bool) {
	tr, err := l7trace.Load(l7trace.Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, ForceExit: atExit})
	require.NoError(t, err)
	defer tr.Close()
	got := make(chan l7trace.Event, 1024)
	go func() {
		defer close(got)
		for {
			var e l7trace.Event
			if tr.Read(&e) != nil {
				return
			}
			got <- e
		}
	}()

	api := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		case "/chunked":
			_, _ = io.WriteString(w, "part one\n")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two\n")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, `{"id":42}`)
		}
	})}
	go func() { _ = srv.Serve(api) }()
	defer srv.Close()
	legacy := listen(t) // answers in HTTP/1.0 with no length, then closes
	go func() {
		c, err := legacy.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1996\n")
	}()
	base := "http://" + api.Addr().String()
	curl(t, "-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		base+"/users/42?full=1", "-o", "/dev/null", base+"/fail", "-o", "/dev/null", base+"/chunked")
	curl(t, "-I", base+"/users/7")
	curl(t, "http://"+legacy.Addr().String()+"/legacy")
	c, err := net.Dial("tcp4", api.Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET /empty HTTP/1.1\r\nHost: api\r\n\r\nGET /empty HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	_, err = io.ReadAll(c)
	require.NoError(t, err)
	c.Close()

	// The records of the test's connections: a close has lost its local
	// port, so it is kept by its connection.
	ports := []uint16{port(api), port(legacy)}
	open := make(map[uint64]bool)
	var events []l7trace.Event
	for quiet := time.After(time.Second); ; {
		select {
		case e := <-got:
			switch {
			case e.Dir == l7trace.DirClose && open[e.Conn]:
				delete(open, e.Conn)
			case e.Dir != l7trace.DirClose && (slices.Contains(ports, e.Local.Port()) || slices.Contains(ports, e.Remote.Port())):
				open[e.Conn] = true
			default:
				continue
			}
			events = append(events, e)
			continue
		case <-quiet:
		}
		break
	}
	events = stable(events)

	traces, _ := runReplay(t, events)
	var names []string
	for _, s := range allSpans(traces) {
		names = append(names, fmt.Sprintf("%s %s %v", s.Kind(), s.Name(), s.Status().Code() == ptrace.StatusCodeError))
	}
	slices.Sort(names)
	assert.Equal(t, []string{
		"Client GET false", "Client GET false", "Client GET false", "Client GET false", "Client GET false",
		"Client GET true", "Client HEAD false",
		"Server GET /chunked false", "Server GET /empty false", "Server GET /empty false", "Server GET /fail true",
		"Server GET /legacy false", "Server GET /users/{id} false", "Server HEAD /users/{id} false",
	}, names)
	if os.Getenv("WRITE_GOLDEN") != "" && !atExit {
		writeEvents(t, filepath.Join("testdata", "events", "http1.jsonl"), events)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }

func curl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "-o", "/dev/null"}, args...)...).CombinedOutput()
	require.NoError(t, err, "curl: %s", out)
}

// stable renumbers what changes between recordings: times start at 1 s,
// and connections, processes and the cgroup get fixed ids.
func stable(events []l7trace.Event) []l7trace.Event {
	if len(events) == 0 {
		return nil
	}
	start := events[0].TS
	for _, e := range events {
		if e.Start != 0 {
			start = min(start, e.Start)
		}
	}
	conns := make(map[uint64]uint64)
	pids := make(map[uint32]uint32)
	for i := range events {
		e := &events[i]
		e.TS = e.TS - start + uint64(time.Second)
		if e.Start != 0 {
			e.Start = e.Start - start + uint64(time.Second)
		}
		if _, ok := conns[e.Conn]; !ok {
			conns[e.Conn] = uint64(len(conns) + 1)
		}
		e.Conn = conns[e.Conn]
		if e.PID != 0 {
			if _, ok := pids[e.PID]; !ok {
				pids[e.PID] = recordPID + uint32(len(pids)+1)
			}
			e.PID = pids[e.PID]
		}
		e.CgroupID = sourcetest.PodCgroup
	}
	return events
}
