package httpsource

import "strings"

// routeOf reduces a request path to a route-like template for metrics:
// segments that are numbers, UUIDs or long hex strings become {id},
// {uuid} and {hex}. Spans keep the path itself.
func routeOf(path string) string {
	if path == "" {
		return "/"
	}
	var b strings.Builder
	b.Grow(len(path))
	for i, seg := range strings.Split(path, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		switch {
		case seg == "":
		case isDigits(seg):
			b.WriteString("{id}")
		case isUUID(seg):
			b.WriteString("{uuid}")
		case len(seg) >= 8 && isHex(seg) && strings.ContainsAny(seg, "0123456789"):
			b.WriteString("{hex}")
		default:
			b.WriteString(seg)
		}
	}
	return b.String()
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i] | 0x20 // lower case
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isHex(s[0:8]) && isHex(s[9:13]) && isHex(s[14:18]) && isHex(s[19:23]) && isHex(s[24:])
}
