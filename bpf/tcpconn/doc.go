// Package tcpconn is the kernel side of the TCP connection metrics: eBPF
// programs on the sock, tcp and socket-length tracepoints that aggregate
// per-flow counters in per-CPU maps, and the Go code that loads them and
// reads the maps.
//
// A flow is one owner cgroup, one direction, and one peer: the peer address
// with the server's port on the client side, or with the local listening
// port on the server side. A client's ephemeral port is never part of it.
package tcpconn
