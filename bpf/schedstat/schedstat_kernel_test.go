//go:build linux

package schedstat

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

func TestMain(m *testing.M) {
	bpftest.RunHelperIfRequested(map[string]bpftest.HelperFunc{
		"burn":      burn,
		"serve":     serve,
		"ping-pong": pingPong,
	})
	os.Exit(m.Run())
}

var testOptions = Options{MaxCgroups: 1024}

// clockTick is sysconf(_SC_CLK_TCK), the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture we build for.
const clockTick = 10 * time.Millisecond

func load(t *testing.T, opts Options) *Tracer {
	t.Helper()
	bpftest.RequireBPF(t)
	tr, err := Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func snapshot(t *testing.T, tr *Tracer) Snapshot {
	t.Helper()
	var s Snapshot
	if err := tr.Snapshot(&s); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// checkHistogram checks that the buckets add up to the count, and that the
// sum lies within what the buckets allow.
func checkHistogram(t *testing.T, name string, s Stats) {
	t.Helper()
	var n, lo, hi uint64
	for i, b := range s.RunqBuckets {
		n += b
		if i > 0 {
			lo += b << i * 1000
		}
		if i < LatencyBuckets-1 {
			hi += b << (i + 1) * 1000
		}
	}
	if n != s.RunqCount {
		t.Errorf("%s: %d waits in buckets, count %d", name, n, s.RunqCount)
	}
	if s.RunqSumNs < lo || (s.RunqBuckets[LatencyBuckets-1] == 0 && s.RunqSumNs > hi) {
		t.Errorf("%s: sum %d ns outside [%d, %d] from buckets %v", name, s.RunqSumNs, lo, hi, s.RunqBuckets)
	}
}

func mean(s Stats) time.Duration {
	if s.RunqCount == 0 {
		return 0
	}
	return time.Duration(s.RunqSumNs / s.RunqCount)
}

// over returns the waits of at least 2^i microseconds.
func over(s Stats, i int) uint64 {
	var n uint64
	for _, b := range s.RunqBuckets[i:] {
		n += b
	}
	return n
}

// TestLoad attaches every program to its hook, and checks that Close leaves
// none of them in the kernel.
func TestLoad(t *testing.T) {
	bpftest.RequireBPF(t)
	tr, err := Load(testOptions)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var hooks []string
	var progs []ebpf.ProgramID
	var links []link.ID
	var mapIDs []ebpf.MapID
	for _, l := range tr.Links() {
		info, err := l.Info()
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		if info.Type != link.RawTracepointType {
			t.Fatalf("link %d: type %v, want raw tracepoint", info.ID, info.Type)
		}
		hooks = append(hooks, info.RawTracepoint().Name)
		progs = append(progs, info.Program)
		links = append(links, info.ID)
	}
	var want []string
	for _, h := range Hooks {
		_, event, _ := strings.Cut(h, ":")
		want = append(want, event)
	}
	if !slices.Equal(hooks, want) {
		t.Errorf("attached to %v, want %v", hooks, want)
	}
	if n := len(tr.Programs()); n != len(Hooks) {
		t.Errorf("%d programs, want %d", n, len(Hooks))
	}
	for _, m := range tr.Maps() {
		info, err := m.Info()
		if err != nil {
			t.Fatalf("map info: %v", err)
		}
		id, _ := info.ID()
		mapIDs = append(mapIDs, id)
	}

	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The kernel frees programs and maps a little after their last
	// reference goes.
	deadline := time.Now().Add(10 * time.Second)
	gone := func(what string, id uint32, open func() (interface{ Close() error }, error)) {
		for {
			o, err := open()
			if errors.Is(err, os.ErrNotExist) {
				return
			}
			if err == nil {
				o.Close()
			}
			if time.Now().After(deadline) {
				t.Errorf("%s %d still exists after close: %v", what, id, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, id := range progs {
		gone("program", uint32(id), func() (interface{ Close() error }, error) { return ebpf.NewProgramFromID(id) })
	}
	for _, id := range links {
		gone("link", uint32(id), func() (interface{ Close() error }, error) { return link.NewFromID(id) })
	}
	for _, id := range mapIDs {
		gone("map", uint32(id), func() (interface{ Close() error }, error) { return ebpf.NewMapFromID(id) })
	}
}

// The latency-sensitive helper serves requests: each is requestCPU of work
// then a 1 ms sleep, like a server between two requests.
const (
	requests   = 50
	requestCPU = 20 * time.Millisecond
)

// TestRunQueueLatency runs the request helper first alone on its CPU, then
// sharing it with two CPU-bound processes. All helpers run bound to the same
// CPU (the first they may use). Loaded, each request outlasts the
// scheduler's slice (a few ms under CFS and EEVDF alike), so the helper is
// preempted and waits while the burners run: its waits grow from tens of
// microseconds to milliseconds. A helper that only slept would not show
// this on CFS, which lets a waking sleeper run at once. The margins still
// fail if no wait were measured, or if waits went to the wrong cgroup.
func TestRunQueueLatency(t *testing.T) {
	tr := load(t, testOptions)
	node := bpftest.NewNode(t)
	burners := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	loaded := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	alone := bpftest.NewPod(t, bpftest.PodOptions{Node: node})

	serve := []string{"serve", "-n", strconv.Itoa(requests), "-cpu", requestCPU.String()}
	alone.StartHelper(t, false, serve[0], serve[1:]...).Wait(t)
	for range 2 {
		burners.StartHelper(t, true, "burn")
	}
	loaded.StartHelper(t, false, serve[0], serve[1:]...).Wait(t)
	s := snapshot(t, tr)

	a, l, b := s.Cgroups[alone.CgroupID], s.Cgroups[loaded.CgroupID], s.Cgroups[burners.CgroupID]
	t.Logf("alone: %d waits, mean %v, buckets %v", a.RunqCount, mean(a), a.RunqBuckets)
	t.Logf("loaded: %d waits, mean %v, buckets %v", l.RunqCount, mean(l), l.RunqBuckets)
	t.Logf("burners: on-CPU %v, %d involuntary switches", time.Duration(b.OncpuNs), b.Involuntary)
	for name, st := range map[string]Stats{"alone": a, "loaded": l} {
		checkHistogram(t, name, st)
		// Every wakeup from a sleep is one wait; the Go runtime adds its
		// own threads' wakeups.
		if st.RunqCount < requests {
			t.Errorf("%s: %d waits, want at least %d", name, st.RunqCount, requests)
		}
	}
	// Total waits, not means: the Go runtime's own threads add many short
	// waits to both, in numbers that vary from run to run, and a busy host
	// lengthens alone's too. Sharing its CPU fairly with two burners, the
	// loaded helper waits about twice its own CPU time more than alone;
	// a quarter of that leaves room for noise.
	if extra := time.Duration(l.RunqSumNs) - time.Duration(a.RunqSumNs); extra < requests*requestCPU/2 {
		t.Errorf("loaded waited %v in all, alone %v: want at least %v more",
			time.Duration(l.RunqSumNs), time.Duration(a.RunqSumNs), requests*requestCPU/2)
	}
	// Waits of 1 ms and more: at least one preemption in most requests.
	if over(l, 10) < requests/2 || over(l, 10) < over(a, 10)+requests/2 {
		t.Errorf("waits over 1ms: loaded %d of %d, alone %d of %d", over(l, 10), l.RunqCount, over(a, 10), a.RunqCount)
	}
	if l.Involuntary < requests/2 {
		t.Errorf("loaded: %d involuntary switches, want at least %d", l.Involuntary, requests/2)
	}
	if b.Involuntary == 0 || b.OncpuNs == 0 {
		t.Errorf("burners: on-CPU %d ns, %d involuntary switches, want both positive", b.OncpuNs, b.Involuntary)
	}
	if s.Lost != (Lost{}) || s.Overflow != (Stats{}) {
		t.Errorf("lost %+v, overflow %+v", s.Lost, s.Overflow)
	}
}

// TestOnCPU burns about 300 ms of CPU in a pod and compares the cgroup's
// on-CPU time with the utime+stime that the kernel reports for the process
// once it idles. /proc rounds to clock ticks and splits user and system
// time by sampling, so the tolerance is 2 ticks plus 10%.
func TestOnCPU(t *testing.T) {
	tr := load(t, testOptions)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	p := pod.StartHelper(t, true, "burn", "-cpu", "300ms")
	ticks := cpuTicks(t, p.Pid())
	got := time.Duration(snapshot(t, tr).Cgroups[pod.CgroupID].OncpuNs)
	want := time.Duration(ticks) * clockTick
	t.Logf("on-CPU %v, utime+stime %v", got, want)
	if want < 250*time.Millisecond {
		t.Fatalf("helper used %v of CPU, want at least 250ms", want)
	}
	if d := (got - want).Abs(); d > 2*clockTick+want/10 {
		t.Errorf("on-CPU %v, utime+stime %v: off by %v", got, want, d)
	}
}

// cpuTicks returns utime+stime of process pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...: utime and stime are fields 14 and 15.
	_, rest, _ := strings.Cut(string(raw), ") ")
	f := strings.Fields(rest)
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("parse /proc/%d/stat: %v", pid, err)
	}
	return utime + stime
}

// sleeps is how many times TestBounded's helpers sleep and wake.
const sleeps = 300

// TestBounded fills a two-entry map: cgroups that do not fit go to the
// overflow entry and count as lost.
func TestBounded(t *testing.T) {
	tr := load(t, Options{MaxCgroups: 2})
	node := bpftest.NewNode(t)
	var ids []uint64
	for range 3 {
		pod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
		pod.StartHelper(t, false, "serve", "-n", strconv.Itoa(sleeps)).Wait(t)
		ids = append(ids, pod.CgroupID)
	}
	s := snapshot(t, tr)
	t.Logf("%d cgroups, overflow %d waits, lost %+v", len(s.Cgroups), s.Overflow.RunqCount, s.Lost)
	if len(s.Cgroups) > 2 {
		t.Errorf("%d cgroups in a map of 2", len(s.Cgroups))
	}
	// At least one of the three pods did not fit: all its waits overflowed.
	if s.Overflow.RunqCount < sleeps || s.Lost.CgroupsFull < sleeps {
		t.Errorf("overflow %d waits, %d lost updates, want at least %d each", s.Overflow.RunqCount, s.Lost.CgroupsFull, sleeps)
	}
	checkHistogram(t, "overflow", s.Overflow)
}

// TestDeleteCgroups removes a pod's entry once its process is gone.
func TestDeleteCgroups(t *testing.T) {
	tr := load(t, testOptions)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	pod.StartHelper(t, false, "serve", "-n", "10").Wait(t)
	if _, ok := snapshot(t, tr).Cgroups[pod.CgroupID]; !ok {
		t.Fatalf("pod's cgroup %d not in the map", pod.CgroupID)
	}
	if err := tr.DeleteCgroups([]uint64{pod.CgroupID, 1 << 62}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if st, ok := snapshot(t, tr).Cgroups[pod.CgroupID]; ok {
		t.Errorf("pod's cgroup %d still in the map after delete: %+v", pod.CgroupID, st)
	}
}

// burn spins. With -cpu it stops once the process has used that much CPU,
// prints "ready" and idles until killed; without, it prints "ready" first
// and spins until killed.
func burn(args []string) error {
	fs := flag.NewFlagSet("burn", flag.ContinueOnError)
	cpu := fs.Duration("cpu", 0, "CPU time to use; 0 spins forever")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpu == 0 {
		fmt.Println("ready")
	}
	for *cpu == 0 || processCPU() < *cpu {
		for i := 0; i < 1e5; i++ {
			spin++
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return nil
}

var spin int

func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// serve handles -n requests on one thread: each uses -cpu of CPU time,
// then sleeps 1 ms.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	n := fs.Int("n", 1, "requests")
	work := fs.Duration("cpu", 0, "CPU time of each request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runtime.LockOSThread()
	ts := unix.NsecToTimespec(int64(time.Millisecond))
	for range *n {
		for end := threadCPU() + *work; threadCPU() < end; {
			for i := 0; i < 1e4; i++ {
				spin++
			}
		}
		if err := unix.Nanosleep(&ts, nil); err != nil {
			return err
		}
	}
	return nil
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}
