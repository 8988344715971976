//go:build linux

package tcpconn

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

func TestMain(m *testing.M) {
	bpftest.RunHelperIfRequested(map[string]bpftest.HelperFunc{
		"load-without-tracefs": loadWithoutTracefs,
	})
	os.Exit(m.Run())
}

// testOptions size the maps as the C code does; Load takes no defaults.
var testOptions = Options{MaxConnections: 65536, MaxFlows: 8192, RTTSampleInterval: time.Second}

func load(t *testing.T) *Tracer {
	t.Helper()
	bpftest.RequireBPF(t)
	tr, err := Load(testOptions)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	checkDisabled(t, tr.Disabled())
	return tr
}

// hasBytes reports whether the kernel has the hooks of PartBytes: the
// sock_*_length tracepoints came in Linux 6.3.
func hasBytes(t *testing.T) bool {
	return bpftest.HasTracepoint(t, "sock", "sock_send_length") && bpftest.HasTracepoint(t, "sock", "sock_recv_length")
}

// wantDisabled returns the parts that this kernel cannot run, sorted.
func wantDisabled(t *testing.T) []string {
	if !hasBytes(t) {
		return []string{PartBytes}
	}
	return nil
}

// checkDisabled checks that exactly the parts this kernel lacks hooks for
// are disabled, each with the missing hook in its reason.
func checkDisabled(t *testing.T, d map[string]error) {
	t.Helper()
	if got, want := slices.Sorted(maps.Keys(d)), wantDisabled(t); !slices.Equal(got, want) {
		t.Fatalf("disabled parts %v, want %v: %v", got, want, d)
	}
	if err := d[PartBytes]; err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		t.Errorf("tcp.bytes disabled for another reason than a missing hook: %v", err)
	}
}

// snapshot reads the maps and fails t on any kernel-side loss.
func snapshot(t *testing.T, tr *Tracer) Snapshot {
	t.Helper()
	var s Snapshot
	if err := tr.Snapshot(&s); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if s.Lost != (Lost{}) {
		t.Errorf("lost: %+v", s.Lost)
	}
	for d, o := range s.Overflow {
		if o != (FlowStats{}) {
			t.Errorf("overflow of direction %d: %+v", d, o)
		}
	}
	return s
}

// flowsOf returns the flows owned by the cgroups ids, without their RTT
// samples, which it checks for consistency.
func flowsOf(t *testing.T, s Snapshot, ids ...uint64) map[Flow]FlowStats {
	t.Helper()
	got := make(map[Flow]FlowStats)
	for f, st := range s.Flows {
		if !slices.Contains(ids, f.CgroupId) {
			continue
		}
		var n uint64
		for _, b := range st.RttBuckets {
			n += b
		}
		if n != st.RttCount || (n > 0) != (st.RttSumUs > 0) {
			t.Errorf("flow %s: rtt count %d, sum %d us, buckets %v", flowString(f), st.RttCount, st.RttSumUs, st.RttBuckets)
		}
		st.RttCount, st.RttSumUs, st.RttBuckets = 0, 0, [RTTBuckets]uint64{}
		got[f] = st
	}
	return got
}

// checkRTT checks that flow f has at least the given number of RTT samples,
// or none if it is 0. A connection samples its srtt on the first segment it
// receives once established, then at most once per second; a refused one
// never does.
func checkRTT(t *testing.T, s Snapshot, f Flow, least uint64) {
	t.Helper()
	n := s.Flows[f].RttCount
	if n < least || (least == 0 && n != 0) {
		t.Errorf("flow %s: %d rtt samples, want at least %d (none if 0)", flowString(f), n, least)
	}
}

func flowString(f Flow) string {
	return fmt.Sprintf("{cgroup %d dir %d peer %v peer port %d local port %d}",
		f.CgroupId, f.Direction, f.Peer(), f.PeerPort, f.LocalPort)
}

func statsString(s FlowStats) string {
	return fmt.Sprintf("{opened %v adopted %d closed %d sent %d received %d retransmits %d resets sent %d received %d}",
		s.Opened, s.Adopted, s.Closed, s.BytesSent, s.BytesReceived, s.Retransmits, s.ResetsSent, s.ResetsReceived)
}

func clientFlow(cgroup uint64, peer netip.Addr, port uint16) Flow {
	return Flow{CgroupId: cgroup, Direction: uint8(DirectionClient), PeerAddr: peer.As16(), PeerPort: port}
}

func serverFlow(cgroup uint64, peer netip.Addr, port uint16) Flow {
	return Flow{CgroupId: cgroup, Direction: uint8(DirectionServer), PeerAddr: peer.As16(), LocalPort: port}
}

func opened(established, refused uint64) [OutcomeCount]uint64 {
	var o [OutcomeCount]uint64
	o[OutcomeEstablished] = established
	o[OutcomeRefused] = refused
	return o
}

func compareFlows(t *testing.T, got, want map[Flow]FlowStats) {
	t.Helper()
	if !hasBytes(t) { // PartBytes disabled: nothing counts bytes
		for f, w := range want {
			w.BytesSent, w.BytesReceived = 0, 0
			want[f] = w
		}
	}
	for f, w := range want {
		g, ok := got[f]
		if !ok {
			t.Errorf("flow %s missing", flowString(f))
			continue
		}
		if g != w {
			t.Errorf("flow %s:\n got %s\nwant %s", flowString(f), statsString(g), statsString(w))
		}
	}
	for f, g := range got {
		if _, ok := want[f]; !ok {
			t.Errorf("unexpected flow %s: %s", flowString(f), statsString(g))
		}
	}
}

// TestLoad loads and attaches every program to its hook, and checks that
// Close leaves none of them in the kernel.
func TestLoad(t *testing.T) {
	bpftest.RequireBPF(t)
	tr, err := Load(testOptions)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	checkDisabled(t, tr.Disabled())
	var hooks []string
	var progs []ebpf.ProgramID
	var links []link.ID
	// tp_btf programs are tracing programs; the kernel attaches them with
	// raw tracepoint links.
	for _, l := range tr.Links() {
		info, err := l.Info()
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			t.Fatalf("link %d: program: %v", info.ID, err)
		}
		if p.Type() != ebpf.Tracing {
			t.Errorf("link %d: program type %v, want tracing", info.ID, p.Type())
		}
		p.Close()
		if info.Type != link.RawTracepointType {
			t.Fatalf("link %d: type %v, want raw tracepoint", info.ID, info.Type)
		}
		hooks = append(hooks, info.RawTracepoint().Name)
		progs = append(progs, info.Program)
		links = append(links, info.ID)
	}
	var want []string
	for part, hs := range Hooks {
		if slices.Contains(wantDisabled(t), part) {
			continue
		}
		for _, h := range hs {
			_, event, _ := strings.Cut(h, ":")
			want = append(want, event)
		}
	}
	slices.Sort(hooks)
	slices.Sort(want)
	if !slices.Equal(hooks, want) {
		t.Errorf("attached to %v, want %v", hooks, want)
	}

	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The kernel may free a program after its last link a little later.
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range progs {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("program %d still loaded after close: %v", id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, id := range links {
		if l, err := link.NewFromID(id); !errors.Is(err, os.ErrNotExist) {
			if err == nil {
				l.Close()
			}
			t.Errorf("link %d still exists after close: %v", id, err)
		}
	}
}

// TestLoadWithoutTracefs loads the programs in a mount namespace that has no
// tracefs, debugfs or bpffs: tp_btf programs find their hooks through BTF.
func TestLoadWithoutTracefs(t *testing.T) {
	bpftest.RequireBPF(t)
	cmd := bpftest.HelperCommand(t.Context(), "load-without-tracefs", wantDisabled(t)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("load without tracefs: %v: %s", err, out)
	}
}

// loadWithoutTracefs's arguments are the parts that this kernel cannot run.
func loadWithoutTracefs(wantDisabled []string) error {
	for _, m := range []string{"/sys/kernel/debug/tracing", "/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/bpf"} {
		// Mounts may be stacked; EINVAL means none is left.
		for syscall.Unmount(m, syscall.MNT_DETACH) == nil {
		}
	}
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s still there: %v", p, err)
		}
	}
	tr, err := Load(testOptions)
	if err != nil {
		return err
	}
	if d := tr.Disabled(); !slices.Equal(slices.Sorted(maps.Keys(d)), wantDisabled) {
		tr.Close()
		return fmt.Errorf("disabled parts: %v, want %v", d, wantDisabled)
	}
	return tr.Close()
}

// newPods makes two pods on one node. Both have tail loss probes off: a
// probe is a retransmit, sent when an ACK is late by a few milliseconds,
// which a loaded test machine makes happen now and then.
func newPods(t *testing.T, b bpftest.PodOptions) (*bpftest.Node, *bpftest.Pod, *bpftest.Pod) {
	t.Helper()
	node := bpftest.NewNode(t)
	b.Node = node
	pods := []*bpftest.Pod{bpftest.NewPod(t, bpftest.PodOptions{Node: node}), bpftest.NewPod(t, b)}
	for _, p := range pods {
		p.Sysctl(t, "net.ipv4.tcp_early_retrans", "0")
	}
	return node, pods[0], pods[1]
}

// TestPodTraffic runs real connections between two fake pods and checks each
// pod's flows, exactly.
func TestPodTraffic(t *testing.T) {
	tr := load(t)
	_, a, b := newPods(t, bpftest.PodOptions{QoS: bpftest.QoSGuaranteed, Runtime: bpftest.RuntimeCRIO})
	const (
		port, closedPort = 8080, 8081
		conns, refused   = 5, 3
		request, reply   = 100_003, 70_001 // several segments and reads each
	)

	srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: port, Conns: conns, Recv: request, Send: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: conns, Send: request, Recv: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, closedPort), Conns: refused, Refused: true})
	if got, want := srv.Wait(t), fmt.Sprintf("eof %d reset 0", conns); got != want {
		t.Fatalf("server: %q, want %q", got, want)
	}

	s := snapshot(t, tr)
	compareFlows(t, flowsOf(t, s, a.CgroupID, b.CgroupID), map[Flow]FlowStats{
		// A's connections to B's server: each was established by A's
		// connect(2) and left ESTABLISHED when A closed it (FIN); bytes
		// are the payload A wrote and read, to the byte.
		clientFlow(a.CgroupID, b.IP, port): {
			Opened:        opened(conns, 0),
			Closed:        conns,
			BytesSent:     conns * request,
			BytesReceived: conns * reply,
		},
		// A's connects to the closed port: each SYN was answered by a
		// reset, received in SYN_SENT, which ends the attempt as refused.
		// They were never established, so never closed.
		clientFlow(a.CgroupID, b.IP, closedPort): {
			Opened:         opened(0, refused),
			ResetsReceived: refused,
		},
		// B's side of the same connections: accepted sockets take the
		// listener's cgroup; established when the handshake completed,
		// closed on A's FIN (to CLOSE_WAIT).
		serverFlow(b.CgroupID, a.IP, port): {
			Opened:        opened(conns, 0),
			Closed:        conns,
			BytesSent:     conns * reply,
			BytesReceived: conns * request,
		},
	})
	checkRTT(t, s, clientFlow(a.CgroupID, b.IP, port), conns)
	checkRTT(t, s, clientFlow(a.CgroupID, b.IP, closedPort), 0)
	checkRTT(t, s, serverFlow(b.CgroupID, a.IP, port), conns)
	// B's kernel answered the SYNs to the closed port with no socket: the
	// node's flow. Other traffic on the machine may add to it. Before
	// Linux 6.10 tcp_send_reset did not fire for a reset sent without a
	// socket; 6.10 made it fire for all and gave it a third argument, the
	// reason, which tells the two apart.
	if n := s.Flows[Flow{}].ResetsSent; bpftest.TracepointArgs(t, "tcp", "tcp_send_reset") >= 3 && n < refused {
		t.Errorf("node flow: %d resets sent, want at least %d", n, refused)
	}
}

// TestRTTSampleInterval checks that the interval reaches the kernel: with
// none, every segment (or GRO batch) a connection receives is a sample;
// with an hour, each connection gives its first one only.
func TestRTTSampleInterval(t *testing.T) {
	bpftest.RequireBPF(t)
	const conns, reply = 3, 300_000 // several segments each, even merged by GRO
	for _, tc := range []struct {
		interval time.Duration
		least    uint64
		most     uint64
	}{
		{0, 3 * conns, 1 << 62},
		{time.Hour, conns, conns},
	} {
		t.Run(tc.interval.String(), func(t *testing.T) {
			opts := testOptions
			opts.RTTSampleInterval = tc.interval
			tr, err := Load(opts)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer tr.Close()
			_, a, b := newPods(t, bpftest.PodOptions{})
			srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: 8080, Conns: conns, Send: reply})
			a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8080), Conns: conns, Recv: reply})
			srv.Wait(t)
			n := snapshot(t, tr).Flows[clientFlow(a.CgroupID, b.IP, 8080)].RttCount
			if n < tc.least || n > tc.most {
				t.Errorf("%d RTT samples of %d connections, want %d to %d", n, conns, tc.least, tc.most)
			}
		})
	}
}

// TestResets aborts a connection: A closes it with SO_LINGER 0, so A's
// socket sends a reset, which B's socket receives.
func TestResets(t *testing.T) {
	tr := load(t)
	_, a, b := newPods(t, bpftest.PodOptions{})
	const port, request, reply = 8080, 1000, 2000

	srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: port, Conns: 1, Recv: request, Send: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: 1, Send: request, Recv: reply, Reset: true})
	if got, want := srv.Wait(t), "eof 0 reset 1"; got != want {
		t.Fatalf("server: %q, want %q", got, want)
	}

	s := snapshot(t, tr)
	compareFlows(t, flowsOf(t, s, a.CgroupID, b.CgroupID), map[Flow]FlowStats{
		// The abort takes A's socket from ESTABLISHED to CLOSE (closed)
		// and sends one reset from it, which is A's.
		clientFlow(a.CgroupID, b.IP, port): {
			Opened:        opened(1, 0),
			Closed:        1,
			BytesSent:     request,
			BytesReceived: reply,
			ResetsSent:    1,
		},
		// B's socket receives the reset while ESTABLISHED, which also
		// closes it.
		serverFlow(b.CgroupID, a.IP, port): {
			Opened:         opened(1, 0),
			Closed:         1,
			BytesSent:      reply,
			BytesReceived:  request,
			ResetsReceived: 1,
		},
	})
}

// TestRetransmits loses some of A's data segments on the wire and checks that
// the retransmits count on A, the sender, with bytes still exact.
func TestRetransmits(t *testing.T) {
	tr := load(t)
	_, a, b := newPods(t, bpftest.PodOptions{})
	const port, request, reply = 8080, 4 << 20, 1
	drop := a.DropSent(t, port, 4)

	srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: port, Conns: 1, Recv: request, Send: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: 1, Send: request, Recv: reply})
	srv.Wait(t)
	dropped := drop.Dropped(t)
	if dropped == 0 {
		t.Fatal("no segment dropped")
	}

	s := snapshot(t, tr)
	got := flowsOf(t, s, a.CgroupID, b.CgroupID)
	client := got[clientFlow(a.CgroupID, b.IP, port)]
	server := got[serverFlow(b.CgroupID, a.IP, port)]
	t.Logf("dropped %d segments, retransmits: client %d, server %d", dropped, client.Retransmits, server.Retransmits)
	if client.Retransmits == 0 {
		t.Errorf("client: no retransmits")
	}
	// Only A's data was lost; B's reply and ACKs were not.
	if server.Retransmits != 0 {
		t.Errorf("server: %d retransmits, want 0", server.Retransmits)
	}
	client.Retransmits, server.Retransmits = 0, 0
	got[clientFlow(a.CgroupID, b.IP, port)] = client
	got[serverFlow(b.CgroupID, a.IP, port)] = server
	compareFlows(t, got, map[Flow]FlowStats{
		clientFlow(a.CgroupID, b.IP, port): {Opened: opened(1, 0), Closed: 1, BytesSent: request, BytesReceived: reply},
		serverFlow(b.CgroupID, a.IP, port): {Opened: opened(1, 0), Closed: 1, BytesSent: reply, BytesReceived: request},
	})
}

// TestHostProcess checks that a process in the host's root cgroup, not in a
// pod, gets flows of its own next to a pod's.
func TestHostProcess(t *testing.T) {
	tr := load(t)
	node, a, b := newPods(t, bpftest.PodOptions{})
	node.Sysctl(t, "net.ipv4.tcp_early_retrans", "0")
	// Node processes run in the root cgroup.
	if node.CgroupID == a.CgroupID || node.CgroupID == b.CgroupID || node.CgroupID == 0 {
		t.Fatalf("root cgroup id %d, pods %d and %d", node.CgroupID, a.CgroupID, b.CgroupID)
	}
	const port, request, reply = 8080, 1000, 2000

	srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: port, Conns: 3, Recv: request, Send: reply})
	node.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: 2, Send: request, Recv: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: 1, Send: request, Recv: reply})
	srv.Wait(t)

	s := snapshot(t, tr)
	got := flowsOf(t, s, a.CgroupID, b.CgroupID)
	// Other processes in the root cgroup may have flows of their own: keep
	// the host process's only.
	host := clientFlow(node.CgroupID, b.IP, port)
	if st, ok := s.Flows[host]; ok {
		st.RttCount, st.RttSumUs, st.RttBuckets = 0, 0, [RTTBuckets]uint64{}
		got[host] = st
	}
	compareFlows(t, got, map[Flow]FlowStats{
		host:                               {Opened: opened(2, 0), Closed: 2, BytesSent: 2 * request, BytesReceived: 2 * reply},
		clientFlow(a.CgroupID, b.IP, port): {Opened: opened(1, 0), Closed: 1, BytesSent: request, BytesReceived: reply},
		// B tells its peers apart by address: the node's and A's.
		serverFlow(b.CgroupID, node.IP, port): {Opened: opened(2, 0), Closed: 2, BytesSent: 2 * reply, BytesReceived: 2 * request},
		serverFlow(b.CgroupID, a.IP, port):    {Opened: opened(1, 0), Closed: 1, BytesSent: reply, BytesReceived: request},
	})
}

// writeBTF writes a valid BTF file that has none of the kernel's types.
func writeBTF(t *testing.T, path string) {
	t.Helper()
	var b btf.Builder
	if _, err := b.Add(&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}); err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKernelBTF loads with kernel BTF files that cannot serve: each fails
// Load with the path and the reason, as every part needs CO-RE. The running
// kernel's file, named or not, still serves in the same process.
func TestKernelBTF(t *testing.T) {
	bpftest.RequireBPF(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("no BTF in here, only text"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.btf")
	writeBTF(t, empty)
	for _, c := range []struct {
		name, path, reason string
	}{
		{"missing", filepath.Join(dir, "missing"), "no such file or directory"},
		{"directory", dir, "is a directory"},
		{"garbage", garbage, "no valid BTF header"},
		// The file parses, but CO-RE finds no struct sock in it.
		{"no kernel types", empty, "kernel BTF " + empty + ": ebr_tcp_state on sock:inet_sock_set_state: verifier: load program: bad CO-RE relocation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := testOptions
			opts.KernelBTF = c.path
			tr, err := Load(opts)
			if err == nil {
				tr.Close()
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), "kernel BTF "+c.path+": ") || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q, want the path %s and %q", err, c.path, c.reason)
			}
		})
	}
	opts := testOptions
	opts.KernelBTF = "/sys/kernel/btf/vmlinux"
	tr, err := Load(opts)
	if err != nil {
		t.Fatalf("load with %s: %v", opts.KernelBTF, err)
	}
	checkDisabled(t, tr.Disabled())
	tr.Close()
	load(t)
}

// TestRejectProgram makes the verifier reject one program for real: its part
// is disabled with the verifier's reason, and the other parts still count
// real traffic. Rejecting a connections program fails Load.
func TestRejectProgram(t *testing.T) {
	bpftest.RequireBPF(t)
	opts := testOptions
	opts.RejectProgram = "ebr_tcp_state"
	if tr, err := Load(opts); err == nil {
		tr.Close()
		t.Fatal("loaded without ebr_tcp_state")
	} else if !strings.HasPrefix(err.Error(), "ebr_tcp_state on sock:inet_sock_set_state: verifier: ") {
		t.Errorf("error %q, want the program and the verifier", err)
	}
	opts.RejectProgram = "ebr_no_such_program"
	if tr, err := Load(opts); err == nil {
		tr.Close()
		t.Fatal("loaded with an unknown program to reject")
	}

	opts.RejectProgram = "ebr_tcp_probe"
	tr, err := Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	d := tr.Disabled()
	var verr *ebpf.VerifierError
	if err := d[PartRTT]; !errors.As(err, &verr) || !strings.HasPrefix(err.Error(), "ebr_tcp_probe on tcp:tcp_probe: verifier: ") {
		t.Errorf("tcp.rtt disabled by %v, want a verifier error naming ebr_tcp_probe", err)
	}
	delete(d, PartRTT)
	checkDisabled(t, d)

	_, a, b := newPods(t, bpftest.PodOptions{})
	const port, conns, request, reply = 8080, 3, 10_000, 20_000
	srv := b.StartTCPServer(t, bpftest.ServerOptions{Port: port, Conns: conns, Recv: request, Send: reply})
	a.RunTCPClient(t, bpftest.ClientOptions{Addr: netip.AddrPortFrom(b.IP, port), Conns: conns, Send: request, Recv: reply})
	srv.Wait(t)

	s := snapshot(t, tr)
	got := flowsOf(t, s, a.CgroupID, b.CgroupID)
	// A slow machine (6.1 under TCG) may retransmit now and then.
	for f, st := range got {
		st.Retransmits = 0
		got[f] = st
	}
	compareFlows(t, got, map[Flow]FlowStats{
		clientFlow(a.CgroupID, b.IP, port): {Opened: opened(conns, 0), Closed: conns, BytesSent: conns * request, BytesReceived: conns * reply},
		serverFlow(b.CgroupID, a.IP, port): {Opened: opened(conns, 0), Closed: conns, BytesSent: conns * reply, BytesReceived: conns * request},
	})
	checkRTT(t, s, clientFlow(a.CgroupID, b.IP, port), 0)
	checkRTT(t, s, serverFlow(b.CgroupID, a.IP, port), 0)
}
