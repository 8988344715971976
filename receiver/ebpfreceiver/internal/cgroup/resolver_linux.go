package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Resolver maps cgroup v2 ids to paths relative to the cgroup v2 root. The
// id of a cgroup is the inode number of its directory, which is what
// bpf_get_current_cgroup_id and the socket's cgroup carry.
//
// Paths are learned from cgroup events as cgroups are made (Learn), and
// from scanning the hierarchy for ids never seen. It is safe for concurrent
// use.
type Resolver struct {
	root string

	mu sync.Mutex
	// paths holds the known cgroups; "" marks an id found nowhere.
	paths map[uint64]string
	// removed holds the removed cgroups still cached, with the number of
	// Refreshes that did not use them.
	removed map[uint64]int
	// gone remembers removed cgroups after their path is evicted, oldest
	// first, so that data arriving late for them is still known as theirs.
	gone    map[uint64]struct{}
	goneIDs []uint64
}

// maxGone bounds the removed cgroups remembered.
const maxGone = 1 << 16

// NewResolver returns a Resolver over the cgroup v2 hierarchy mounted at
// root, or found in /proc/self/mountinfo when root is empty. The mount must
// show the whole hierarchy, as the host's does.
func NewResolver(root string) (*Resolver, error) {
	if root == "" {
		var err error
		if root, err = FindMount(); err != nil {
			return nil, err
		}
	}
	if err := CheckRoot(root); err != nil {
		return nil, err
	}
	return &Resolver{root: root, paths: make(map[uint64]string), removed: make(map[uint64]int), gone: make(map[uint64]struct{})}, nil
}

// CheckRoot fails unless root is a cgroup2 file system. Its error names
// where this process sees one mounted, if anywhere: on a hybrid host that
// is /sys/fs/cgroup/unified, not /sys/fs/cgroup.
func CheckRoot(root string) error {
	var st syscall.Statfs_t
	err := syscall.Statfs(root, &st)
	const cgroup2SuperMagic = 0x63677270
	if err == nil && st.Type == cgroup2SuperMagic {
		return nil
	}
	if err == nil {
		err = errors.New("not a cgroup2 file system")
	}
	hint := "no cgroup2 file system is mounted here"
	if m, ferr := FindMount(); ferr == nil {
		hint = "cgroup2 is mounted at " + m
	}
	return fmt.Errorf("cgroup v2 root %s: %w (%s)", root, err, hint)
}

// Root is the cgroup v2 mount the Resolver reads.
func (r *Resolver) Root() string { return r.root }

// Len is the number of cached ids.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.paths)
}

// Learn records the path of a cgroup that was just made.
func (r *Resolver) Learn(id uint64, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths[id] = path
	delete(r.removed, id)
	delete(r.gone, id) // a new cgroup reusing the id
}

// MarkRemoved records that a cgroup was removed. Its path stays known while
// Refresh is given its id.
func (r *Resolver) MarkRemoved(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.paths[id]; ok {
		r.removed[id] = 0
	}
	if _, ok := r.gone[id]; !ok {
		if len(r.goneIDs) >= maxGone {
			delete(r.gone, r.goneIDs[0])
			r.goneIDs = r.goneIDs[1:]
		}
		r.gone[id] = struct{}{}
		r.goneIDs = append(r.goneIDs, id)
	}
}

// IsRemoved reports whether the cgroup was removed, also after its path
// was evicted.
func (r *Resolver) IsRemoved(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.gone[id]
	return ok
}

// Path returns the path of the cgroup with the given id. ok is false when
// the id was unknown at the last Refresh.
func (r *Resolver) Path(id uint64) (path string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	path = r.paths[id]
	return path, path != ""
}

// Refresh prepares the cache for looking up ids, the ids in use now:
//   - a removed cgroup is evicted when two Refreshes in a row do not use it.
//     One is not enough: data of a cgroup removed after the caller read ids
//     shows up only in the next ids;
//   - if an id has never been seen, the hierarchy is rescanned; the cache
//     then holds the live cgroups, the removed ones not yet evicted and the
//     ids in use, and an id found nowhere is remembered as unknown so that
//     it causes no other rescan.
func (r *Resolver) Refresh(ids iter.Seq[uint64]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	inUse := make(map[uint64]struct{})
	missing := false
	for id := range ids {
		inUse[id] = struct{}{}
		if _, ok := r.paths[id]; !ok {
			missing = true
		}
	}
	for id, unused := range r.removed {
		switch _, ok := inUse[id]; {
		case ok:
			r.removed[id] = 0
		case unused >= 1:
			delete(r.paths, id)
			delete(r.removed, id)
		default:
			r.removed[id] = unused + 1
		}
	}
	if !missing {
		return nil
	}
	paths, err := r.scan()
	if err != nil {
		return err
	}
	keep := func(id uint64) {
		if _, ok := paths[id]; !ok {
			paths[id] = r.paths[id]
		}
	}
	for id := range inUse {
		keep(id)
	}
	for id := range r.removed {
		keep(id)
	}
	r.paths = paths
	return nil
}

// Resolve makes the paths of ids known, rescanning the hierarchy if any has
// never been seen, and evicts nothing. It serves lookups between two
// Refreshes, such as for spans.
func (r *Resolver) Resolve(ids iter.Seq[uint64]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing []uint64
	for id := range ids {
		if _, ok := r.paths[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	paths, err := r.scan()
	if err != nil {
		return err
	}
	for id, p := range paths {
		if _, ok := r.paths[id]; !ok {
			r.paths[id] = p
		}
	}
	for _, id := range missing {
		r.paths[id] = paths[id]
	}
	return nil
}

func (r *Resolver) scan() (map[uint64]string, error) {
	paths := make(map[uint64]string, len(r.paths))
	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel := strings.TrimPrefix(p, r.root)
		if rel == "" {
			rel = "/"
		}
		paths[info.Sys().(*syscall.Stat_t).Ino] = rel
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan cgroups under %s: %w", r.root, err)
	}
	return paths, nil
}

// FindMount returns where this process sees the first cgroup2 file system
// mounted.
func FindMount() (string, error) { return findMount("/proc/self/mountinfo") }

// findMount returns the mount point of the first cgroup2 file system.
func findMount(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source ...
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && i >= 4 {
				if fields[i+1] == "cgroup2" {
					return fields[4], nil
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// initCgroupNS is the inode of the initial cgroup namespace
// (PROC_CGROUP_INIT_INO in the kernel's include/linux/proc_ns.h).
const initCgroupNS = 0xEFFFFFFB

// SelfInContainer reports whether this process runs in a container's
// cgroup: in a cgroup namespace of its own, as container runtimes give on
// cgroup v2, or at a path that names a container. A process on the host,
// whose cgroup other processes share (a login session, a systemd service),
// does not.
func SelfInContainer() bool {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/cgroup", &st); err == nil && st.Ino != initCgroupNS {
		return true
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return Parse(p).ContainerID != ""
		}
	}
	return false
}
