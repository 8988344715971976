package tcpconn

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"
)

func encode(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// statsFrom fills the counters of a FlowStats, in field order, from v.
func statsFrom(t *testing.T, v func(i int) uint64) FlowStats {
	t.Helper()
	n := binary.Size(FlowStats{}) / 8
	words := make([]uint64, n)
	for i := range words {
		words[i] = v(i)
	}
	var s FlowStats
	if err := s.UnmarshalBinary(encode(t, words)); err != nil {
		t.Fatal(err)
	}
	return s
}

// The map bytes are the C structs; decoding them field by field is only
// right if Go's encoding has no padding the C layout lacks.
func TestLayout(t *testing.T) {
	if got, want := binary.Size(Flow{}), int(unsafe.Sizeof(Flow{})); got != want {
		t.Errorf("flow: encoded size %d, memory size %d", got, want)
	}
	if got, want := binary.Size(FlowStats{}), int(unsafe.Sizeof(FlowStats{})); got != want {
		t.Errorf("flow stats: encoded size %d, memory size %d", got, want)
	}
}

func TestFlowUnmarshalBinary(t *testing.T) {
	want := Flow{
		CgroupId:  0x0102030405060708,
		PeerAddr:  netip.MustParseAddr("::ffff:198.18.0.2").As16(),
		PeerPort:  8080,
		LocalPort: 0,
		Direction: uint8(DirectionClient),
	}
	raw := encode(t, bpfTcpFlow(want))
	for _, tc := range []struct {
		name    string
		raw     []byte
		wantErr bool
	}{
		{"exact", raw, false},
		{"truncated", raw[:len(raw)-1], true},
		{"oversized", append(bytes.Clone(raw), 0), true},
		{"empty", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Flow
			err := got.UnmarshalBinary(tc.raw)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestFlowStatsUnmarshalBinary(t *testing.T) {
	want := FlowStats{
		Opened:         [OutcomeCount]uint64{5, 3, 1, 2, 4},
		Adopted:        6,
		Closed:         7,
		BytesSent:      1 << 40,
		BytesReceived:  12345,
		Retransmits:    8,
		ResetsSent:     9,
		ResetsReceived: 10,
		RttCount:       11,
		RttSumUs:       12,
	}
	want.RttBuckets[0] = 1
	want.RttBuckets[RTTBuckets-1] = 2
	raw := encode(t, bpfTcpFlowStats(want))
	for _, tc := range []struct {
		name    string
		raw     []byte
		wantErr bool
	}{
		{"exact", raw, false},
		{"truncated", raw[:len(raw)-8], true},
		{"oversized", append(bytes.Clone(raw), make([]byte, 8)...), true},
		{"empty", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got FlowStats
			err := got.UnmarshalBinary(tc.raw)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestFlowPeer(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr [16]byte
		want netip.Addr
	}{
		{"ipv4 mapped", netip.MustParseAddr("::ffff:198.18.0.2").As16(), netip.MustParseAddr("198.18.0.2")},
		{"ipv4 loopback", netip.MustParseAddr("::ffff:127.0.0.1").As16(), netip.MustParseAddr("127.0.0.1")},
		{"ipv6", netip.MustParseAddr("2001:db8::1").As16(), netip.MustParseAddr("2001:db8::1")},
		{"ipv6 loopback", netip.IPv6Loopback().As16(), netip.IPv6Loopback()},
		{"zero", [16]byte{}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Flow{PeerAddr: tc.addr}.Peer()
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if got.Is4In6() {
				t.Errorf("%v is still mapped", got)
			}
		})
	}
}

func TestFlowStatsAdd(t *testing.T) {
	// Every counter differs, so a field that Add skips or mixes up shows.
	a := statsFrom(t, func(i int) uint64 { return uint64(i + 1) })
	b := statsFrom(t, func(i int) uint64 { return uint64(1000 * (i + 1)) })
	want := statsFrom(t, func(i int) uint64 { return uint64(1001 * (i + 1)) })
	a.Add(&b)
	if a != want {
		t.Errorf("got %+v, want %+v", a, want)
	}
	var zero FlowStats
	a.Add(&zero)
	if a != want {
		t.Errorf("adding zero: got %+v, want %+v", a, want)
	}
}

func TestFlowStatsActive(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    FlowStats
		want int64
	}{
		{"none", FlowStats{}, 0},
		{"opened", FlowStats{Opened: [OutcomeCount]uint64{OutcomeEstablished: 5}}, 5},
		{"opened and closed", FlowStats{Opened: [OutcomeCount]uint64{OutcomeEstablished: 5}, Closed: 3}, 2},
		{"adopted", FlowStats{Opened: [OutcomeCount]uint64{OutcomeEstablished: 1}, Adopted: 4, Closed: 2}, 3},
		{"failures are not active", FlowStats{Opened: [OutcomeCount]uint64{0, 3, 1, 2, 4}}, 0},
		{"all closed", FlowStats{Opened: [OutcomeCount]uint64{OutcomeEstablished: 6}, Closed: 6}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Active(); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// Records of every size decode or fail cleanly; a decoded flow keeps its
// address in the 16 bytes the kernel writes.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, flowSize))
	f.Add(make([]byte, statsSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fl Flow
		if err := fl.UnmarshalBinary(raw); err == nil {
			if len(raw) != flowSize {
				t.Fatalf("decoded a %d-byte flow", len(raw))
			}
			_ = fl.Peer()
		}
		var st FlowStats
		if err := st.UnmarshalBinary(raw); err == nil {
			if len(raw) != statsSize {
				t.Fatalf("decoded %d-byte stats", len(raw))
			}
			var sum FlowStats
			sum.Add(&st)
			if sum != st {
				t.Fatal("adding to zero changed the stats")
			}
		}
	})
}
