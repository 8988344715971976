//go:build linux

package blockio

import (
	"encoding/binary"
	"fmt"
)

// Key identifies one aggregated series in the kernel's series map: a
// cgroup v2 id, a disk and an Op.
type Key bpfIoKey

// Stats holds the counters of one series, summed over CPUs by Snapshot.
type Stats bpfIoStats

// Op is the kind of a request; Key.Op holds it.
type Op = bpfIoOp

// The ops. Flushes, discards and other requests are not counted.
const (
	OpRead  Op = bpfIoOpIO_OP_READ
	OpWrite Op = bpfIoOpIO_OP_WRITE
	opCount    = int(bpfIoOpIO_OP_COUNT)
)

// LatencyBuckets is the number of buckets in Stats.LatencyBuckets. Bucket i
// counts requests whose latency, issue to completion, is in [2^i, 2^(i+1))
// microseconds, except bucket 0, which counts [0, 2); the last bucket has no
// upper bound.
const LatencyBuckets = len(Stats{}.LatencyBuckets)

// minorBits is the width of the minor number in a Key.Dev, as in the
// kernel's MKDEV.
const minorBits = 20

var (
	keySize   = binary.Size(Key{})
	statsSize = binary.Size(Stats{})
)

// Major returns the major number of the disk dev.
func Major(dev uint32) uint32 { return dev >> minorBits }

// Minor returns the minor number of the disk dev.
func Minor(dev uint32) uint32 { return dev & (1<<minorBits - 1) }

// Major returns the disk's major number.
func (k Key) Major() uint32 { return Major(k.Dev) }

// Minor returns the disk's first minor number.
func (k Key) Minor() uint32 { return Minor(k.Dev) }

// UnmarshalBinary decodes a key of the series map.
func (k *Key) UnmarshalBinary(raw []byte) error {
	if len(raw) != keySize {
		return fmt.Errorf("io key: got %d bytes, want %d", len(raw), keySize)
	}
	_, err := binary.Decode(raw, binary.NativeEndian, k)
	return err
}

// UnmarshalBinary decodes one CPU's value of the series or overflow map.
func (s *Stats) UnmarshalBinary(raw []byte) error {
	if len(raw) != statsSize {
		return fmt.Errorf("io stats: got %d bytes, want %d", len(raw), statsSize)
	}
	_, err := binary.Decode(raw, binary.NativeEndian, s)
	return err
}

// Add adds o's counters to s.
func (s *Stats) Add(o *Stats) {
	s.Count += o.Count
	s.Bytes += o.Bytes
	s.LatencySumNs += o.LatencySumNs
	for i := range s.LatencyBuckets {
		s.LatencyBuckets[i] += o.LatencyBuckets[i]
	}
}
