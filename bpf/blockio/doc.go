// Package blockio is the kernel side of the disk I/O metrics: eBPF programs
// on the block_rq_issue and block_rq_complete tracepoints that count
// completed read and write requests, their bytes and a latency histogram per
// cgroup and disk in per-CPU maps, and the Go code that loads them and reads
// the maps.
//
// A request counts for the cgroup v2 of the task that issues it to the
// driver. I/O that the kernel issues on a task's behalf, such as page cache
// writeback, counts for the kernel thread's cgroup (the root).
package blockio
