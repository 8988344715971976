//go:build linux

package tcpconn

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Flow identifies one aggregated series in the kernel's flows map.
type Flow bpfTcpFlow

// FlowStats holds the counters of one flow, summed over CPUs by Snapshot.
type FlowStats bpfTcpFlowStats

// Direction tells which side of the connection the owner is.
type Direction = bpfDirection

// The directions.
const (
	DirectionUnknown Direction = bpfDirectionDIRECTION_UNKNOWN
	DirectionClient  Direction = bpfDirectionDIRECTION_CLIENT
	DirectionServer  Direction = bpfDirectionDIRECTION_SERVER
	directionCount             = int(bpfDirectionDIRECTION_COUNT)
)

// Outcome is how a connection attempt ended; it indexes FlowStats.Opened.
type Outcome = bpfOutcome

// The outcomes.
const (
	OutcomeEstablished Outcome = bpfOutcomeOUTCOME_ESTABLISHED
	OutcomeRefused     Outcome = bpfOutcomeOUTCOME_REFUSED
	OutcomeTimedOut    Outcome = bpfOutcomeOUTCOME_TIMED_OUT
	OutcomeReset       Outcome = bpfOutcomeOUTCOME_RESET
	OutcomeFailed      Outcome = bpfOutcomeOUTCOME_FAILED
	OutcomeCount               = int(bpfOutcomeOUTCOME_COUNT)
)

// RTTBuckets is the number of buckets in FlowStats.RttBuckets. Bucket i
// counts smoothed RTT samples in [2^i, 2^(i+1)) microseconds; the last bucket
// has no upper bound.
const RTTBuckets = len(FlowStats{}.RttBuckets)

var (
	flowSize  = binary.Size(Flow{})
	statsSize = binary.Size(FlowStats{})
)

// UnmarshalBinary decodes a key of the flows map.
func (f *Flow) UnmarshalBinary(raw []byte) error {
	if len(raw) != flowSize {
		return fmt.Errorf("flow key: got %d bytes, want %d", len(raw), flowSize)
	}
	_, err := binary.Decode(raw, binary.NativeEndian, f)
	return err
}

// UnmarshalBinary decodes one CPU's value of the flows or overflow map.
func (s *FlowStats) UnmarshalBinary(raw []byte) error {
	if len(raw) != statsSize {
		return fmt.Errorf("flow stats: got %d bytes, want %d", len(raw), statsSize)
	}
	_, err := binary.Decode(raw, binary.NativeEndian, s)
	return err
}

// Peer returns the peer address, unmapped from IPv4-mapped IPv6. It is
// invalid for flows that have no peer (connections with no owning socket).
func (f Flow) Peer() netip.Addr {
	a := netip.AddrFrom16(f.PeerAddr)
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// Add adds o's counters to s.
func (s *FlowStats) Add(o *FlowStats) {
	for i := range s.Opened {
		s.Opened[i] += o.Opened[i]
	}
	s.Adopted += o.Adopted
	s.Closed += o.Closed
	s.BytesSent += o.BytesSent
	s.BytesReceived += o.BytesReceived
	s.Retransmits += o.Retransmits
	s.ResetsSent += o.ResetsSent
	s.ResetsReceived += o.ResetsReceived
	s.RttCount += o.RttCount
	s.RttSumUs += o.RttSumUs
	for i := range s.RttBuckets {
		s.RttBuckets[i] += o.RttBuckets[i]
	}
}

// Active is the number of connections of the flow that are established now.
func (s *FlowStats) Active() int64 {
	return int64(s.Opened[OutcomeEstablished]+s.Adopted) - int64(s.Closed)
}
