//go:build linux

package bpftest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// memoryV1 is where a hybrid host mounts the cgroup v1 memory controller.
const memoryV1 = "/sys/fs/cgroup/memory"

// LimitMemory puts the processes of s under a memory limit of limit bytes,
// without swap, so that the kernel OOM-kills one that goes past it.
//
// Where the cgroup v2 hierarchy has the memory controller, it enables it in
// every ancestor of s's cgroup and sets memory.max there, and returns "".
// On a hybrid host, whose memory controller is cgroup v1, it makes a v1
// memory cgroup with the limit and returns its cgroup.procs file: write the
// pid of each process to limit there. Cleanup removes that cgroup once its
// processes are gone.
func (s *Sandbox) LimitMemory(t testing.TB, limit int64) string {
	t.Helper()
	root := CgroupRoot(t)
	controllers, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		t.Fatalf("read cgroup controllers: %v", err)
	}
	if slices.Contains(strings.Fields(string(controllers)), "memory") {
		limitV2(t, root, s.CgroupPath, limit)
		return ""
	}
	if _, err := os.Stat(filepath.Join(memoryV1, "memory.limit_in_bytes")); err != nil {
		t.Fatalf("no memory controller: not in %s/cgroup.controllers, and no cgroup v1 one: %v", root, err)
	}
	dir := filepath.Join(memoryV1, name("mem"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make memory cgroup: %v", err)
	}
	t.Cleanup(func() { removeV1(t, dir) })
	v := strconv.FormatInt(limit, 10)
	writeCgroup(t, dir, "memory.limit_in_bytes", v)
	writeCgroup(t, dir, "memory.swappiness", "0")
	// Only with swap accounting; it cannot be below memory.limit_in_bytes.
	if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
		writeCgroup(t, dir, "memory.memsw.limit_in_bytes", v)
	}
	return filepath.Join(dir, "cgroup.procs")
}

// limitV2 enables the memory controller from root down to dir's parent and
// sets dir's limit.
func limitV2(t testing.TB, root, dir string, limit int64) {
	t.Helper()
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("cgroup %s is not under %s", dir, root)
	}
	parent := root
	for _, d := range strings.Split(rel, string(filepath.Separator)) {
		enabled, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
		if err != nil {
			t.Fatalf("read subtree control: %v", err)
		}
		if !slices.Contains(strings.Fields(string(enabled)), "memory") {
			writeCgroup(t, parent, "cgroup.subtree_control", "+memory")
		}
		parent = filepath.Join(parent, d)
	}
	writeCgroup(t, dir, "memory.max", strconv.FormatInt(limit, 10))
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		writeCgroup(t, dir, "memory.swap.max", "0")
	}
}

func writeCgroup(t testing.TB, dir, file, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		t.Fatalf("write %s to %s/%s: %v", value, dir, file, err)
	}
}

// removeV1 kills the processes of a cgroup v1 directory and removes it.
func removeV1(t testing.TB, dir string) {
	t.Helper()
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Errorf("read %s/cgroup.procs: %v", dir, err)
	}
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
