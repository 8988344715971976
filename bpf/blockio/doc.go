// Package blockio is the kernel side of the disk I/O metrics: eBPF programs
// on the block_rq_insert, block_rq_merge, block_rq_issue and
// block_rq_complete tracepoints that count completed read and write
// requests, their bytes and a latency histogram per cgroup, disk and op in
// per-CPU maps, and the Go code that loads them and reads the maps.
//
// A request counts for the cgroup v2 of the task that submitted it: the
// current task when the request is queued (block_rq_insert) or, if it never
// is, when it is issued to the driver. A request queued by a task and issued
// later by kblockd still counts for the task. I/O that the kernel submits on
// a task's behalf, such as page cache writeback, counts for the kernel
// thread's cgroup (the root). Latency runs from issue to the last
// completion.
package blockio
