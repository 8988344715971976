//go:build e2e && linux

package ebpfreceiver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// e2eHogEnv makes the test binary a memory hog: once it reads a line from
// stdin, it touches memory until the kernel kills it.
const e2eHogEnv = "EBPFRECEIVER_E2E_HOG"

func init() {
	if os.Getenv(e2eHogEnv) == "" {
		return
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	var chunks [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
}

const (
	e2eBlock  = 64 << 10 // bytes per O_DIRECT request of dd
	e2eBlocks = 16
)

// TestE2EPressure runs the distribution while processes in a fake pod crash,
// exit 3, burn CPU, do O_DIRECT I/O on a loop device and get OOM-killed,
// and checks the metrics and log records the file exporters write.
func TestE2EPressure(t *testing.T) {
	bin, err := filepath.Abs("../../_build/otelcol-ebpf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("collector binary missing (%v): run make build first", err)
	}
	bpftest.RequireRoot(t)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	loop := bpftest.NewLoop(t, 8<<20)

	dir := t.TempDir()
	out := filepath.Join(dir, "metrics.json")
	col := e2eStartCollector(t, bin, dir, out)
	col.waitHealthy(t, 60*time.Second)

	// sh runs script in the pod; wantStatus -1 means killed by a signal.
	sh := func(script string, wantStatus int) {
		t.Helper()
		err := pod.Command(t.Context(), "sh", "-c", script).Run()
		var exit *exec.ExitError
		switch {
		case wantStatus == 0 && err != nil:
			t.Fatalf("%s: %v", script, err)
		case wantStatus != 0 && (!errors.As(err, &exit) || exit.ExitCode() != wantStatus):
			t.Fatalf("%s: %v, want exit status %d", script, err, wantStatus)
		}
	}
	sh("exit 3", 3)
	sh("kill -SEGV $$", -1)
	sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done", 0)
	blocks := strconv.Itoa(e2eBlocks)
	bs := "bs=" + strconv.Itoa(e2eBlock)
	sh("dd if=/dev/zero of="+loop.Path+" "+bs+" count="+blocks+" oflag=direct status=none", 0)
	sh("dd if="+loop.Path+" of=/dev/null "+bs+" count="+blocks+" iflag=direct status=none", 0)
	hogPID := e2eOOMKill(t, pod)

	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e2eCheckPressure(otlptest.ReadMetricsFile(t, out), pod.ContainerID, loop.Name)
		if err == nil {
			err = e2eCheckProcessLogs(t, filepath.Join(dir, "logs.json"), pod.ContainerID, hogPID)
		}
		if err == nil {
			return
		}
		if col.exited() {
			t.Fatalf("collector exited: %v\n%s", err, col.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v\ncollector log:\n%s", err, col.logTail())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// e2eOOMKill runs the memory hog under a 48 MiB limit in pod and returns
// its pid once the kernel has killed it.
func e2eOOMKill(t *testing.T, pod *bpftest.Pod) int {
	procs := pod.LimitMemory(t, 48<<20)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := pod.Command(t.Context(), exe)
	cmd.Env = append(os.Environ(), e2eHogEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if procs != "" {
		if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatalf("move the hog to the memory cgroup: %v", err)
		}
	}
	io.WriteString(stdin, "go\n")
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("memory hog ended with %v, want killed by SIGKILL", err)
	}
	return pid
}

// e2eCheckPressure checks the latest export of the container's resource.
func e2eCheckPressure(exports []pmetric.Metrics, containerID, device string) error {
	md, found := otlptest.Latest(exports, "container.id", containerID)
	if !found {
		return fmt.Errorf("no resource with container.id %s yet", containerID)
	}
	points := func(name string) (dps []pmetric.NumberDataPoint) {
		for _, dp := range otlptest.Points(md, name) {
			dps = append(dps, dp)
		}
		return dps
	}
	histograms := func(name string) (dps []pmetric.HistogramDataPoint) {
		for _, dp := range otlptest.Histograms(md, name) {
			dps = append(dps, dp)
		}
		return dps
	}
	exits := map[string]int64{}
	for _, dp := range points("process.exits") {
		code := otlptest.Int(dp.Attributes(), "process.exit.code")
		exits[fmt.Sprintf("%d/%s", code, otlptest.Str(dp.Attributes(), "process.exit.signal"))] = dp.IntValue()
	}
	if exits["3/"] != 1 || exits["0/SIGSEGV"] != 1 || exits["0/SIGKILL"] != 1 {
		return fmt.Errorf("process.exits %v, want one each of status 3, SIGSEGV and SIGKILL", exits)
	}
	if oom := points("process.oom_kills"); len(oom) != 1 || oom[0].IntValue() != 1 {
		return fmt.Errorf("process.oom_kills %v, want 1", oom)
	}
	if cpu := points("container.cpu.time"); len(cpu) != 1 || cpu[0].DoubleValue() < 0.05 {
		return fmt.Errorf("container.cpu.time %v, want at least the 50 ms the shell loop burns", cpu)
	}
	if h := histograms("sched.run_queue.latency"); len(h) != 1 || h[0].Count() == 0 {
		return errors.New("no sched.run_queue.latency histogram with samples")
	}
	for _, dir := range []string{"read", "write"} {
		var bytes, ops int64
		var hist uint64
		for _, dp := range points("container.disk.io") {
			if otlptest.Str(dp.Attributes(), "system.device") == device && otlptest.Str(dp.Attributes(), "disk.io.direction") == dir {
				bytes = dp.IntValue()
			}
		}
		for _, dp := range points("disk.operations") {
			if otlptest.Str(dp.Attributes(), "system.device") == device && otlptest.Str(dp.Attributes(), "disk.io.direction") == dir {
				ops = dp.IntValue()
			}
		}
		for _, dp := range histograms("disk.io.latency") {
			if otlptest.Str(dp.Attributes(), "system.device") == device && otlptest.Str(dp.Attributes(), "disk.io.direction") == dir {
				hist = dp.Count()
			}
		}
		if bytes != e2eBlock*e2eBlocks || ops < e2eBlocks || hist != uint64(ops) {
			return fmt.Errorf("%s %s: container.disk.io %d bytes, %d operations, latency histogram count %d; want %d bytes, at least %d operations, all in the histogram",
				device, dir, bytes, ops, hist, e2eBlock*e2eBlocks, e2eBlocks)
		}
	}
	return nil
}

// e2eCheckProcessLogs checks that the file exporter wrote exactly one death
// by SIGSEGV and one OOM kill of pid for the container.
func e2eCheckProcessLogs(t *testing.T, path, containerID string, hogPID int) error {
	var segv, oom []plog.LogRecord
	for res, lr := range otlptest.LogRecords(otlptest.ReadLogsFile(t, path)...) {
		if otlptest.Str(res, "container.id") != containerID {
			continue
		}
		switch {
		case lr.EventName() == "process.signal_death" && otlptest.Str(lr.Attributes(), "process.exit.signal") == "SIGSEGV":
			segv = append(segv, lr)
		case lr.EventName() == "process.oom_kill":
			oom = append(oom, lr)
		}
	}
	if len(segv) != 1 || otlptest.Str(segv[0].Attributes(), "process.executable.name") != "sh" {
		return fmt.Errorf("%d SIGSEGV records of sh, want 1", len(segv))
	}
	if len(oom) != 1 || otlptest.Int(oom[0].Attributes(), "process.pid") != int64(hogPID) {
		return fmt.Errorf("%d OOM kill records, want 1 of pid %d", len(oom), hogPID)
	}
	if lr := oom[0]; lr.SeverityNumber() != plog.SeverityNumberError || lr.Body().Type() != pcommon.ValueTypeStr {
		return fmt.Errorf("OOM kill record without severity or body: %v %v", lr.SeverityNumber(), lr.Body().AsRaw())
	}
	return nil
}
