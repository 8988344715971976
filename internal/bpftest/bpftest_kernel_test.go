//go:build linux

package bpftest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	RunHelperIfRequested(nil)
	os.Exit(m.Run())
}

func output(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out)
}

func TestPods(t *testing.T) {
	var netns, cgroups []string
	t.Run("pods", func(t *testing.T) {
		ctx := context.Background()
		root := CgroupRoot(t)
		node := NewNode(t)
		a := NewPod(t, PodOptions{Node: node})
		b := NewPod(t, PodOptions{Node: node, QoS: QoSGuaranteed, Runtime: RuntimeCRIO})
		c := NewPod(t, PodOptions{Node: node, QoS: QoSBestEffort, Runtime: RuntimeDocker, UID: "0a1b2c3d-0000-4000-8000-000000000001", ContainerID: "abc"})
		netns = []string{node.Netns, a.Netns, b.Netns, c.Netns}

		for _, tc := range []struct {
			pod  *Pod
			want string
		}{
			{a, `^/bpftest-\d+-cg\d+/kubepods\.slice/kubepods-burstable\.slice/kubepods-burstable-pod[0-9a-f]{8}_[0-9a-f]{4}_4[0-9a-f]{3}_[89ab][0-9a-f]{3}_[0-9a-f]{12}\.slice/cri-containerd-[0-9a-f]{64}\.scope$`},
			{b, `^/bpftest-\d+-cg\d+/kubepods\.slice/kubepods-pod[0-9a-f_]{36}\.slice/crio-[0-9a-f]{64}\.scope$`},
			{c, `^/bpftest-\d+-cg\d+/kubepods\.slice/kubepods-besteffort\.slice/kubepods-besteffort-pod0a1b2c3d_0000_4000_8000_000000000001\.slice/docker-abc\.scope$`},
		} {
			rel := strings.TrimPrefix(tc.pod.CgroupPath, root)
			if !regexp.MustCompile(tc.want).MatchString(rel) {
				t.Errorf("cgroup path %s does not match %s", rel, tc.want)
			}
			if !strings.Contains(rel, strings.ReplaceAll(tc.pod.UID, "-", "_")) || !strings.HasSuffix(rel, tc.pod.ContainerID+".scope") {
				t.Errorf("cgroup path %s lacks uid %s or container id %s", rel, tc.pod.UID, tc.pod.ContainerID)
			}
			st, err := os.Stat(tc.pod.CgroupPath)
			if err != nil {
				t.Fatal(err)
			}
			if ino := st.Sys().(*syscall.Stat_t).Ino; ino != tc.pod.CgroupID {
				t.Errorf("cgroup id %d, want inode %d", tc.pod.CgroupID, ino)
			}
			// The process is in the pod's cgroup from its start, and sees
			// the pod's address.
			if got := output(t, tc.pod.Command(ctx, "cat", "/proc/self/cgroup")); !strings.Contains(got, "0::"+rel+"\n") {
				t.Errorf("process cgroups:\n%s\nwant 0::%s", got, rel)
			}
			if got := output(t, tc.pod.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")); !strings.Contains(got, " "+tc.pod.IP.String()+"/24 ") {
				t.Errorf("pod addresses: %s, want %s", got, tc.pod.IP)
			}
			cgroups = append(cgroups, filepath.Join(root, strings.Split(rel, "/")[1]))
		}
		if a.CgroupID == b.CgroupID || a.IP == b.IP || a.Netns == b.Netns {
			t.Errorf("pods a and b share an id, address or netns: %+v %+v", a.Sandbox, b.Sandbox)
		}

		// The pods reach each other, and the node reaches them.
		srv := b.StartTCPServer(t, ServerOptions{Port: 8080, Conns: 3, Recv: 10, Send: 20})
		// Helpers run on one CPU.
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`).FindSubmatch(status); m == nil || strings.ContainsAny(string(m[1]), ",-") {
			t.Errorf("server not bound to one cpu: %s", m)
		}
		a.RunTCPClient(t, ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8080), Conns: 1, Send: 10, Recv: 20})
		c.RunTCPClient(t, ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8080), Conns: 1, Send: 10, Recv: 20, Reset: true})
		node.RunTCPClient(t, ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8080), Conns: 1, Send: 10, Recv: 20})
		if got, want := srv.Wait(t), "eof 2 reset 1"; got != want {
			t.Errorf("server: %q, want %q", got, want)
		}
		a.RunTCPClient(t, ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8081), Conns: 2, Refused: true})
	})
	// Cleanup removed everything.
	list := output(t, exec.Command("ip", "netns", "list"))
	for _, n := range netns {
		if strings.Contains(list, n) {
			t.Errorf("netns %s left behind", n)
		}
	}
	for _, d := range cgroups {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left behind: %v", d, err)
		}
	}
}

func TestDropSent(t *testing.T) {
	node := NewNode(t)
	a := NewPod(t, PodOptions{Node: node})
	b := NewPod(t, PodOptions{Node: node})
	d := a.DropSent(t, 8080, 3)
	srv := b.StartTCPServer(t, ServerOptions{Port: 8080, Conns: 1, Recv: 1 << 20, Send: 1 << 20})
	a.RunTCPClient(t, ClientOptions{Addr: netip.AddrPortFrom(b.IP, 8080), Conns: 1, Send: 1 << 20, Recv: 1 << 20})
	srv.Wait(t)
	if n := d.Dropped(t); n == 0 {
		t.Error("no packet dropped")
	} else {
		t.Logf("dropped %d packets", n)
	}
	d.Remove(t)
	if out := output(t, exec.Command("ip", "netns", "exec", node.Netns, "nft", "list", "tables")); out != "" {
		t.Errorf("tables left after remove: %s", out)
	}
}
