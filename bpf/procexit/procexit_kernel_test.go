//go:build linux

package procexit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

func TestMain(m *testing.M) {
	bpftest.RunHelperIfRequested(map[string]bpftest.HelperFunc{
		"segv":     segv,
		"threads":  threads,
		"allocate": allocate,
	})
	os.Exit(m.Run())
}

// testOptions send every record of these tests: the rate limit test sets
// its own.
var testOptions = Options{MaxSeries: 4096, LogsPerSecond: 1000, PollInterval: 10 * time.Millisecond}

// tracer is a loaded Tracer and the records it has read so far.
type tracer struct {
	*Tracer
	mu     sync.Mutex
	events []Event
	err    error
}

func load(t *testing.T, opts Options) *tracer {
	t.Helper()
	bpftest.RequireBPF(t)
	tr, err := Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if d := tr.Disabled(); len(d) != 0 {
		tr.Close()
		t.Fatalf("disabled parts: %v", d)
	}
	r := &tracer{Tracer: tr}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var e Event
			err := tr.Read(&e)
			r.mu.Lock()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					r.err = err
				}
				r.mu.Unlock()
				return
			}
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tr.Close()
		<-done
		if r.err != nil {
			t.Errorf("read: %v", r.err)
		}
	})
	return r
}

// eventsOf returns the records read so far of one kind, of the cgroup id or
// of every cgroup if id is 0.
func (r *tracer) eventsOf(kind Kind, id uint64) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind && (id == 0 || e.CgroupID == id) {
			out = append(out, e)
		}
	}
	return out
}

func (r *tracer) snapshot(t *testing.T) Snapshot {
	t.Helper()
	var s Snapshot
	if err := r.Snapshot(&s); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// exitsOf returns the exit series of one cgroup.
func exitsOf(s Snapshot, id uint64) map[ExitKey]uint64 {
	out := make(map[ExitKey]uint64)
	for k, v := range s.Exits {
		if k.CgroupId == id {
			out[k] = v
		}
	}
	return out
}

// eventually calls check until it returns nil, and fails t with its last
// error after a minute: generous, for a loaded machine and emulated guests.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle waits long enough for records already sent to be read.
func settle() { time.Sleep(20 * testOptions.PollInterval) }

func monotonic(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// helperComm is the kernel's name of the helper processes: the test
// binary's file name, cut to 15 bytes.
func helperComm(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Base(exe)
	return c[:min(len(c), 15)]
}

// proc is a helper process that runs in a sandbox.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *bufio.Reader
	stderr bytes.Buffer
}

// start starts the helper name in s. Cleanup kills it if it still runs.
func start(t *testing.T, s *bpftest.Sandbox, name string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	hc := bpftest.HelperCommand(ctx, name, args...)
	p := &proc{cmd: s.Command(ctx, hc.Path, hc.Args[1:]...)}
	p.cmd.Env = hc.Env
	p.cmd.Stderr = &p.stderr
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdin, p.stdin = stdinR, stdinW
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", name, err)
	}
	stdinR.Close()
	t.Cleanup(func() {
		cancel()
		stdinW.Close()
		p.cmd.Wait()
	})
	return p
}

// ready waits for the helper's "ready" line.
func (p *proc) ready(t *testing.T) {
	t.Helper()
	if l, err := p.stdout.ReadString('\n'); l != "ready\n" {
		t.Fatalf("helper not ready (%q, %v): %s", l, err, p.stderr.String())
	}
}

// wait waits for the helper to end and returns how it ended.
func (p *proc) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	err := p.cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("wait helper: %v", err)
	}
	return p.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// exit runs a shell in s that exits with status code.
func exit(t *testing.T, s *bpftest.Sandbox, code int) {
	t.Helper()
	err := s.Command(t.Context(), "sh", "-c", fmt.Sprintf("exit %d", code)).Run()
	var exitErr *exec.ExitError
	if code == 0 && err != nil || code != 0 && (!errors.As(err, &exitErr) || exitErr.ExitCode() != code) {
		t.Fatalf("sh -c 'exit %d': %v", code, err)
	}
}

func TestLoad(t *testing.T) {
	if got, want := Parts(), []string{PartExits, PartOOM}; !slices.Equal(got, want) {
		t.Errorf("parts %v, want %v", got, want)
	}
	want := map[string][]string{
		PartExits: {"sched:sched_process_exit"},
		PartOOM:   {"oom:mark_victim", "sched:sched_process_exit"},
	}
	if got := Hooks; !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("hooks %v, want %v", got, want)
	}
	for _, o := range []Options{
		{LogsPerSecond: 1, PollInterval: time.Second},
		{MaxSeries: 1, LogsPerSecond: 1},
	} {
		if tr, err := Load(o); err == nil {
			tr.Close()
			t.Errorf("load %+v: no error", o)
		}
	}
	tr := load(t, testOptions)
	if n := len(tr.Programs()); n != 2 {
		t.Errorf("%d programs, want 2", n)
	}
	var names []string
	for _, m := range tr.Maps() {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, info.Name)
	}
	for _, name := range []string{"exits", "oom_kills", "overflow", "counters", "victims", "counted", "rate", "events"} {
		if !slices.Contains(names, name) {
			t.Errorf("maps %v lack %s", names, name)
		}
	}
	s := tr.snapshot(t)
	if s.Lost.SeriesFull != 0 || s.Overflow.Exits != 0 || s.Overflow.OOMKills != 0 {
		t.Errorf("fresh maps overflow: %+v", s)
	}
}

// TestExits runs processes that die by a segfault, exit with a failure,
// exit with success, and die by SIGKILL with many threads, each in its own
// pod.
func TestExits(t *testing.T) {
	tr := load(t, testOptions)
	node := bpftest.NewNode(t)
	segvPod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	failPod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	okPod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
	threadsPod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})

	before := monotonic(t)
	p := start(t, &segvPod.Sandbox, "segv")
	if ws := p.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGSEGV || ws.CoreDump() {
		t.Fatalf("segv helper ended with %#x, want killed by SIGSEGV, no core: %s", ws, p.stderr.String())
	}
	after := monotonic(t)
	segvPID := p.cmd.Process.Pid
	exit(t, &failPod.Sandbox, 3)
	exit(t, &okPod.Sandbox, 0)
	// Killed threads exit at once on every CPU: the process still counts
	// once.
	const procs, nthreads = 5, 16
	var threadPIDs []uint32
	for range procs {
		p := start(t, &threadsPod.Sandbox, "threads", strconv.Itoa(nthreads))
		p.ready(t)
		if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)); err != nil || len(tasks) <= nthreads {
			t.Fatalf("threads helper has %d threads (%v), want more than %d", len(tasks), err, nthreads)
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		if ws := p.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("threads helper ended with %#x, want killed by SIGKILL", ws)
		}
		threadPIDs = append(threadPIDs, uint32(p.cmd.Process.Pid))
	}

	eventually(t, func() error {
		if n := len(tr.eventsOf(KindSignaled, threadsPod.CgroupID)); n < procs {
			return fmt.Errorf("%d records of killed processes, want %d", n, procs)
		}
		if n := len(tr.eventsOf(KindSignaled, segvPod.CgroupID)); n < 1 {
			return errors.New("no record of the segfault")
		}
		return nil
	})
	settle()
	s := tr.snapshot(t)
	for _, c := range []struct {
		name string
		id   uint64
		want map[ExitKey]uint64
	}{
		{"segfault", segvPod.CgroupID, map[ExitKey]uint64{{CgroupId: segvPod.CgroupID, Signal: 11}: 1}},
		{"exit 3", failPod.CgroupID, map[ExitKey]uint64{{CgroupId: failPod.CgroupID, Status: 3}: 1}},
		{"exit 0", okPod.CgroupID, map[ExitKey]uint64{}},
		{"threads", threadsPod.CgroupID, map[ExitKey]uint64{{CgroupId: threadsPod.CgroupID, Signal: 9}: procs}},
	} {
		if got := exitsOf(s, c.id); !maps.Equal(got, c.want) {
			t.Errorf("%s: exits %v, want %v", c.name, got, c.want)
		}
		if c.name != "segfault" && c.name != "threads" {
			if e := tr.eventsOf(KindSignaled, c.id); len(e) != 0 {
				t.Errorf("%s: records %+v, want none", c.name, e)
			}
		}
	}

	segvs := tr.eventsOf(KindSignaled, segvPod.CgroupID)
	if len(segvs) != 1 {
		t.Fatalf("segfault records %+v, want one", segvs)
	}
	e := segvs[0]
	if e.PID != uint32(segvPID) || e.TID == 0 || e.Signal != 11 || e.Status != 0 || e.CoreDumped ||
		e.HasFigures || e.Comm != helperComm(t) || e.Time < before || e.Time > after {
		t.Errorf("segfault record %+v, want pid %d, signal 11, comm %q, time in [%d, %d]",
			e, segvPID, helperComm(t), before, after)
	}
	var gotPIDs []uint32
	for _, e := range tr.eventsOf(KindSignaled, threadsPod.CgroupID) {
		if e.Signal != 9 {
			t.Errorf("killed process record %+v, want signal 9", e)
		}
		gotPIDs = append(gotPIDs, e.PID)
	}
	slices.Sort(gotPIDs)
	slices.Sort(threadPIDs)
	if !slices.Equal(gotPIDs, threadPIDs) {
		t.Errorf("killed process records for pids %v, want %v", gotPIDs, threadPIDs)
	}
	if s.Lost.SeriesFull != 0 || s.Lost.RingbufFull != 0 {
		t.Errorf("lost %+v", s.Lost)
	}

	if err := tr.DeleteCgroups([]uint64{segvPod.CgroupID, failPod.CgroupID}); err != nil {
		t.Fatalf("delete cgroups: %v", err)
	}
	s = tr.snapshot(t)
	if n := len(exitsOf(s, segvPod.CgroupID)) + len(exitsOf(s, failPod.CgroupID)); n != 0 {
		t.Errorf("%d series of deleted cgroups left", n)
	}
	if n := s.Exits[ExitKey{CgroupId: threadsPod.CgroupID, Signal: 9}]; n != procs {
		t.Errorf("after deleting other cgroups, killed processes count %d, want %d", n, procs)
	}
}

// oomFigures reports whether the kernel's oom:mark_victim passes the
// victim's task, from which the program reads the memory figures (Linux
// 6.8 and later, and stable updates such as Debian's 6.1.0-56).
func oomFigures(t *testing.T) bool {
	t.Helper()
	return bpftest.TracepointArgs(t, "oom", "mark_victim") == 2
}

func TestOOMKill(t *testing.T) {
	const limit = 48 << 20
	const scoreAdj = 500
	tr := load(t, testOptions)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	procs := pod.LimitMemory(t, limit)

	p := start(t, &pod.Sandbox, "allocate", strconv.Itoa(scoreAdj))
	p.ready(t)
	pid := p.cmd.Process.Pid
	if procs != "" {
		if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatalf("move helper to the memory cgroup: %v", err)
		}
	}
	if _, err := p.stdin.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	if ws := p.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("allocating helper ended with %#x, want killed by SIGKILL: %s", ws, p.stderr.String())
	}

	eventually(t, func() error {
		if len(tr.eventsOf(KindOOMKill, pod.CgroupID)) == 0 {
			s := tr.snapshot(t)
			return fmt.Errorf("no OOM kill record; disabled parts %v, OOM kills counted %d, lost %+v, records of the pod %+v",
				tr.Disabled(), s.OOMKills[pod.CgroupID], s.Lost, tr.eventsOf(KindSignaled, pod.CgroupID))
		}
		return nil
	})
	settle()
	s := tr.snapshot(t)
	if got, want := exitsOf(s, pod.CgroupID), map[ExitKey]uint64{{CgroupId: pod.CgroupID, Signal: 9}: 1}; !maps.Equal(got, want) {
		t.Errorf("exits %v, want %v", got, want)
	}
	if n := s.OOMKills[pod.CgroupID]; n != 1 {
		t.Errorf("OOM kills %d, want 1", n)
	}
	oom := tr.eventsOf(KindOOMKill, pod.CgroupID)
	if len(oom) != 1 {
		t.Fatalf("OOM kill records %+v, want one", oom)
	}
	e := oom[0]
	t.Logf("kernel %s: %+v", bpftest.KernelRelease(t), e)
	if e.PID != uint32(pid) || e.TID == 0 || e.Comm != helperComm(t) || e.Signal != 0 || e.Status != 0 {
		t.Errorf("OOM kill record %+v, want pid %d, comm %q", e, pid, helperComm(t))
	}
	if !oomFigures(t) {
		if e.HasFigures || e.AnonRSSKB != 0 || e.TotalVMKB != 0 {
			t.Errorf("OOM kill record %+v has figures the kernel does not give", e)
		}
		return
	}
	// The charges made before the helper moved into a cgroup v1 limit stay
	// outside it.
	if !e.HasFigures || e.AnonRSSKB < limit/2>>10 || e.AnonRSSKB > 2*limit>>10 ||
		e.TotalVMKB < e.AnonRSSKB || e.PgtablesKB == 0 || e.UID != 0 || e.OOMScoreAdj != scoreAdj {
		t.Errorf("OOM kill record %+v, want anon rss in [%d, %d] kB, uid 0, oom_score_adj %d",
			e, limit/2>>10, 2*limit>>10, scoreAdj)
	}
}

// TestRateLimit kills many processes by a signal, faster than the records
// are allowed: even under qemu's emulation, which runs about 10 a second.
func TestRateLimit(t *testing.T) {
	const deaths, perSecond = 300, 5
	opts := testOptions
	opts.LogsPerSecond = perSecond
	tr := load(t, opts)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})

	start := time.Now()
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do sh -c 'kill -TERM $$'; i=$((i+1)); done`, deaths)
	if out, err := pod.Command(t.Context(), "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("kill storm: %v: %s", err, out)
	}
	elapsed := time.Since(start)

	var s Snapshot
	want := map[ExitKey]uint64{{CgroupId: pod.CgroupID, Signal: 15}: deaths}
	eventually(t, func() error {
		s = tr.snapshot(t)
		if got := exitsOf(s, pod.CgroupID); !maps.Equal(got, want) {
			return fmt.Errorf("exits %v, want %v", got, want)
		}
		// Every death by signal on the node, ours and others', was sent or
		// counted as refused.
		var signaled uint64
		for k, v := range s.Exits {
			if k.Signal != 0 {
				signaled += v
			}
		}
		sent := uint64(len(tr.eventsOf(KindSignaled, 0)))
		if s.Overflow.Exits != 0 || sent+s.Lost.RateLimited+s.Lost.RingbufFull != signaled {
			return fmt.Errorf("%d records sent + %+v != %d deaths by signal (overflow %d)",
				sent, s.Lost, signaled, s.Overflow.Exits)
		}
		return nil
	})
	// The storm spans at most this many one-second windows, and in each
	// the CPUs may race past the limit by one record each (deaths of other
	// processes of the node run concurrently).
	windows := int(elapsed.Seconds()) + 2
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	sent, all := len(tr.eventsOf(KindSignaled, pod.CgroupID)), len(tr.eventsOf(KindSignaled, 0))
	t.Logf("%d deaths in %s: %d records (%d on the node), %+v", deaths, elapsed, sent, all, s.Lost)
	// Other processes of the node that die meanwhile take their share of
	// the limit, at most the whole of it.
	most := (perSecond + ncpu) * windows
	if sent > most || all < perSecond {
		t.Errorf("%d records (%d on the node) in %s, want at most %d, and at least %d on the node",
			sent, all, elapsed, most, perSecond)
	}
	if refused := deaths - most; refused > 0 && s.Lost.RateLimited < uint64(refused) {
		t.Errorf("%d records refused, want at least %d", s.Lost.RateLimited, refused)
	}
	if s.Lost.RingbufFull != 0 {
		t.Errorf("ring buffer full %d times", s.Lost.RingbufFull)
	}
}

// TestMaxSeries fails processes in more cgroups than the exits map holds.
func TestMaxSeries(t *testing.T) {
	const maxSeries, pods = 2, 4
	opts := testOptions
	opts.MaxSeries = maxSeries
	tr := load(t, opts)
	node := bpftest.NewNode(t)
	var ids []uint64
	for range pods {
		pod := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
		exit(t, &pod.Sandbox, 3)
		ids = append(ids, pod.CgroupID)
	}
	s := tr.snapshot(t)
	kept := 0
	for _, id := range ids {
		kept += len(exitsOf(s, id))
	}
	if len(s.Exits) > maxSeries || kept > maxSeries || s.Overflow.Exits < uint64(pods-kept) {
		t.Errorf("%d series (%d of ours), overflow %d; want at most %d series and %d overflowed",
			len(s.Exits), kept, s.Overflow.Exits, maxSeries, pods-kept)
	}
	if s.Lost.SeriesFull != s.Overflow.Exits+s.Overflow.OOMKills {
		t.Errorf("series full %d, want the overflow %+v", s.Lost.SeriesFull, s.Overflow)
	}
}

// segv dies by SIGSEGV from a write to address 0.
func segv([]string) error {
	// No core file: the default core_pattern writes one in the working
	// directory.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return err
	}
	// Go turns a fault into a panic. With SIGSEGV's default action back
	// (a zero struct sigaction), the kernel kills the process instead.
	var act [4]uint64
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSEGV),
		uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
		return fmt.Errorf("reset SIGSEGV: %w", e)
	}
	*nowhere = 1
	return errors.New("wrote to address 0")
}

var nowhere *int32

// threads starts args[0] more threads, says ready, and sleeps.
func threads(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			time.Sleep(time.Hour)
		}()
	}
	wg.Wait()
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return nil
}

// allocate sets its oom_score_adj to args[0], says ready, waits for a line
// on stdin (its starter may move it to a memory cgroup meanwhile), then
// allocates memory until it is killed.
func allocate(args []string) error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(args[0]), 0); err != nil {
		return err
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	var chunks [][]byte
	for len(chunks) < 4096 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
	return fmt.Errorf("allocated %d MiB, not killed", len(chunks))
}
