// Package l7trace is the kernel side of application-protocol (L7) tracing:
// eBPF programs that name each TCP connection's protocol from its first
// bytes and copy a bounded prefix of every read- or write-like syscall on a
// connection of a known protocol to a ring buffer, and the Go code that
// loads them and reads the records. One set of hooks serves every protocol.
package l7trace
