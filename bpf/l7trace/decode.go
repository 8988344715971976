//go:build linux

package l7trace

import (
	"fmt"
	"net/netip"
	"unsafe"
)

// Dir says what an Event is.
type Dir = bpfL7Dir

// The directions.
const (
	DirIngress Dir = bpfL7DirDIR_INGRESS // bytes the process received
	DirEgress  Dir = bpfL7DirDIR_EGRESS  // bytes the process sent
	DirClose   Dir = bpfL7DirDIR_CLOSE   // the connection closed
)

// Protocol is what the kernel's classifier named a connection.
type Protocol = bpfL7Protocol

// The protocols the classifier names; only their connections are streamed.
const (
	ProtocolHTTP1 Protocol = bpfL7ProtocolL7HTTP1 // HTTP/1.0 and HTTP/1.1
)

// PrefixMax is the most bytes of one syscall an Event carries.
const PrefixMax = len(bpfL7Event{}.Data)

const (
	recordSize = int(unsafe.Sizeof(bpfL7Event{}))
	headerSize = int(unsafe.Offsetof(bpfL7Event{}.Data))
)

// Event is one syscall's data on a connection of a known protocol, or its
// close.
type Event struct {
	// TS is the kernel's monotonic clock, in nanoseconds, when the
	// syscall moved its bytes, or when the connection closed.
	TS uint64
	// Start is when the syscall began, on the same clock; 0 when not known.
	Start uint64
	// Conn identifies the connection while it is open.
	Conn uint64
	// CgroupID is the owner's cgroup, fixed at the connection's first data.
	CgroupID uint64
	PID      uint32
	// Comm is the process's executable name, at most 15 bytes.
	Comm string
	// Size is the number of bytes the syscall moved; Data holds the first
	// of them.
	Size   uint32
	Local  netip.AddrPort
	Remote netip.AddrPort
	Dir    Dir
	// Protocol is the connection's, named from its first captured bytes.
	Protocol Protocol
	// Data is reused by the next Decode into the same Event.
	Data []byte
}

// Decode decodes a raw ring buffer record into e without allocating once
// e.Data has grown to PrefixMax.
func Decode(raw []byte, e *Event) error {
	if len(raw) < headerSize {
		return fmt.Errorf("l7 event: got %d bytes, want at least %d", len(raw), headerSize)
	}
	var rec bpfL7Event
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), recordSize), raw)
	if int(rec.Captured) > PrefixMax || headerSize+int(rec.Captured) != len(raw) {
		return fmt.Errorf("l7 event: %d bytes captured in a %d-byte record", rec.Captured, len(raw))
	}
	if Dir(rec.Dir) > DirClose {
		return fmt.Errorf("l7 event: unknown direction %d", rec.Dir)
	}
	if p := Protocol(rec.Protocol); p == bpfL7ProtocolL7UNCLASSIFIED || p == bpfL7ProtocolL7NONE {
		return fmt.Errorf("l7 event: connection of protocol %d is not streamed", rec.Protocol)
	}
	e.TS = rec.TsNs
	e.Start = rec.StartNs
	e.Conn = rec.Sock
	e.CgroupID = rec.CgroupId
	e.PID = rec.Pid
	e.Comm = commString(e.Comm, rec.Comm[:])
	e.Size = rec.Size
	e.Local = netip.AddrPortFrom(netip.AddrFrom16(rec.LocalAddr).Unmap(), rec.LocalPort)
	e.Remote = netip.AddrPortFrom(netip.AddrFrom16(rec.RemoteAddr).Unmap(), rec.RemotePort)
	e.Dir = Dir(rec.Dir)
	e.Protocol = Protocol(rec.Protocol)
	e.Data = append(e.Data[:0], rec.Data[:rec.Captured]...)
	return nil
}

// commString returns the NUL-terminated name in b, reusing prev when it is
// the same, so that steady traffic does not allocate.
func commString(prev string, b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	if len(prev) == n {
		same := true
		for i := range n {
			if prev[i] != byte(b[i]) {
				same = false
				break
			}
		}
		if same {
			return prev
		}
	}
	buf := make([]byte, n)
	for i := range n {
		buf[i] = byte(b[i])
	}
	return string(buf)
}
