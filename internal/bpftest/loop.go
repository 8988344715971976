//go:build linux

package bpftest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Loop is a loop block device backed by a file in a test's temp dir.
type Loop struct {
	// Path is the device node, such as /dev/loop3.
	Path string
	// Name is the kernel's name of the device, such as loop3.
	Name string
	// Major and Minor are the device numbers.
	Major, Minor uint32
}

// NewLoop attaches a free loop device to a new file of size bytes in
// t.TempDir(), with LOOP_CTL_GET_FREE and LOOP_CONFIGURE (Linux 5.8). The
// device does buffered I/O on the file, so any file system can hold it,
// tmpfs included. It loads the loop module if it is not loaded yet.
// Cleanup detaches the device.
func NewLoop(t testing.TB, size int64) *Loop {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	backing, err := os.Create(filepath.Join(dir, "loop-backing"))
	if err != nil {
		t.Fatalf("make loop backing file: %v", err)
	}
	defer backing.Close() // the loop device holds its own reference
	if err := backing.Truncate(size); err != nil {
		t.Fatalf("size loop backing file: %v", err)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Before the loop module loads, /dev has no node for it (nothing
		// made the static nodes); opening one with its fixed number
		// (misc 10:237) loads it through char-major-10-237.
		node := filepath.Join(dir, "loop-control")
		if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237))); err != nil {
			t.Fatalf("make loop control node: %v", err)
		}
		ctl, err = os.OpenFile(node, os.O_RDWR, 0)
	}
	if err != nil {
		t.Fatalf("open loop control: %v", err)
	}
	defer ctl.Close()
	// Another process may take the free device between the two ioctls.
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("get free loop device: %v", err)
		}
		l := &Loop{Path: fmt.Sprintf("/dev/loop%d", n), Name: fmt.Sprintf("loop%d", n)}
		dev, err := os.OpenFile(l.Path, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("open %s: %v", l.Path, err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &unix.LoopConfig{Fd: uint32(backing.Fd())})
		if errors.Is(err, unix.EBUSY) && attempt < 10 {
			dev.Close()
			continue
		}
		if err != nil {
			dev.Close()
			t.Fatalf("configure %s: %v", l.Path, err)
		}
		t.Cleanup(func() {
			if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0); err != nil {
				t.Errorf("detach %s: %v", l.Path, err)
			}
			dev.Close()
		})
		var st unix.Stat_t
		if err := unix.Fstat(int(dev.Fd()), &st); err != nil {
			t.Fatalf("stat %s: %v", l.Path, err)
		}
		l.Major, l.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		return l
	}
}
