package loader

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// MinPollInterval is the shortest wait of a Reader: cilium/ebpf v0.22.0
// rounds a reader's deadline down to whole milliseconds, so a shorter one
// would make epoll return at once and the reader spin.
const MinPollInterval = 2 * time.Millisecond

// Reader reads the records of a ring buffer whose programs batch their
// wakeups (ebr_wakeup.h).
type Reader struct {
	rd     *ringbuf.Reader
	record ringbuf.Record
	poll   time.Duration
	// recent reports records read since the deadline was last set.
	recent bool
}

// NewReader opens a reader of m. With poll 0 it waits for the kernel's
// wakeup alone. Otherwise it also looks on its own: MinPollInterval after
// a record, for records that came within the kernel's wakeup interval, and
// every poll when idle.
func NewReader(m *ebpf.Map, poll time.Duration) (*Reader, error) {
	if poll != 0 && poll < MinPollInterval {
		return nil, fmt.Errorf("poll interval %s: must be at least %s", poll, MinPollInterval)
	}
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	r := &Reader{rd: rd, poll: poll}
	if poll != 0 {
		rd.SetDeadline(time.Now().Add(poll))
	}
	return r, nil
}

// Next blocks until the next record and returns its bytes, valid until the
// next call. It returns os.ErrClosed once the Reader is closed. Only one
// goroutine may call it.
func (r *Reader) Next() ([]byte, error) {
	for {
		err := r.rd.ReadInto(&r.record)
		switch {
		case err == nil:
			if r.poll != 0 && !r.recent {
				r.recent = true
				r.rd.SetDeadline(time.Now().Add(MinPollInterval))
			}
			return r.record.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Records came since the last look: more may be waiting that
			// fell within the kernel's wakeup interval, so look again soon.
			// Otherwise the next record wakes us; wait for it.
			wait := r.poll
			if r.recent {
				wait = MinPollInterval
			}
			r.recent = false
			r.rd.SetDeadline(time.Now().Add(wait))
		case errors.Is(err, ringbuf.ErrClosed):
			return nil, os.ErrClosed
		default:
			return nil, err
		}
	}
}

// Close unblocks Next and frees the reader.
func (r *Reader) Close() error { return r.rd.Close() }
