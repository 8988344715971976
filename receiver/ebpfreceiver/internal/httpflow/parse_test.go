package httpflow

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStartLine(t *testing.T) {
	tests := []struct {
		line string
		req  bool
		n    int
		ok   bool
	}{
		{"GET / HTTP/1.1\r\n", true, 16, true},
		{"OPTIONS * HTTP/1.0\r\nHost: x\r\n", true, 20, true},
		{"CONNECT h:443 HTTP/1.1\r\n", true, 24, true},
		{"PATCH /x HTTP/1.1\r", true, 0, true},
		{"DELE", true, 0, true},
		{"", true, 0, true},
		{"GET /a b HTTP/1.1\r\n", true, 0, false},
		{"GET  / HTTP/1.1\r\n", true, 0, false},
		{"GET / HTTP/2.0\r\n", true, 0, false},
		{"GET / HTTP/1.1\n", true, 0, false},
		{"get / HTTP/1.1\r\n", true, 0, false},
		{"FOO / HTTP/1.1\r\n", true, 0, false},
		{"GETS", true, 0, false},
		{"GET /\x00 HTTP/1.1\r\n", true, 0, false},
		{"GET /caf\xc3\xa9 HTTP/1.1\r\n", true, 0, false},
		{"\x16\x03\x01\x02\x00", true, 0, false},
		{"HTTP/1.1 200 OK\r\n", false, 17, true},
		{"HTTP/1.0 404 \r\n", false, 15, true},
		{"HTTP/1.1 204\r\n", false, 14, true},
		{"HTTP/1.1 599 Whatever \xe2\x9c\x93\tx\r\n", false, 29, true},
		{"HTTP/1.1 20", false, 0, true},
		{"HTTP/1.1 200 OK\r", false, 0, true},
		{"HTTP/1.1 600 OK\r\n", false, 0, false},
		{"HTTP/1.1 099 OK\r\n", false, 0, false},
		{"HTTP/1.1 2000 OK\r\n", false, 0, false},
		{"HTTP/1.1 200 O\x00K\r\n", false, 0, false},
		{"HTTP/2 200\r\n", false, 0, false},
		{"HTTP/1.1 200 OK\n", false, 0, false},
		{"+OK\r\n", false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			n, ok := startLine([]byte(tt.line), tt.req)
			assert.Equal(t, tt.n, n)
			assert.Equal(t, tt.ok, ok)
			// Every prefix of a valid line is a valid, incomplete start.
			if tt.ok && tt.n > 0 {
				for i := range tt.n {
					n, ok := startLine([]byte(tt.line[:i]), tt.req)
					assert.Equal(t, 0, n, "prefix %q", tt.line[:i])
					assert.True(t, ok, "prefix %q", tt.line[:i])
				}
			}
		})
	}
}

func TestParseRequestLine(t *testing.T) {
	m, target, v := parseRequestLine([]byte("DELETE /x?y=1 HTTP/1.0\r\n"))
	assert.Equal(t, "DELETE", m)
	assert.Equal(t, "/x?y=1", string(target))
	assert.Equal(t, "1.0", v)
	assert.Equal(t, 503, parseStatusLine([]byte("HTTP/1.1 503 Busy\r\n")))
}

func TestParseFields(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want fields
	}{
		{"none", "\r\n", fields{length: -1}},
		{"length", "Content-Length: 12\r\n\r\n", fields{length: 12}},
		{"same length twice", "content-length: 12\r\nCONTENT-LENGTH:12\r\n\r\n", fields{length: 12}},
		{"conflicting lengths", "Content-Length: 12\r\nContent-Length: 13\r\n\r\n", fields{length: 13, badLength: true}},
		{"signed length", "Content-Length: +12\r\n\r\n", fields{length: 0, badLength: true}},
		{"huge length", "Content-Length: 99999999999999999999\r\n\r\n", fields{length: 0, badLength: true}},
		{"chunked", "Transfer-Encoding: gzip, Chunked\r\n\r\n", fields{length: -1, te: true, chunked: true}},
		{"not chunked last", "Transfer-Encoding: chunked, gzip\r\n\r\n", fields{length: -1, te: true}},
		{"expect", "Expect: 100-Continue\r\n\r\n", fields{length: -1, expect: true}},
		{"no colon ignored", "garbage\r\nContent-Length:  5  \r\n\r\n", fields{length: 5}},
		{"stops at empty line", "\r\nContent-Length: 5\r\n\r\n", fields{length: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, parseFields([]byte(tt.in)))
		})
	}
}

func TestValidTraceParent(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			assert.Equal(t, tt.ok, validTraceParent([]byte(tt.v)))
		})
	}
}
