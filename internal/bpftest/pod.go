//go:build linux

package bpftest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Sandbox is where a process runs: a network namespace and a cgroup v2
// directory.
type Sandbox struct {
	// Netns is the name of the network namespace, as ip netns lists it.
	Netns string
	// CgroupPath is the cgroup v2 directory.
	CgroupPath string
	// CgroupID is the cgroup id: the inode number of CgroupPath.
	CgroupID uint64
	// IP is the sandbox's IPv4 address on its node's bridge.
	IP netip.Addr

	cgroupFD *os.File
}

// Command returns a command that runs name with args in s's network
// namespace (through ip netns exec), placed in s's cgroup when it is cloned.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.Netns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(s.cgroupFD.Fd())}
	return cmd
}

// Sysctl sets the network namespace's sysctl name, such as
// net.ipv4.tcp_early_retrans, to value.
func (s *Sandbox) Sysctl(t testing.TB, name, value string) {
	t.Helper()
	RequireTool(t, "sysctl")
	if out, err := exec.Command("ip", "netns", "exec", s.Netns, "sysctl", "-qw", name+"="+value).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v: %s", name, value, s.Netns, err, out)
	}
}

// Node is a network namespace with a bridge that joins its pods, standing
// for a Kubernetes node. Its own processes run in the root cgroup, like host
// processes.
type Node struct {
	Sandbox
	// Bridge is the name of the bridge in Netns.
	Bridge string

	pods atomic.Int32
}

// QoS is a pod's Kubernetes QoS class, which places its cgroup.
type QoS string

// The QoS classes.
const (
	QoSGuaranteed QoS = "guaranteed"
	QoSBurstable  QoS = "burstable"
	QoSBestEffort QoS = "besteffort"
)

// Runtime is the container runtime prefix of a container's cgroup scope.
type Runtime string

// The container runtimes.
const (
	RuntimeContainerd Runtime = "cri-containerd"
	RuntimeCRIO       Runtime = "crio"
	RuntimeDocker     Runtime = "docker"
)

// PodOptions configure NewPod. Zero values take the defaults.
type PodOptions struct {
	// Node joins the pod to another pod's network; nil makes a new node.
	Node *Node
	// QoS defaults to QoSBurstable.
	QoS QoS
	// Runtime defaults to RuntimeContainerd.
	Runtime Runtime
	// UID defaults to a random UUID.
	UID string
	// ContainerID defaults to 64 random hex digits.
	ContainerID string
}

// Pod is a fake Kubernetes pod with one container: a cgroup v2 directory
// shaped like the kubelet's systemd driver makes it, and a network namespace
// whose eth0 is attached to its node's bridge.
//
// The kubepods tree lives under a directory of its own, bpftest-<pid>-cg<n>,
// so that concurrent tests never share or remove each other's parents:
// <root>/bpftest-<pid>-cg<n>/kubepods.slice/kubepods-burstable.slice/
// kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope.
type Pod struct {
	Sandbox
	// Node is the pod's node.
	Node *Node
	// UID is the pod UID.
	UID string
	// ContainerID is the container id in the cgroup scope name.
	ContainerID string
	// Runtime is the runtime prefix of the container's cgroup scope.
	Runtime Runtime

	veth string // the node side of the pod's veth pair
}

var seq atomic.Uint32

// name returns a name unique on the machine for this process's n-th object.
func name(kind string) string {
	return fmt.Sprintf("bpftest-%d-%s%d", os.Getpid(), kind, seq.Add(1))
}

// NewNode makes a node: a network namespace with a bridge holding the
// node's IP, a /24 from 198.18.0.0/15. Cleanup removes it.
func NewNode(t testing.TB) *Node {
	t.Helper()
	RequireBPF(t)
	root := CgroupRoot(t)
	n := &Node{Bridge: "br0"}
	// Nodes never share a link, so their subnets need not differ; they
	// differ anyway to keep flows of concurrent tests apart.
	i := (os.Getpid() + int(seq.Add(1))) % 512
	n.IP = netip.AddrFrom4([4]byte{198, byte(18 + i/256), byte(i % 256), 1})
	n.Netns = name("node")
	ip(t, "netns", "add", n.Netns)
	t.Cleanup(func() { ipCleanup(t, "netns", "del", n.Netns) })
	ip(t, "-n", n.Netns, "link", "set", "lo", "up")
	ip(t, "-n", n.Netns, "link", "add", n.Bridge, "type", "bridge")
	ip(t, "-n", n.Netns, "addr", "add", n.IP.String()+"/24", "dev", n.Bridge)
	ip(t, "-n", n.Netns, "link", "set", n.Bridge, "up")
	n.CgroupPath = root
	n.cgroupFD, n.CgroupID = openCgroup(t, root)
	return n
}

// NewPod makes a pod. Cleanup kills its processes and removes its network
// namespace, its veth pair and the cgroup directories it made.
func NewPod(t testing.TB, opts PodOptions) *Pod {
	t.Helper()
	if opts.Node == nil {
		opts.Node = NewNode(t)
	}
	if opts.QoS == "" {
		opts.QoS = QoSBurstable
	}
	if opts.Runtime == "" {
		opts.Runtime = RuntimeContainerd
	}
	if opts.UID == "" {
		b := randomBytes(t, 16)
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		h := hex.EncodeToString(b)
		opts.UID = h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	if opts.ContainerID == "" {
		opts.ContainerID = hex.EncodeToString(randomBytes(t, 32))
	}
	n := opts.Node
	i := n.pods.Add(1)
	if i > 250 {
		t.Fatalf("too many pods on node %s", n.Netns)
	}
	p := &Pod{Node: n, UID: opts.UID, ContainerID: opts.ContainerID, Runtime: opts.Runtime}

	// The network: eth0 in the pod, veth<i> on the node's bridge.
	a := n.IP.As4()
	a[3] += byte(i)
	p.IP = netip.AddrFrom4(a)
	p.Netns = name("pod")
	ip(t, "netns", "add", p.Netns)
	t.Cleanup(func() { ipCleanup(t, "netns", "del", p.Netns) })
	veth := fmt.Sprintf("veth%d", i)
	p.veth = veth
	ip(t, "-n", n.Netns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", p.Netns)
	t.Cleanup(func() { ipCleanup(t, "-n", n.Netns, "link", "del", veth) })
	ip(t, "-n", n.Netns, "link", "set", veth, "master", n.Bridge, "up")
	ip(t, "-n", p.Netns, "link", "set", "lo", "up")
	ip(t, "-n", p.Netns, "addr", "add", p.IP.String()+"/24", "dev", "eth0")
	ip(t, "-n", p.Netns, "link", "set", "eth0", "up")

	// The cgroup: kubepods.slice/[kubepods-<qos>.slice/]kubepods-[<qos>-]pod<uid>.slice/<runtime>-<id>.scope
	slice := "kubepods"
	dirs := []string{name("cg"), "kubepods.slice"}
	if opts.QoS != QoSGuaranteed {
		slice += "-" + string(opts.QoS)
		dirs = append(dirs, slice+".slice")
	}
	dirs = append(dirs,
		slice+"-pod"+strings.ReplaceAll(opts.UID, "-", "_")+".slice",
		string(opts.Runtime)+"-"+opts.ContainerID+".scope")
	path := CgroupRoot(t)
	for _, d := range dirs {
		path = filepath.Join(path, d)
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatalf("make pod cgroup: %v", err)
		}
		dir := path
		t.Cleanup(func() { removeCgroup(t, dir) })
	}
	p.CgroupPath = path
	p.cgroupFD, p.CgroupID = openCgroup(t, path)
	return p
}

// Container is one more container of a pod: its own cgroup scope in the
// pod's slice, sharing the pod's network namespace.
type Container struct {
	Sandbox
	// ID is the container id in the cgroup scope name.
	ID string
}

// AddContainer makes a new container in p, as a runtime does when it starts
// one. Cleanup removes it if Remove has not.
func (p *Pod) AddContainer(t testing.TB) *Container {
	t.Helper()
	c := &Container{ID: hex.EncodeToString(randomBytes(t, 32))}
	c.Sandbox = Sandbox{Netns: p.Netns, IP: p.IP}
	c.CgroupPath = filepath.Join(filepath.Dir(p.CgroupPath), string(p.Runtime)+"-"+c.ID+".scope")
	if err := os.Mkdir(c.CgroupPath, 0o755); err != nil {
		t.Fatalf("make container cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, c.CgroupPath) })
	c.cgroupFD, c.CgroupID = openCgroup(t, c.CgroupPath)
	return c
}

// Remove removes the container's cgroup at once, as a runtime does when its
// process has exited.
func (c *Container) Remove(t testing.TB) {
	t.Helper()
	c.cgroupFD.Close()
	if err := unix.Rmdir(c.CgroupPath); err != nil {
		t.Fatalf("remove container cgroup %s: %v", c.CgroupPath, err)
	}
}

// RemoveCgroup kills what runs in the pod's container and removes its
// cgroup at once, as the kubelet does when a pod ends.
func (p *Pod) RemoveCgroup(t testing.TB) {
	t.Helper()
	p.cgroupFD.Close()
	removeCgroup(t, p.CgroupPath)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// openCgroup opens a cgroup directory for CLONE_INTO_CGROUP and returns its
// id. Cleanup closes it.
func openCgroup(t testing.TB, path string) (*os.File, uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatalf("stat cgroup: %v", err)
	}
	return f, st.Ino
}

// removeCgroup kills what still runs in dir and removes it.
func removeCgroup(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return // removed already
	}
	// cgroup.kill also kills the processes of child cgroups.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		t.Errorf("kill cgroup %s: %v", dir, err)
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

// ip runs the ip tool and fails t on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ipCleanup runs the ip tool to undo something, which may already be gone.
func ipCleanup(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") &&
		!strings.Contains(string(out), "No such file") {
		t.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
