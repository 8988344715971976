//go:build linux

package bpftest

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// RequireRoot fails t unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		t.Fatalf("kernel test needs root, running as uid %d", uid)
	}
}

// Capabilities needed to load tracing programs and to build fake pods.
var requiredCaps = []struct {
	bit  uint
	name string
}{
	{12, "CAP_NET_ADMIN"},
	{21, "CAP_SYS_ADMIN"},
	{38, "CAP_PERFMON"},
	{39, "CAP_BPF"},
}

// RequireBPF fails t unless the process can load and attach tp_btf programs
// and build fake pods: root, the capabilities, kernel BTF, a cgroup v2
// hierarchy, and the ip tool.
func RequireBPF(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	caps, err := effectiveCaps()
	if err != nil {
		t.Fatalf("read capabilities: %v", err)
	}
	for _, c := range requiredCaps {
		if caps&(1<<c.bit) == 0 {
			t.Fatalf("kernel test needs %s (effective set %#x)", c.name, caps)
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Fatalf("kernel test needs kernel btf: %v", err)
	}
	CgroupRoot(t)
	RequireTool(t, "ip")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
}

// RequireTool fails t unless name is in PATH.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("kernel test needs the %s tool: %v", name, err)
	}
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, s.Err()
}

// CgroupRoot returns the mount point of the cgroup v2 hierarchy, such as
// /sys/fs/cgroup or, on a hybrid host, /sys/fs/cgroup/unified.
func CgroupRoot(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read mounts: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent major:minor root mountpoint options... - fstype source options
		fields := strings.Fields(s.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	t.Fatalf("kernel test needs a cgroup v2 hierarchy: none mounted (err %v)", s.Err())
	return ""
}
