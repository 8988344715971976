//go:build linux

package l7trace

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// record builds a ring buffer record as the kernel writes it: the header and
// the captured bytes only.
func record(t *testing.T, rec bpfL7Event, data string) []byte {
	t.Helper()
	rec.Captured = uint16(len(data))
	copy(rec.Data[:], data)
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.NativeEndian, &rec))
	return buf.Bytes()[:headerSize+len(data)]
}

func TestDecode(t *testing.T) {
	local := netip.MustParseAddr("::ffff:198.18.0.1").As16()
	remote := netip.MustParseAddr("2001:db8::2").As16()
	base := bpfL7Event{
		TsNs: 42, StartNs: 40, Sock: 0xffff0000, CgroupId: 7, Pid: 99, Size: 1000,
		LocalAddr: local, RemoteAddr: remote, LocalPort: 8080, RemotePort: 40000,
		Dir: uint8(DirIngress), Protocol: uint8(ProtocolHTTP1), Comm: [16]int8{'c', 'u', 'r', 'l'},
	}
	good := record(t, base, "GET / HTTP/1.1\r\n")
	closed := base
	closed.Dir = uint8(DirClose)
	bad := base
	bad.Dir = 9
	unclassified := base
	unclassified.Protocol = uint8(bpfL7ProtocolL7UNCLASSIFIED)
	none := base
	none.Protocol = uint8(bpfL7ProtocolL7NONE)

	tests := []struct {
		name    string
		raw     []byte
		want    Event
		wantErr string
	}{
		{
			name: "data",
			raw:  good,
			want: Event{
				TS: 42, Start: 40, Conn: 0xffff0000, CgroupID: 7, PID: 99, Comm: "curl", Size: 1000,
				Local:  netip.MustParseAddrPort("198.18.0.1:8080"),
				Remote: netip.MustParseAddrPort("[2001:db8::2]:40000"),
				Dir:    DirIngress, Protocol: ProtocolHTTP1, Data: []byte("GET / HTTP/1.1\r\n"),
			},
		},
		{
			name: "close",
			raw:  record(t, closed, ""),
			want: Event{
				TS: 42, Start: 40, Conn: 0xffff0000, CgroupID: 7, PID: 99, Comm: "curl", Size: 1000,
				Local:  netip.MustParseAddrPort("198.18.0.1:8080"),
				Remote: netip.MustParseAddrPort("[2001:db8::2]:40000"),
				Dir:    DirClose, Protocol: ProtocolHTTP1,
			},
		},
		{name: "empty", raw: nil, wantErr: "want at least"},
		{name: "truncated header", raw: good[:headerSize-1], wantErr: "want at least"},
		{name: "truncated data", raw: good[:len(good)-1], wantErr: "captured"},
		{name: "trailing bytes", raw: append(append([]byte{}, good...), 'x'), wantErr: "captured"},
		{name: "unknown direction", raw: record(t, bad, ""), wantErr: "unknown direction"},
		{name: "unclassified", raw: record(t, unclassified, ""), wantErr: "protocol 0 is not streamed"},
		{name: "no protocol", raw: record(t, none, ""), wantErr: "protocol 255 is not streamed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Event
			err := Decode(tt.raw, &e)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, e)
		})
	}
}

// A record claiming more than PrefixMax bytes is rejected, not read past.
func TestDecodeOversizedCapture(t *testing.T) {
	raw := record(t, bpfL7Event{}, "")
	binary.NativeEndian.PutUint16(raw[unsafe.Offsetof(bpfL7Event{}.Captured):], uint16(PrefixMax+1))
	var e Event
	assert.ErrorContains(t, Decode(raw, &e), "captured")
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, headerSize))
	f.Add(make([]byte, recordSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e Event
		if Decode(raw, &e) == nil {
			require.LessOrEqual(t, len(e.Data), PrefixMax)
			require.Equal(t, len(raw)-headerSize, len(e.Data))
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := make([]byte, headerSize+256)
	binary.NativeEndian.PutUint16(raw[unsafe.Offsetof(bpfL7Event{}.Captured):], 256)
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}
