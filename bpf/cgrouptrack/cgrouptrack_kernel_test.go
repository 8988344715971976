//go:build linux

package cgrouptrack

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

// Making and removing real cgroups gives one event each, with the id the
// kernel gives the directory; a v1 hierarchy's cgroups give none. The v2
// hierarchy is /sys/fs/cgroup on a pure v2 node (make test-kernels' guest)
// and /sys/fs/cgroup/unified on a hybrid one; only a hybrid node has a v1
// memory hierarchy to check.
func TestTrackerEvents(t *testing.T) {
	bpftest.RequireBPF(t)
	unified := bpftest.CgroupRoot(t)
	tr, err := Load()
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
