//go:build linux

package l7trace

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

// collect reads events into a list until stop is closed.
type collect struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

// eachPath runs test on each capture path of this kernel: the socket
// length tracepoints where the kernel has them (Linux 6.3 and later), and
// sys_exit, which every kernel has and which Load takes before 6.3.
func eachPath(t *testing.T, test func(t *testing.T, atExit bool)) {
	if hasHooks(t) {
		t.Run("sock_length", func(t *testing.T) { test(t, false) })
	}
	t.Run("sys_exit", func(t *testing.T) { test(t, true) })
}

// startTracer loads the tracer on the path atExit names, with the
// defaults of the tests.
func startTracer(t *testing.T, atExit bool) (*Tracer, *collect) {
	t.Helper()
	return startTracerWith(t, Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, ForceExit: atExit})
}

// startTracerWith loads the tracer, checks that it attached the programs
// of its path, and collects its events until the test ends.
func startTracerWith(t *testing.T, opts Options) (*Tracer, *collect) {
	t.Helper()
	bpftest.RequireBPF(t)
	tr, err := Load(opts)
	require.NoError(t, err)
	c := &collect{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			var e Event
			if err := tr.Read(&e); err != nil {
				return
			}
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tr.Close()
		<-c.done
	})
	var names []string
	for _, p := range tr.Programs() {
		info, err := p.Info()
		require.NoError(t, err)
		names = append(names, info.Name)
	}
	want := []string{"ebr_l7_close", "ebr_l7_enter", "ebr_l7_send", "ebr_l7_recv"}
	if opts.ForceExit || !hasHooks(t) {
		want = []string{"ebr_l7_close", "ebr_l7_enter", "ebr_l7_exit"}
	}
	require.Equal(t, want, names, "the programs of the capture path")
	return tr, c
}

// AtExit and Hooks name the path that the running kernel's hooks allow.
func TestPathOfKernel(t *testing.T) {
	assert.Equal(t, !hasHooks(t), AtExit(), "capture at sys_exit where the socket length tracepoints are missing")
	if hasHooks(t) {
		assert.Equal(t, []string{"sock:inet_sock_set_state", "raw_syscalls:sys_enter", "sock:sock_send_length", "sock:sock_recv_length"}, Hooks())
	} else {
		assert.Equal(t, []string{"sock:inet_sock_set_state", "raw_syscalls:sys_enter", "raw_syscalls:sys_exit"}, Hooks())
	}
}

// on returns the events of connections with one end on port.
func (c *collect) on(port uint16) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Event
	for _, e := range c.events {
		if e.Local.Port() == port || e.Remote.Port() == port || e.Dir == DirClose {
			out = append(out, e)
		}
	}
	return out
}

// CaptureBytes bounds what each record copies: a request longer than it is
// cut there, and its size is still the whole length.
func TestCaptureBytes(t *testing.T) { eachPath(t, testCaptureBytes) }

func testCaptureBytes(t *testing.T, atExit bool) {
	const capture = 64
	_, c := startTracerWith(t, Options{CaptureBytes: capture, PollInterval: 20 * time.Millisecond, ForceExit: atExit})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	path := "/" + strings.Repeat("p", 200)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	require.NoError(t, err)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()

	var req Event
	require.Eventually(t, func() bool {
		for _, e := range c.on(port) {
			if e.Dir == DirIngress && bytes.HasPrefix(e.Data, []byte("GET /ppp")) {
				req = e
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "no captured request")
	assert.Len(t, req.Data, capture, "copied bytes")
	assert.Greater(t, int(req.Size), len(path), "the request's whole size")
}

// A Go server answering with a file through sendfile, and a Go client: the
// request and the response head are captured on both ends, the file body
// only by its length.
func TestCaptureHTTP(t *testing.T) { eachPath(t, testCaptureHTTP) }

func testCaptureHTTP(t *testing.T, atExit bool) {
	tr, c := startTracer(t, atExit)
	file := filepath.Join(t.TempDir(), "body")
	require.NoError(t, os.WriteFile(file, bytes.Repeat([]byte("b"), 10000), 0o600))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, file) // sendfile(2) for the body
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/body", port))
	require.NoError(t, err)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.EqualValues(t, 10000, n)
	http.DefaultClient.CloseIdleConnections()

	// The four kinds of records, as they arrive.
	var reqIn, reqOut, respHead, bodyBytes bool
	require.Eventually(t, func() bool {
		for _, e := range c.on(port) {
			switch {
			case e.Dir == DirEgress && bytes.HasPrefix(e.Data, []byte("GET /body HTTP/1.1\r\n")):
				reqOut = reqOut || e.Remote.Port() == port
			case e.Dir == DirIngress && bytes.HasPrefix(e.Data, []byte("GET /body HTTP/1.1\r\n")):
				reqIn = reqIn || e.Local.Port() == port
			case e.Dir == DirEgress && bytes.HasPrefix(e.Data, []byte("HTTP/1.1 200 OK\r\n")):
				respHead = true
			case e.Dir == DirEgress && len(e.Data) == 0 && e.Size > 0:
				bodyBytes = true // sendfile: the length without the bytes
			}
			assert.LessOrEqual(t, len(e.Data), 256)
			assert.Equal(t, ProtocolHTTP1, e.Protocol, "the classifier's name for the connection")
		}
		return reqIn && reqOut && respHead && bodyBytes
	}, 5*time.Second, 10*time.Millisecond,
		"client's request write %v, server's request read %v, response head %v, sendfile body by its length %v",
		reqOut, reqIn, respHead, bodyBytes)
	counters, err := tr.Counters()
	require.NoError(t, err)
	assert.Zero(t, counters.Lost)
	assert.Zero(t, counters.NoBuffer, "sendfile is expected to have no user buffer")
}

// On loopback the server can read a request, answer it, and the client
// can read the answer, all before the client's write gets to its
// tracepoint. A write's record also says when it began, so each request's
// writes by their start and reads by their end are in the order that its
// bytes moved: the client's write, the server's read, the server's write,
// the client's read.
func TestStampsFollowTheBytes(t *testing.T) { eachPath(t, testStampsFollowTheBytes) }

func testStampsFollowTheBytes(t *testing.T, atExit bool) {
	const requests = 2000
	_, c := startTracer(t, atExit)
	port := serveOK(t)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range requests {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/%d", port, i))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// All of the connection's records by their stamps: each request's
	// write, then its reads on the server (Go's server may read the
	// first byte on its own), then the answer's write and read.
	const clientOut, serverIn, serverOut, clientIn = 0, 1, 2, 3
	type record struct {
		ts   uint64
		step int
	}
	var records []record
	var unstarted int
	collect := func() bool {
		records, unstarted = records[:0], 0
		answers := 0
		for _, e := range c.on(port) {
			server := e.Local.Port() == port
			if e.Dir == DirEgress && (e.Start == 0 || e.Start > e.TS) {
				unstarted++
			}
			switch {
			case e.Dir == DirEgress && !server:
				records = append(records, record{e.Start, clientOut})
			case e.Dir == DirIngress && server:
				records = append(records, record{e.TS, serverIn})
			case e.Dir == DirEgress && server:
				records = append(records, record{e.Start, serverOut})
			case e.Dir == DirIngress && !server:
				records = append(records, record{e.TS, clientIn})
				answers++
			}
		}
		return answers == requests
	}
	require.Eventually(t, collect, 10*time.Second, 20*time.Millisecond, "every answer read")
	assert.Zero(t, unstarted, "writes with no start, or a start after their bytes moved")
	slices.SortFunc(records, func(a, b record) int { return cmp.Compare(a.ts, b.ts) })
	late, step := 0, clientIn
	for _, r := range records {
		next := (step + 1) % 4
		if r.step != next && !(r.step == serverIn && step == serverIn) {
			late++

		}
		step = r.step
	}
	assert.Zero(t, late, "records stamped out of the order their bytes moved, of %d", len(records))
}

// Bytes that are not HTTP never leave the kernel.
func TestCaptureIgnoresOtherProtocols(t *testing.T) { eachPath(t, testCaptureIgnoresOtherProtocols) }

func testCaptureIgnoresOtherProtocols(t *testing.T, atExit bool) {
	_, c := startTracer(t, atExit)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, conn) // echo
	}()
	conn, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	for _, msg := range []string{"\x16\x03\x01\x02\x00", "*1\r\n$4\r\nPING\r\n", "GET / HTTP/1.1\r\n\r\n"} {
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, len(msg))
		_, err = io.ReadFull(conn, buf)
		require.NoError(t, err)
	}
	conn.Close()
	time.Sleep(200 * time.Millisecond)
	for _, e := range c.on(port) {
		assert.NotEqual(t, port, e.Local.Port(), "no event for a connection that began as TLS: %+v", e)
		assert.NotEqual(t, port, e.Remote.Port(), "no event for a connection that began as TLS: %+v", e)
	}
}

// hasHooks reports whether the kernel has the hooks of the socket length
// path: the sock_*_length tracepoints came in Linux 6.3.
func hasHooks(t *testing.T) bool {
	return bpftest.HasTracepoint(t, "sock", "sock_send_length") && bpftest.HasTracepoint(t, "sock", "sock_recv_length")
}

// writeBTF writes a valid BTF file that has none of the kernel's types.
func writeBTF(t *testing.T, path string) {
	t.Helper()
	var b btf.Builder
	_, err := b.Add(&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed})
	require.NoError(t, err)
	raw, err := b.Marshal(nil, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, raw, 0o644))
}

// Kernel BTF files that cannot serve each fail Load with the path and the
// reason; the running kernel's file, named or not, still serves in the same
// process. The programs load in the order of Hooks, so a file without the
// kernel's types fails ebr_l7_enter.
func TestKernelBTF(t *testing.T) {
	bpftest.RequireBPF(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("no BTF in here, only text"), 0o644))
	empty := filepath.Join(dir, "empty.btf")
	writeBTF(t, empty)
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "kernel BTF " + dir + "/missing: open " + dir + "/missing: no such file or directory"},
		{"directory", dir, "kernel BTF " + dir + ": read raw BTF: read " + dir + ": is a directory"},
		{"garbage", garbage, "kernel BTF " + garbage + ": parsing .BTF header: no valid BTF header"},
		{"no kernel types", empty, "load l7trace programs: kernel BTF " + empty + ": ebr_l7_close on sock:inet_sock_set_state: verifier: load program: bad CO-RE relocation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := Load(Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, KernelBTF: c.path})
			if err == nil {
				tr.Close()
			}
			require.ErrorContains(t, err, c.want)
		})
	}
	tr, err := Load(Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, KernelBTF: "/sys/kernel/btf/vmlinux"})
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	startTracer(t, false)
}

// A program the verifier rejects fails Load, naming the program.
func TestRejectProgram(t *testing.T) {
	bpftest.RequireBPF(t)
	tr, err := Load(Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, RejectProgram: "ebr_l7_enter"})
	if err == nil {
		tr.Close()
	}
	var verr *ebpf.VerifierError
	require.ErrorAs(t, err, &verr)
	require.Regexp(t, `^load l7trace programs: ebr_l7_enter on raw_syscalls:sys_enter: verifier: load program: permission denied: .*R2 !read_ok`, err.Error())
	_, err = Load(Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond, RejectProgram: "ebr_no_such_program"})
	require.ErrorContains(t, err, `no program "ebr_no_such_program" to reject`)
	startTracer(t, false)
}

// serveOK starts an in-process HTTP server on loopback and returns its
// port.
func serveOK(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// A lone request wakes the reader although its records are far below the
// wakeup watermark: with a one-minute poll interval they still arrive at
// once, because no wakeup was sent for over a millisecond before them.
func TestWakeupAfterQuiet(t *testing.T) {
	_, c := startTracerWith(t, Options{CaptureBytes: 256, PollInterval: time.Minute})
	port := serveOK(t)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/quiet", port))
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool {
		for _, e := range c.on(port) {
			if e.Dir == DirIngress && bytes.HasPrefix(e.Data, []byte("GET /quiet")) {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "the request's record waited for the poll interval")
}

// The connections of IgnorePID are never traced: the in-process server's
// ends give no record, while curl's ends of the same connections do.
func TestIgnorePID(t *testing.T) { eachPath(t, testIgnorePID) }

func testIgnorePID(t *testing.T, atExit bool) {
	bpftest.RequireTool(t, "curl")
	_, c := startTracerWith(t, Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond,
		IgnorePID: uint32(os.Getpid()), ForceExit: atExit})
	port := serveOK(t)
	for range 3 {
		out, err := exec.Command("curl", "-sS", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/ignored", port)).CombinedOutput()
		require.NoError(t, err, "curl: %s", out)
	}
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range c.on(port) {
			if e.Dir == DirEgress && bytes.HasPrefix(e.Data, []byte("GET /ignored")) {
				n++
			}
		}
		return n == 3
	}, 10*time.Second, 10*time.Millisecond, "curl's three requests")
	for _, e := range c.on(port) {
		if e.PID == uint32(os.Getpid()) {
			t.Fatalf("record of the ignored process: %+v", e)
		}
	}
}

// With IgnoreItsCgroup, the cgroup of IgnorePID is left out too, as a
// collector's container is. Pod A runs the ignored process, a Python HTTP
// server, and pod B another. Once A's server has made a syscall, nothing of
// pod A is traced, in either role, and pod B's ends of the same
// connections still are.
func TestIgnoreItsCgroup(t *testing.T) {
	bpftest.RequireBPF(t)
	bpftest.RequireTool(t, "curl")
	bpftest.RequireTool(t, "python3")
	node := bpftest.NewNode(t)
	a := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	b := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	const port = 8080
	serve := func(p *bpftest.Pod) *exec.Cmd {
		cmd := p.Command(t.Context(), "python3", "-m", "http.server", "-b", "0.0.0.0", fmt.Sprint(port))
		cmd.Dir = t.TempDir()
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	get := func(from, to *bpftest.Pod, path string) error {
		return from.Command(t.Context(), "curl", "-sS", "-o", "/dev/null", "--max-time", "5",
			fmt.Sprintf("http://%s:%d/%s", to.IP, port, path)).Run()
	}
	ignored := serve(a)
	serve(b)
	for _, to := range []*bpftest.Pod{a, b} {
		require.Eventually(t, func() bool { return get(a, to, "ready") == nil && get(b, to, "ready") == nil },
			60*time.Second, 100*time.Millisecond, "servers answer")
	}
	_, c := startTracerWith(t, Options{CaptureBytes: 256, PollInterval: 20 * time.Millisecond,
		IgnorePID: uint32(ignored.Process.Pid), IgnoreItsCgroup: true})
	// A's server reads this request: from then on the kernel knows its
	// cgroup.
	require.NoError(t, get(b, a, "first"))
	require.NoError(t, get(a, b, "a-to-b"))
	require.NoError(t, get(b, a, "b-to-a"))

	seen := func(cgroup uint64, dir Dir, path string) bool {
		for _, e := range c.on(port) {
			if e.CgroupID == cgroup && e.Dir == dir && bytes.HasPrefix(e.Data, []byte("GET /"+path)) {
				return true
			}
		}
		return false
	}
	require.Eventually(t, func() bool {
		return seen(b.CgroupID, DirIngress, "a-to-b") && seen(b.CgroupID, DirEgress, "b-to-a")
	}, 10*time.Second, 10*time.Millisecond, "pod B's ends of both connections")
	for _, e := range c.on(port) {
		if e.CgroupID == a.CgroupID && e.Dir != DirClose {
			t.Errorf("record of the ignored cgroup: dir %d %q", e.Dir, e.Data)
		}
	}
}

// On the sys_exit path each socket's state lives in a hash, which the
// close hook empties: the state of open connections is there, and none of
// them stays behind once they closed.
func TestExitForgetsClosed(t *testing.T) {
	const conns = 20
	tr, c := startTracer(t, true)
	port := serveOK(t)
	var open []net.Conn
	for range conns {
		conn, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		open = append(open, conn)
	}
	// Both ends of every connection, by the ports of their data.
	socks := map[uint64]bool{}
	require.Eventually(t, func() bool {
		for _, e := range c.on(port) {
			if e.Dir != DirClose {
				socks[e.Conn] = true
			}
		}
		return len(socks) == 2*conns
	}, 10*time.Second, 10*time.Millisecond, "data of both ends of each connection")
	states := tr.Map(bpfMapExitConns)
	kept := func() int {
		n := 0
		for sock := range socks {
			var st bpfConnState
			if states.Lookup(sock, &st) == nil {
				n++
			}
		}
		return n
	}
	require.Equal(t, 2*conns, kept(), "state of the open sockets")
	for _, conn := range open {
		require.NoError(t, conn.Close())
	}
	// A close's ports may be gone already: match it by its socket.
	require.Eventually(t, func() bool {
		closed := 0
		for _, e := range c.on(port) {
			if e.Dir == DirClose && socks[e.Conn] {
				closed++
			}
		}
		return closed == 2*conns
	}, 10*time.Second, 10*time.Millisecond, "both ends of each connection closed")
	assert.Zero(t, kept(), "state of closed sockets")
}
