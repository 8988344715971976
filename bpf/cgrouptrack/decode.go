//go:build linux

package cgrouptrack

import (
	"encoding/binary"
	"fmt"
)

// Op is what happened to a cgroup.
type Op = bpfCgroupOp

// The ops.
const (
	OpMkdir Op = bpfCgroupOpCGROUP_OP_MKDIR
	OpRmdir Op = bpfCgroupOpCGROUP_OP_RMDIR
)

// Event is one cgroup made or removed.
type Event struct {
	// ID is the cgroup v2 id: the inode of its directory.
	ID uint64
	Op Op
	// Path is relative to the cgroup v2 root, starting with "/".
	Path string
}

var recordSize = binary.Size(bpfCgroupEvent{})

// Decode decodes a raw ring buffer record into e.
func Decode(raw []byte, e *Event) error {
	if len(raw) != recordSize {
		return fmt.Errorf("cgroup event: got %d bytes, want %d", len(raw), recordSize)
	}
	var rec bpfCgroupEvent
	if _, err := binary.Decode(raw, binary.NativeEndian, &rec); err != nil {
		return fmt.Errorf("cgroup event: %w", err)
	}
	if int(rec.PathLen) > len(rec.Path) {
		return fmt.Errorf("cgroup event: path length %d past the record", rec.PathLen)
	}
	path := make([]byte, rec.PathLen)
	for i := range path {
		path[i] = byte(rec.Path[i])
	}
	e.ID = rec.Id
	e.Op = Op(rec.Op)
	e.Path = string(path)
	return nil
}
