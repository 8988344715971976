//go:build linux

package procexit

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func record(t testing.TB, rec bpfEvent, comm string) []byte {
	t.Helper()
	for i := range min(len(comm), len(rec.Comm)) {
		rec.Comm[i] = int8(comm[i])
	}
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.NativeEndian, &rec))
	require.Equal(t, recordSize, buf.Len())
	return buf.Bytes()
}

func signaled(t testing.TB) []byte {
	return record(t, bpfEvent{TimeNs: 123, CgroupId: 42, Pid: 1000, Tid: 1001,
		Kind: uint8(KindSignaled), Signal: 11, CoreDumped: 1}, "segv")
}

func oomKill(t testing.TB) []byte {
	return record(t, bpfEvent{TimeNs: 456, CgroupId: 43, Pid: 2000, Tid: 2000, Kind: uint8(KindOOMKill),
		Oom: bpfOomVictim{TotalVmKb: 1, AnonRssKb: 2, FileRssKb: 3, ShmemRssKb: 4, PgtablesKb: 5,
			Uid: 6, OomScoreAdj: -7, HasFigures: 1}}, "0123456789abcdef")
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		want    Event
		wantErr string
	}{
		{name: "signaled", raw: signaled(t), want: Event{Kind: KindSignaled, Time: 123, CgroupID: 42,
			PID: 1000, TID: 1001, Signal: 11, CoreDumped: true, Comm: "segv"}},
		// The kernel's comm holds 15 bytes and a NUL; a full array is cut
		// at its end.
		{name: "oom kill", raw: oomKill(t), want: Event{Kind: KindOOMKill, Time: 456, CgroupID: 43,
			PID: 2000, TID: 2000, HasFigures: true, TotalVMKB: 1, AnonRSSKB: 2, FileRSSKB: 3,
			ShmemRSSKB: 4, PgtablesKB: 5, UID: 6, OOMScoreAdj: -7, Comm: "0123456789abcdef"}},
		{name: "unknown kind", raw: record(t, bpfEvent{Kind: 2}, ""), wantErr: "unknown kind 2"},
		{name: "too long", raw: append(signaled(t), 0), wantErr: "want"},
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

// Every record shorter than a whole one is rejected.
func TestDecodeTruncated(t *testing.T) {
	raw := signaled(t)
	for n := range len(raw) {
		var e Event
		assert.ErrorContains(t, Decode(raw[:n], &e), "want", "%d bytes", n)
		assert.Equal(t, Event{}, e, "%d bytes", n)
	}
}

// Decoding the same process's records again does not allocate.
func TestDecodeAllocs(t *testing.T) {
	raw := signaled(t)
	var e Event
	require.NoError(t, Decode(raw, &e))
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(raw, &e); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(signaled(f))
	f.Add(oomKill(f))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e Event
		if err := Decode(raw, &e); err != nil {
			return
		}
		if len(raw) != recordSize || e.Kind > KindOOMKill || len(e.Comm) > 16 {
			t.Fatalf("accepted %d bytes as %+v", len(raw), e)
		}
		if bytes.IndexByte([]byte(e.Comm), 0) >= 0 {
			t.Fatalf("comm %q holds a NUL", e.Comm)
		}
	})
}
