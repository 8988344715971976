package httpsource

import "strings"

// routeOf reduces a request path to a route-like template for metrics:
// segments that are numbers, UUIDs or long hex strings become {id},
// {uuid} and {hex}. Spans keep the path itself.
func routeOf(path string) string {
	if path == "" {
		return "/"
	}
	// A path with nothing to collapse is its own route, with no allocation.
	var b strings.Builder
	copied := 0 // path[:copied] is in b
	for start := 0; start <= len(path); {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		if t := template(path[start:end]); t != "" {
			if copied == 0 {
				b.Grow(len(path) + len("{uuid}"))
			}
			b.WriteString(path[copied:start])
			b.WriteString(t)
			copied = end
		}
		start = end + 1
	}
	if copied == 0 {
		return path
	}
	b.WriteString(path[copied:])
	return b.String()
}

// template is what a path segment collapses to, or "" when it stays.
func template(seg string) string {
	switch {
	case seg == "":
		return ""
	case isDigits(seg):
		return "{id}"
	case isUUID(seg):
		return "{uuid}"
	case len(seg) >= 8 && isHex(seg) && strings.ContainsAny(seg, "0123456789"):
		return "{hex}"
	}
	return ""
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
