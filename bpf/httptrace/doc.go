// Package httptrace is the kernel side of HTTP/1.x tracing: eBPF programs
// that copy a bounded prefix of every read- or write-like syscall on a TCP
// connection that speaks HTTP/1.x to a ring buffer, and the Go code that
// loads them and reads the records.
package httptrace
