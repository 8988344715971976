//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Real cgroup v2 directories: their ids are the directory inodes.
func TestResolverLiveCgroups(t *testing.T) {
	r, err := NewResolver("")
	require.NoError(t, err, "a cgroup2 file system must be mounted")

	rel := "/ebpfreceiver-test-" + filepath.Base(t.TempDir())
	dir := filepath.Join(r.Root(), rel)
	require.NoError(t, os.Mkdir(dir, 0o755))
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = os.Remove(dir)
		}
	})
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(dir, &st))

	require.NoError(t, r.Refresh(slices.Values([]uint64{st.Ino})))
	path, ok := r.Path(st.Ino)
	require.True(t, ok)
	assert.Equal(t, rel, path)
	root, ok := r.Path(1)
	require.True(t, ok, "the root cgroup has id 1")
	assert.Equal(t, "/", root)

	// A removed cgroup keeps its path while its id is in use, even across
	// a rescan, and is evicted by the first rescan after that.
	require.NoError(t, os.Remove(dir))
	removed = true
	const neverSeen = 1 << 62
	require.NoError(t, r.Refresh(slices.Values([]uint64{st.Ino, neverSeen})))
	path, ok = r.Path(st.Ino)
	require.True(t, ok)
	assert.Equal(t, rel, path)
	_, ok = r.Path(neverSeen)
	assert.False(t, ok)

	require.NoError(t, r.Refresh(slices.Values([]uint64{neverSeen + 1})))
	_, ok = r.Path(st.Ino)
	assert.False(t, ok)
}

func TestNewResolverErrors(t *testing.T) {
	_, err := NewResolver(t.TempDir())
	assert.ErrorContains(t, err, "not a cgroup2 file system")
	_, err = NewResolver("/nonexistent")
	assert.Error(t, err)
}

func TestFindMount(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "mountinfo")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	got, err := findMount(write("22 1 0:21 / /sys rw - sysfs sysfs rw\n" +
		"35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"))
	require.NoError(t, err)
	assert.Equal(t, "/sys/fs/cgroup/unified", got)
	_, err = findMount(write("22 1 0:21 / /sys rw - sysfs sysfs rw\n"))
	assert.ErrorContains(t, err, "no cgroup2")
}

// Paths learned from cgroup events survive the cgroup's removal while in use.
func TestResolverLearnAndRemove(t *testing.T) {
	r, err := NewResolver("")
	require.NoError(t, err)
	const id = 1 << 61 // no live cgroup has it
	r.Learn(id, "/kubepods/pod-short-lived")
	require.NoError(t, r.Refresh(slices.Values([]uint64{id})))
	path, ok := r.Path(id)
	require.True(t, ok)
	assert.Equal(t, "/kubepods/pod-short-lived", path)

	assert.False(t, r.IsRemoved(id))
	r.MarkRemoved(id)
	assert.True(t, r.IsRemoved(id))
	require.NoError(t, r.Refresh(slices.Values([]uint64{id})))
	_, ok = r.Path(id)
	assert.True(t, ok, "still in use")

	require.NoError(t, r.Refresh(slices.Values([]uint64{1})))
	_, ok = r.Path(id)
	assert.True(t, ok, "kept for one more Refresh: its data may show up late")
	require.NoError(t, r.Refresh(slices.Values([]uint64{1})))
	_, ok = r.Path(id)
	assert.False(t, ok, "evicted once no longer in use")
	assert.True(t, r.IsRemoved(id), "still known as removed, for late data")
	r.Learn(id, "/reused")
	assert.False(t, r.IsRemoved(id), "a new cgroup with the id")
	assert.Less(t, r.Len(), 1<<20)
}

// Resolve finds new cgroups and remembers unknown ids without evicting.
func TestResolverResolve(t *testing.T) {
	r, err := NewResolver("")
	require.NoError(t, err)
	const gone = 1 << 60
	r.Learn(gone, "/removed")
	r.MarkRemoved(gone)
	require.NoError(t, r.Resolve(slices.Values([]uint64{1, gone + 1})))
	path, ok := r.Path(1)
	require.True(t, ok)
	assert.Equal(t, "/", path)
	_, ok = r.Path(gone + 1)
	assert.False(t, ok)
	path, ok = r.Path(gone)
	assert.True(t, ok, "Resolve evicts nothing")
	assert.Equal(t, "/removed", path)
}
