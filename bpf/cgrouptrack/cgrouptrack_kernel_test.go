//go:build linux

package cgrouptrack

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

// Making and removing real cgroups gives one event each, with the id the
// kernel gives the directory; a v1 hierarchy's cgroups give none. The v2
// hierarchy is /sys/fs/cgroup on a pure v2 node (make test-kernels' guest)
// and /sys/fs/cgroup/unified on a hybrid one; only a hybrid node has a v1
// memory hierarchy to check.
func TestTracerEvents(t *testing.T) {
	bpftest.RequireBPF(t)
	unified := bpftest.CgroupRoot(t)
	tr, err := Load(Options{})
	require.NoError(t, err)
	events := make(chan Event, 64)
	done := make(chan error)
	go func() {
		for {
			var e Event
			if err := tr.Read(&e); err != nil {
				done <- err
				return
			}
			events <- e
		}
	}()

	name := "ebpfreceiver-cgrouptrack-" + filepath.Base(t.TempDir())
	v2 := filepath.Join(unified, name, "kubepods.slice")
	require.NoError(t, os.MkdirAll(v2, 0o755))
	var inner syscall.Stat_t
	require.NoError(t, syscall.Stat(v2, &inner))
	if unified != "/sys/fs/cgroup" {
		v1 := filepath.Join("/sys/fs/cgroup/memory", name)
		require.NoError(t, os.Mkdir(v1, 0o755), "a hybrid node's v1 memory hierarchy must be mounted")
		require.NoError(t, os.Remove(v1))
	}
	require.NoError(t, os.Remove(v2))
	require.NoError(t, os.Remove(filepath.Dir(v2)))

	want := []Event{
		{Op: OpMkdir, Path: "/" + name},
		{ID: inner.Ino, Op: OpMkdir, Path: "/" + name + "/kubepods.slice"},
		{ID: inner.Ino, Op: OpRmdir, Path: "/" + name + "/kubepods.slice"},
		{Op: OpRmdir, Path: "/" + name},
	}
	var got []Event
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-events:
			if strings.Contains(e.Path, name) { // other tests make cgroups too
				got = append(got, e)
			}
		case <-timeout:
			t.Fatalf("got %d of %d events: %+v", len(got), len(want), got)
		}
	}
	want[0].ID, want[3].ID = got[0].ID, got[3].ID // the outer directory's id
	assert.Equal(t, want, got)
	assert.Equal(t, got[0].ID, got[3].ID)

	lost, err := tr.Lost()
	require.NoError(t, err)
	assert.Zero(t, lost)
	require.NoError(t, tr.Close())
	assert.ErrorIs(t, <-done, os.ErrClosed)
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
// process.
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
		// The programs load in the order of Hooks.
		{"no kernel types", empty, "load cgrouptrack programs: kernel BTF " + empty + ": ebr_cgroup_mkdir on cgroup:cgroup_mkdir: verifier: load program: bad CO-RE relocation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := Load(Options{KernelBTF: c.path})
			if err == nil {
				tr.Close()
			}
			require.ErrorContains(t, err, c.want)
		})
	}
	for _, opts := range []Options{{KernelBTF: "/sys/kernel/btf/vmlinux"}, {}} {
		tr, err := Load(opts)
		require.NoError(t, err, "kernel BTF %q", opts.KernelBTF)
		require.NoError(t, tr.Close())
	}
}

// A program the verifier rejects fails Load, naming the program.
func TestRejectProgram(t *testing.T) {
	bpftest.RequireBPF(t)
	for _, name := range []string{"ebr_cgroup_mkdir", "ebr_cgroup_rmdir"} {
		tr, err := Load(Options{RejectProgram: name})
		if err == nil {
			tr.Close()
		}
		var verr *ebpf.VerifierError
		require.ErrorAs(t, err, &verr)
		require.Regexp(t, `^load cgrouptrack programs: `+name+` on cgroup:cgroup_\w+: verifier: load program: permission denied: .*R2 !read_ok`, err.Error())
	}
	_, err := Load(Options{RejectProgram: "ebr_no_such_program"})
	require.ErrorContains(t, err, `no program "ebr_no_such_program" to reject`)
}
