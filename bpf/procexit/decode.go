//go:build linux

package procexit

import (
	"fmt"
	"unsafe"
)

// Kind says what an Event is.
type Kind = bpfEventKind

// The kinds.
const (
	KindSignaled Kind = bpfEventKindEVENT_SIGNALED // the process died by a signal
	KindOOMKill  Kind = bpfEventKindEVENT_OOM_KILL // the OOM killer killed the process
)

const recordSize = int(unsafe.Sizeof(bpfEvent{}))

// Event is one process's death by a signal or OOM kill.
type Event struct {
	Kind Kind
	// Time is the kernel's monotonic clock at the exit, in nanoseconds
	// since boot.
	Time uint64
	// CgroupID is the cgroup v2 id of the exiting task.
	CgroupID uint64
	// PID is the process id; TID the exiting thread's.
	PID, TID uint32
	// Status is zero for KindSignaled and KindOOMKill records.
	Status uint8
	// Signal is the signal that killed the process (KindSignaled).
	Signal     uint8
	CoreDumped bool
	// HasFigures says whether the OOM figures below are set: older
	// kernels' oom:mark_victim gives only the pid (6.1 until a stable
	// update added them, as in Debian's 6.1.0-56).
	HasFigures  bool
	TotalVMKB   uint64
	AnonRSSKB   uint64
	FileRSSKB   uint64
	ShmemRSSKB  uint64
	PgtablesKB  uint64
	UID         uint32
	OOMScoreAdj int16
	// Comm is the exiting thread's name, at most 15 bytes.
	Comm string
}

// Decode decodes a raw ring buffer record into e. It allocates only for a
// Comm that differs from e's.
func Decode(raw []byte, e *Event) error {
	if len(raw) != recordSize {
		return fmt.Errorf("process exit event: got %d bytes, want %d", len(raw), recordSize)
	}
	var rec bpfEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), recordSize), raw)
	if Kind(rec.Kind) > KindOOMKill {
		return fmt.Errorf("process exit event: unknown kind %d", rec.Kind)
	}
	e.Kind = Kind(rec.Kind)
	e.Time = rec.TimeNs
	e.CgroupID = rec.CgroupId
	e.PID = rec.Pid
	e.TID = rec.Tid
	e.Status = rec.Status
	e.Signal = rec.Signal
	e.CoreDumped = rec.CoreDumped != 0
	e.HasFigures = rec.Oom.HasFigures != 0
	e.TotalVMKB = rec.Oom.TotalVmKb
	e.AnonRSSKB = rec.Oom.AnonRssKb
	e.FileRSSKB = rec.Oom.FileRssKb
	e.ShmemRSSKB = rec.Oom.ShmemRssKb
	e.PgtablesKB = rec.Oom.PgtablesKb
	e.UID = rec.Oom.Uid
	e.OOMScoreAdj = rec.Oom.OomScoreAdj
	e.Comm = commString(e.Comm, rec.Comm[:])
	return nil
}

// commString returns the NUL-terminated name in b, reusing prev when it is
// the same.
func commString(prev string, b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	name := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), n)
	if string(name) == prev {
		return prev
	}
	return string(name)
}
