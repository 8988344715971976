package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The node pressure that pressureTraffic makes, per round.
const (
	ioBlock    = 64 << 10 // bytes per O_DIRECT request of dd
	ioBlocks   = 16
	hogLimit   = 64 << 20 // the memory limit the OOM-killed process runs under
	oomEvery   = 4        // rounds between two OOM kills
	roundEvery = time.Second
)

// pressure is what pressureTraffic runs in: a cgroup v2 of its own, which
// the receiver exports as one container's Resource, and a loop device.
type pressure struct {
	// CgroupPath is the cgroup's path relative to the cgroup v2 mount, as
	// the receiver's cgroup.path gives it.
	CgroupPath string
	// Device is the loop device's kernel name, the system.device of its I/O.
	Device string
}

// pressureTraffic makes the data of the pressure dashboard in a cgroup of
// its own, once a round until ctx ends: more CPU-bound shells than CPUs (CPU
// time, preemption, run-queue waits), an exit with status 3, a death by
// SIGSEGV, O_DIRECT writes and reads on a loop device, and every oomEvery
// rounds a process that the kernel OOM-kills under a memory limit. The first
// round runs before it returns, and each of its outcomes is checked.
func pressureTraffic(ctx context.Context, t *testing.T, wg *sync.WaitGroup, dir string) pressure {
	t.Helper()
	v2 := cgroup2Mount(t)
	name := fmt.Sprintf("otelcol-ebpf-deploy-%d", os.Getpid())
	cg := filepath.Join(v2, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("make cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, cg) })
	cgDir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgDir.Close() })
	hogProcs := limitMemory(t, v2, cg, name)
	loop := newLoop(t, dir, 8<<20)

	// run starts script with sh in the cgroup (clone3 CLONE_INTO_CGROUP);
	// before waits for the start, to move the process into a v1 memory
	// cgroup and let it go on.
	run := func(script string, before func(*exec.Cmd, io.Writer) error) (*os.ProcessState, error) {
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgDir.Fd())}
		var stdin io.WriteCloser
		if before != nil {
			var err error
			if stdin, err = cmd.StdinPipe(); err != nil {
				return nil, err
			}
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if before != nil {
			if err := before(cmd, stdin); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				return nil, err
			}
			stdin.Close()
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = nil // the status is the caller's to check
		}
		return cmd.ProcessState, err
	}
	// tail buffers /dev/zero in search of a newline until the kernel kills
	// it. It waits for a line on stdin first, so that on a cgroup v1 memory
	// controller it is under the limit before it allocates.
	oom := func(cmd *exec.Cmd, stdin io.Writer) error {
		if hogProcs != "" {
			if err := os.WriteFile(hogProcs, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
				return fmt.Errorf("move to the memory cgroup: %w", err)
			}
		}
		_, err := io.WriteString(stdin, "go\n")
		return err
	}
	const burn = "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"
	dd := fmt.Sprintf("dd if=/dev/zero of=%[1]s bs=%[2]d count=%[3]d oflag=direct status=none && "+
		"dd if=%[1]s of=/dev/null bs=%[2]d count=%[3]d iflag=direct status=none", loop.path, ioBlock, ioBlocks)

	// round runs one round; check reports an outcome that is not the one
	// wanted.
	round := func(n int, check func(what string, st *os.ProcessState, err error, want string)) {
		var burners sync.WaitGroup
		for range runtime.NumCPU() + 1 {
			burners.Go(func() {
				st, err := run(burn, nil)
				check("CPU burner", st, err, "exit status 0")
			})
		}
		burners.Wait()
		st, err := run("exit 3", nil)
		check("exit 3", st, err, "exit status 3")
		st, err = run("ulimit -c 0; kill -SEGV $$", nil)
		check("kill -SEGV", st, err, "signal: segmentation fault")
		st, err = run(dd, nil)
		check("dd", st, err, "exit status 0")
		if n%oomEvery == 0 {
			st, err = run("read go && exec tail /dev/zero", oom)
			check("memory hog", st, err, "signal: killed")
		}
	}
	round(0, func(what string, st *os.ProcessState, err error, want string) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if st.String() != want {
			t.Fatalf("%s: %v, want %s", what, st, want)
		}
	})
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(roundEvery):
			}
			round(n, func(string, *os.ProcessState, error, string) {})
		}
	})
	return pressure{CgroupPath: "/" + name, Device: loop.name}
}

// cgroup2Mount returns the first cgroup2 mount point of /proc/self/mountinfo:
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host. The receiver
// picks the same one.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		// id parent major:minor root mountpoint options ... - fstype source ...
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if fields := strings.Fields(pre); ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4]
		}
	}
	t.Fatal("no cgroup2 mount in /proc/self/mountinfo")
	return ""
}

// limitMemory limits the memory of the processes of cgroup cg (under the
// cgroup v2 mount v2) to hogLimit, without swap, so that the kernel
// OOM-kills one that goes past it. With the cgroup v2 memory controller it
// enables it down to cg and sets cg's memory.max, and returns "". On a
// hybrid host, whose memory controller is cgroup v1, it makes a v1 memory
// cgroup of the same name and returns its cgroup.procs, where the memory hog
// is to be moved.
func limitMemory(t *testing.T, v2, cg, name string) string {
	t.Helper()
	limit := strconv.Itoa(hogLimit)
	controllers, err := os.ReadFile(filepath.Join(v2, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(strings.Fields(string(controllers)), "memory") {
		subtree := filepath.Join(filepath.Dir(cg), "cgroup.subtree_control")
		if err := os.WriteFile(subtree, []byte("+memory"), 0); err != nil {
			t.Fatalf("enable the memory controller in %s: %v", subtree, err)
		}
		writeFile(t, filepath.Join(cg, "memory.max"), limit)
		if _, err := os.Stat(filepath.Join(cg, "memory.swap.max")); err == nil {
			writeFile(t, filepath.Join(cg, "memory.swap.max"), "0")
		}
		return ""
	}
	v1 := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err != nil {
		t.Fatalf("no memory controller: neither in %s/cgroup.controllers nor at %s (cgroup v1): %v", v2, v1, err)
	}
	mem := filepath.Join(v1, name)
	if err := os.Mkdir(mem, 0o755); err != nil {
		t.Fatalf("make memory cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, mem) })
	writeFile(t, filepath.Join(mem, "memory.limit_in_bytes"), limit)
	writeFile(t, filepath.Join(mem, "memory.swappiness"), "0")
	// Present only with swap accounting.
	if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
		writeFile(t, filepath.Join(mem, "memory.memsw.limit_in_bytes"), limit)
	}
	return filepath.Join(mem, "cgroup.procs")
}

// removeCgroup kills what is left in a cgroup and removes it.
func removeCgroup(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(f); err == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loop is a loop block device over a file.
type loop struct {
	path string // /dev/loopN
	name string // loopN
}

// newLoop attaches a free loop device to a new file of size bytes in dir
// (LOOP_CTL_GET_FREE, then LOOP_CONFIGURE: Linux 5.8). The loop device does
// buffered I/O on the file, so dir may be on any file system; O_DIRECT
// requests to the device are still block requests of their own. Cleanup
// detaches it.
func newLoop(t *testing.T, dir string, size int64) loop {
	t.Helper()
	backing, err := os.Create(filepath.Join(dir, "loop-backing"))
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	if err := backing.Truncate(size); err != nil {
		t.Fatal(err)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// No node until the loop module loads; opening the misc device's
		// fixed number (10:237) loads it.
		node := filepath.Join(dir, "loop-control")
		if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237))); err != nil {
			t.Fatalf("make loop-control node: %v", err)
		}
		ctl, err = os.OpenFile(node, os.O_RDWR, 0)
	}
	if err != nil {
		t.Fatalf("open loop-control: %v", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("free loop device: %v", err)
		}
		l := loop{path: fmt.Sprintf("/dev/loop%d", n), name: fmt.Sprintf("loop%d", n)}
		dev, err := os.OpenFile(l.path, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("open %s: %v", l.path, err)
		}
		// Another process may have taken it since LOOP_CTL_GET_FREE.
		if err := unix.IoctlLoopConfigure(int(dev.Fd()), &unix.LoopConfig{Fd: uint32(backing.Fd())}); err != nil {
			dev.Close()
			if errors.Is(err, unix.EBUSY) && attempt < 10 {
				continue
			}
			t.Fatalf("configure %s: %v", l.path, err)
		}
		t.Cleanup(func() {
			if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0); err != nil {
				t.Errorf("detach %s: %v", l.path, err)
			}
			dev.Close()
		})
		return l
	}
}

func writeFile(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("write %s to %s: %v", value, path, err)
	}
}

// logRecord is a log record of the file exporter's OTLP JSON, with its
// Resource's cgroup.path.
type logRecord struct {
	cgroupPath string
	event      string
	severity   int
	body       string
	attrs      map[string]string // string and int values, as text
}

// readLogs reads the log records that the file exporter wrote to path, one
// OTLP JSON request per line.
func readLogs(t *testing.T, path string) []logRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	type kv struct {
		Key   string `json:"key"`
		Value struct {
			StringValue *string `json:"stringValue"`
			IntValue    *string `json:"intValue"` // int64 is a JSON string in OTLP
		} `json:"value"`
	}
	text := func(attrs []kv) map[string]string {
		m := map[string]string{}
		for _, a := range attrs {
			switch {
			case a.Value.StringValue != nil:
				m[a.Key] = *a.Value.StringValue
			case a.Value.IntValue != nil:
				m[a.Key] = *a.Value.IntValue
			}
		}
		return m
	}
	var records []logRecord
	for line := range strings.Lines(string(b)) {
		if !strings.HasSuffix(line, "\n") {
			break // being written
		}
		var req struct {
			ResourceLogs []struct {
				Resource struct {
					Attributes []kv `json:"attributes"`
				} `json:"resource"`
				ScopeLogs []struct {
					LogRecords []struct {
						EventName      string `json:"eventName"`
						SeverityNumber int    `json:"severityNumber"`
						Body           struct {
							StringValue string `json:"stringValue"`
						} `json:"body"`
						Attributes []kv `json:"attributes"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, rl := range req.ResourceLogs {
			cgroupPath := text(rl.Resource.Attributes)["cgroup.path"]
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					records = append(records, logRecord{cgroupPath: cgroupPath, event: lr.EventName,
						severity: lr.SeverityNumber, body: lr.Body.StringValue, attrs: text(lr.Attributes)})
				}
			}
		}
	}
	return records
}
