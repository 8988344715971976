// Package procexit is the kernel side of the process exit metrics and logs:
// eBPF programs on sched:sched_process_exit and oom:mark_victim that count,
// per cgroup, processes that exit with a failure status or die by a signal,
// and OOM kills, and send a record of each death by signal (rate-limited)
// and each OOM kill to a ring buffer; and the Go code that loads them, reads
// the maps and decodes the records.
package procexit
