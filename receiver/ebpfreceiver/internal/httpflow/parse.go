package httpflow

import (
	"bytes"
	"net/textproto"
	"strconv"
)

// methods are the request methods a start line may use (RFC 9110 and PATCH).
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

const maxMethodLen = 7

// methodOf returns the known method spelled by b, or "".
func methodOf(b []byte) string {
	for _, m := range methods {
		if string(b) == m {
			return m
		}
	}
	return ""
}

func isMethodPrefix(b []byte) bool {
	for _, m := range methods {
		if len(b) <= len(m) && string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

// requestLine checks b as the start of a request line. It returns the line's
// length including CRLF, or 0 if b is a valid but incomplete start; ok is
// false if b cannot begin a request line.
func requestLine(b []byte) (n int, ok bool) {
	sp := bytes.IndexByte(b[:min(len(b), maxMethodLen+1)], ' ')
	if sp < 0 {
		return 0, len(b) <= maxMethodLen && isMethodPrefix(b)
	}
	if methodOf(b[:sp]) == "" {
		return 0, false
	}
	i := sp + 1
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == len(b) {
		return 0, true
	}
	if i == sp+1 || b[i] != ' ' {
		return 0, false
	}
	m, ok := versionCRLF(b[i+1:])
	if !ok || m == 0 {
		return 0, ok
	}
	return i + 1 + m, true
}

// versionCRLF checks b as the start of "HTTP/1.0\r\n" or "HTTP/1.1\r\n".
func versionCRLF(b []byte) (n int, ok bool) {
	const v = "HTTP/1.x\r\n"
	if !versionPrefix(b, v) {
		return 0, false
	}
	if len(b) < len(v) {
		return 0, true
	}
	return len(v), true
}

// versionPrefix reports whether b matches the start of pat, where the x in
// pat stands for 0 or 1.
func versionPrefix(b []byte, pat string) bool {
	for j := 0; j < len(b) && j < len(pat); j++ {
		if pat[j] == 'x' {
			if b[j] != '0' && b[j] != '1' {
				return false
			}
		} else if b[j] != pat[j] {
			return false
		}
	}
	return true
}

// statusLine is requestLine for a status line:
// HTTP/1.x SP 3DIGIT [SP reason] CRLF, the code 100-599.
func statusLine(b []byte) (n int, ok bool) {
	const pre = "HTTP/1.x "
	if !versionPrefix(b, pre) {
		return 0, false
	}
	for j := len(pre); j < len(b) && j < len(pre)+3; j++ {
		lo := byte('0')
		if j == len(pre) {
			lo = '1'
		}
		if b[j] < lo || b[j] > '9' || (j == len(pre) && b[j] > '5') {
			return 0, false
		}
	}
	i := len(pre) + 3
	if len(b) <= i {
		return 0, true
	}
	if b[i] == ' ' {
		i++
		for i < len(b) && b[i] != '\r' {
			if c := b[i]; c != '\t' && (c < ' ' || c == 0x7f) {
				return 0, false
			}
			i++
		}
	}
	switch {
	case len(b) <= i:
		return 0, true
	case b[i] != '\r':
		return 0, false
	case len(b) == i+1:
		return 0, true
	case b[i+1] != '\n':
		return 0, false
	}
	return i + 2, true
}

// startLine is requestLine or statusLine.
func startLine(b []byte, req bool) (int, bool) {
	if req {
		return requestLine(b)
	}
	return statusLine(b)
}

// version returns "1.0" or "1.1" from the digit after "HTTP/1.".
func version(d byte) string {
	if d == '0' {
		return "1.0"
	}
	return "1.1"
}

// parseRequestLine splits a complete, valid request line.
func parseRequestLine(line []byte) (method string, target []byte, ver string) {
	sp := bytes.IndexByte(line, ' ')
	end := len(line) - len(" HTTP/1.x\r\n")
	return methodOf(line[:sp]), line[sp+1 : end], version(line[end+8])
}

// statusCodeEnd is the length of "HTTP/1.1 200".
const statusCodeEnd = 12

// parseStatusLine returns the code of a valid status line, complete or cut
// after the code.
func parseStatusLine(line []byte) int {
	return int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
}

// fields is what the parser keeps from a header section.
type fields struct {
	traceParent  []byte
	otlpType     bool  // Content-Type is one that OTLP/HTTP sends
	length       int64 // Content-Length, -1 if absent
	badLength    bool  // malformed or conflicting Content-Length
	te           bool  // Transfer-Encoding present
	chunked      bool  // chunked is the final transfer coding
	expect       bool  // Expect: 100-continue
	traceParents int
}

var (
	hdrTraceParent = []byte("Traceparent")
	hdrLength      = []byte("Content-Length")
	hdrTE          = []byte("Transfer-Encoding")
	hdrExpect      = []byte("Expect")
	hdrType        = []byte("Content-Type")
	valChunked     = []byte("chunked")
	val100         = []byte("100-continue")
)

// parseFields reads the complete header lines of b, which starts after the
// start line. Names are matched case-insensitively without canonicalising
// them (textproto.CanonicalMIMEHeaderKey would allocate); lines without a
// colon, and lines with a bare CR or LF, which RFC 9112 makes invalid, are
// ignored.
func parseFields(b []byte) fields {
	f := fields{length: -1}
	for {
		i := bytes.Index(b, crlf)
		if i <= 0 {
			return f
		}
		line := b[:i]
		b = b[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.ContainsAny(line, "\r\n") {
			continue
		}
		name, val := line[:colon], textproto.TrimBytes(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hdrTraceParent):
			f.traceParent = val
			f.traceParents++
		case bytes.EqualFold(name, hdrLength):
			n, ok := parseLength(val)
			if !ok || (f.length >= 0 && n != f.length) {
				f.badLength = true
			}
			f.length = n
		case bytes.EqualFold(name, hdrTE):
			f.te = true
			last := val
			if j := bytes.LastIndexByte(val, ','); j >= 0 {
				last = textproto.TrimBytes(val[j+1:])
			}
			f.chunked = bytes.EqualFold(last, valChunked)
		case bytes.EqualFold(name, hdrExpect):
			f.expect = bytes.EqualFold(val, val100)
		case bytes.EqualFold(name, hdrType):
			f.otlpType = isOTLPType(val)
		}
	}
}

// OTLP/HTTP export paths and content types (OTLP specification, "OTLP/HTTP").
var (
	otlpPaths = []string{"/v1/traces", "/v1/metrics", "/v1/logs", "/v1development/profiles"}
	otlpTypes = [][]byte{[]byte("application/x-protobuf"), []byte("application/json")}
)

// isOTLPType reports whether a Content-Type value is one that OTLP/HTTP
// sends, with or without parameters.
func isOTLPType(v []byte) bool {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = textproto.TrimBytes(v[:i])
	}
	for _, t := range otlpTypes {
		if bytes.EqualFold(v, t) {
			return true
		}
	}
	return false
}

// parseLength parses a Content-Length value: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// validTraceParent checks a W3C traceparent value:
// version-traceid-parentid-flags in lower-case hex, version not ff, ids not
// all zero; version 00 has exactly 55 characters, later versions may append
// "-" and more.
func validTraceParent(v []byte) bool {
	if len(v) < 55 || (len(v) > 55 && v[55] != '-') {
		return false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	if !lowerHex(v[0:2]) || !lowerHex(v[3:35]) || !lowerHex(v[36:52]) || !lowerHex(v[53:55]) {
		return false
	}
	if string(v[0:2]) == "ff" || (string(v[0:2]) == "00" && len(v) != 55) {
		return false
	}
	return !allZero(v[3:35]) && !allZero(v[36:52])
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

// unhex returns the value of hex digit c, or -1.
func unhex(c byte) int64 {
	switch {
	case c >= '0' && c <= '9':
		return int64(c - '0')
	case c >= 'a' && c <= 'f':
		return int64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int64(c-'A') + 10
	}
	return -1
}
