//go:build linux

package floor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Event is the 64-byte record that level 2 submits.
type Event bpfFloorEvent

// Floor is one level of floor programs, loaded and attached.
type Floor struct {
	coll  *ebpf.Collection
	links []link.Link
	rd    *ringbuf.Reader
}

// Open loads and attaches the programs of level 1 or 2.
func Open(level int) (*Floor, error) {
	if level != 1 && level != 2 {
		return nil, fmt.Errorf("floor level %d: want 1 or 2", level)
	}
	f, err := open(fmt.Sprintf("f%d_", level))
	if err != nil {
		return nil, err
	}
	if level == 2 {
		if f.rd, err = ringbuf.NewReader(f.coll.Maps["events"]); err != nil {
			f.Close()
			return nil, fmt.Errorf("open ring buffer: %w", err)
		}
	}
	return f, nil
}

// OpenSched loads and attaches the empty programs on the hooks of package
// schedstat: sched_wakeup, sched_wakeup_new and sched_switch.
func OpenSched() (*Floor, error) {
	return open("floor1_sched_")
}

// open loads and attaches the programs whose names start with keep.
func open(keep string) (*Floor, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load floor spec: %w", err)
	}
	for name := range spec.Programs {
		if !strings.HasPrefix(name, keep) {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load floor objects: %w", err)
	}
	f := &Floor{coll: coll}
	for name, p := range coll.Programs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

// Programs returns the loaded programs by name.
func (f *Floor) Programs() map[string]*ebpf.Program { return f.coll.Programs }

// Drain reads the ring buffer of level 2 until stop is closed: it takes
// whatever is there, then sleeps 1 ms. It returns the records read. On
// other floors it waits for stop and returns 0.
func (f *Floor) Drain(stop <-chan struct{}) (uint64, error) {
	if f.rd == nil {
		<-stop
		return 0, nil
	}
	var rec ringbuf.Record
	var n uint64
	for {
		f.rd.SetDeadline(time.Now())
		for {
			err := f.rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return n, err
			}
			n++
		}
		select {
		case <-stop:
			return n, nil
		case <-time.After(time.Millisecond):
		}
	}
}

// Lost returns the records the kernel had no room for.
func (f *Floor) Lost() (uint64, error) {
	var per []uint64
	if err := f.coll.Maps["lost"].Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close detaches and unloads everything.
func (f *Floor) Close() error {
	var errs []error
	if f.rd != nil {
		errs = append(errs, f.rd.Close())
	}
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	f.coll.Close()
	return errors.Join(errs...)
}
