package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Resolver maps cgroup v2 ids to paths relative to the cgroup v2 mount. The
// id of a cgroup is the inode number of its directory, which is what
// bpf_get_current_cgroup_id and the socket's cgroup carry.
type Resolver struct {
	root  string
	paths map[uint64]string
}

// NewResolver returns a Resolver over the cgroup v2 hierarchy mounted at
// root, or found in /proc/self/mountinfo when root is empty.
func NewResolver(root string) (*Resolver, error) {
	if root == "" {
		var err error
		if root, err = findMount("/proc/self/mountinfo"); err != nil {
			return nil, err
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return nil, fmt.Errorf("cgroup v2 root %s: %w", root, err)
	}
	const cgroup2SuperMagic = 0x63677270
	if st.Type != cgroup2SuperMagic {
		return nil, fmt.Errorf("cgroup v2 root %s: not a cgroup2 file system", root)
	}
	return &Resolver{root: root, paths: make(map[uint64]string)}, nil
}

// Root is the cgroup v2 mount the Resolver reads.
func (r *Resolver) Root() string { return r.root }

// Len is the number of cached paths.
func (r *Resolver) Len() int { return len(r.paths) }

// Path returns the cached path of the cgroup with the given id. ok is false
// when the id was not live at the last Refresh.
func (r *Resolver) Path(id uint64) (path string, ok bool) {
	path, ok = r.paths[id]
	return path, ok
}

// Refresh rescans the hierarchy if any of ids is unknown. The cache then
// holds exactly the live cgroups, so removed ones are evicted.
func (r *Resolver) Refresh(ids func(yield func(uint64) bool)) error {
	missing := false
	for id := range ids {
		if _, ok := r.paths[id]; !ok {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
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
		return fmt.Errorf("scan cgroups under %s: %w", r.root, err)
	}
	r.paths = paths
	return nil
}

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
