//go:build linux

package cgrouptrack

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func record(t *testing.T, id uint64, op Op, path string, pathLen uint32) []byte {
	t.Helper()
	rec := bpfCgroupEvent{Id: id, Op: uint32(op), PathLen: pathLen}
	for i := range min(len(path), len(rec.Path)) {
		rec.Path[i] = int8(path[i])
	}
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.NativeEndian, &rec))
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	const path = "/kubepods.slice/kubepods-besteffort.slice"
	good := record(t, 4242, OpRmdir, path, uint32(len(path)))
	tests := []struct {
		name    string
		raw     []byte
		want    Event
		wantErr string
	}{
		{name: "rmdir", raw: good, want: Event{ID: 4242, Op: OpRmdir, Path: path}},
		{name: "empty path", raw: record(t, 7, OpMkdir, "", 0), want: Event{ID: 7, Op: OpMkdir}},
		{name: "empty", raw: nil, wantErr: "got 0 bytes"},
		{name: "truncated", raw: good[:len(good)-1], wantErr: "want"},
		{name: "header only", raw: good[:16], wantErr: "got 16 bytes"},
		{name: "too long", raw: append(append([]byte{}, good...), 0), wantErr: "want"},
		{name: "length past the path", raw: record(t, 1, OpMkdir, "/x", 513), wantErr: "past the record"},
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

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, recordSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var e Event
		if Decode(raw, &e) == nil {
			require.LessOrEqual(t, len(e.Path), recordSize)
		}
	})
}
