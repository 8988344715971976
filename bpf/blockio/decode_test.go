//go:build linux

package blockio

import (
	"bytes"
	"encoding/binary"
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

// The map bytes are the C structs; decoding them field by field is only
// right if Go's encoding has no padding the C layout lacks.
func TestLayout(t *testing.T) {
	if got, want := binary.Size(Key{}), int(unsafe.Sizeof(Key{})); got != want {
		t.Errorf("key: encoded size %d, memory size %d", got, want)
	}
	if got, want := binary.Size(Stats{}), int(unsafe.Sizeof(Stats{})); got != want {
		t.Errorf("stats: encoded size %d, memory size %d", got, want)
	}
}

func TestKeyUnmarshalBinary(t *testing.T) {
	want := Key{CgroupId: 0x0102030405060708, Dev: 259<<20 | 3, Op: uint8(OpWrite)}
	raw := encode(t, bpfIoKey(want))
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
			var got Key
			err := got.UnmarshalBinary(tc.raw)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	if want.Major() != 259 || want.Minor() != 3 {
		t.Errorf("dev %#x: major %d minor %d, want 259 and 3", want.Dev, want.Major(), want.Minor())
	}
}

func TestStatsUnmarshalBinary(t *testing.T) {
	want := Stats{Count: 3, Bytes: 3 << 16, LatencySumNs: 123456}
	want.LatencyBuckets[0] = 1
	want.LatencyBuckets[LatencyBuckets-1] = 2
	raw := encode(t, bpfIoStats(want))
	for _, tc := range []struct {
		name    string
		raw     []byte
		wantErr bool
	}{
		{"exact", raw, false},
		{"truncated", raw[:len(raw)-8], true},
		{"oversized", append(bytes.Clone(raw), 0), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Stats
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

func TestStatsAdd(t *testing.T) {
	a := Stats{Count: 1, Bytes: 4096, LatencySumNs: 10}
	a.LatencyBuckets[3] = 1
	b := Stats{Count: 2, Bytes: 8192, LatencySumNs: 20}
	b.LatencyBuckets[3] = 1
	b.LatencyBuckets[LatencyBuckets-1] = 1
	a.Add(&b)
	want := Stats{Count: 3, Bytes: 12288, LatencySumNs: 30}
	want.LatencyBuckets[3] = 2
	want.LatencyBuckets[LatencyBuckets-1] = 1
	if a != want {
		t.Errorf("got %+v, want %+v", a, want)
	}
}

func TestDeviceNameFallback(t *testing.T) {
	// Major 4095, the largest a dev_t holds, is not given to block drivers.
	if got, want := DeviceName(4095<<20|7), "4095:7"; got != want {
		t.Errorf("DeviceName: got %q, want %q", got, want)
	}
}

// Records of every size decode or fail cleanly, and a decoded key or value
// is the whole record.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, keySize))
	f.Add(make([]byte, statsSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k Key
		if err := k.UnmarshalBinary(raw); err == nil {
			if len(raw) != keySize {
				t.Fatalf("decoded a %d-byte key", len(raw))
			}
			if k.Major()<<minorBits|k.Minor() != k.Dev {
				t.Fatalf("major %d and minor %d do not make dev %#x", k.Major(), k.Minor(), k.Dev)
			}
		}
		var st Stats
		if err := st.UnmarshalBinary(raw); err == nil {
			if len(raw) != statsSize {
				t.Fatalf("decoded %d-byte stats", len(raw))
			}
			var sum Stats
			sum.Add(&st)
			if sum != st {
				t.Fatal("adding to zero changed the stats")
			}
		}
	})
}
