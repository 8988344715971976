package httpsource

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRouteOf(t *testing.T) {
	tests := []struct{ path, want string }{
		{"", "/"},
		{"/", "/"},
		{"/users", "/users"},
		{"/users/42", "/users/{id}"},
		{"/users/42/orders/7", "/users/{id}/orders/{id}"},
		{"/items/0b7a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b", "/items/{uuid}"},
		{"/blobs/5e0a3f6c2b1d4e7f", "/blobs/{hex}"},
		{"/blobs/DEADBEEF00", "/blobs/{hex}"},
		{"/deadbeef", "/deadbeef"}, // no digit: a word
		{"/abc123", "/abc123"},     // too short for hex
		{"/v1/api/", "/v1/api/"},   // trailing slash kept
		{"/a//b", "/a//b"},         // empty segment kept
		{"/files/report-2024.pdf", "/files/report-2024.pdf"},
		{"/0b7a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5", "/0b7a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5"},
		{"42", "{id}"},
		{"/42/", "/{id}/"},
		{"/users/42/orders", "/users/{id}/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, routeOf(tt.path))
		})
	}
}

// A path with nothing to collapse is its own route: it costs no allocation
// per request.
func TestRouteOfAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { routeOf("/api/v1/items") }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
