// Package schedstat is the kernel side of the scheduler metrics: eBPF
// programs on the sched_wakeup, sched_wakeup_new and sched_switch
// tracepoints that aggregate, per cgroup v2, the run-queue latency
// histogram, the on-CPU time and the involuntary context switches in a
// per-CPU hash map, and the Go code that loads them and reads the map.
//
// Run-queue latency is the time a task waits between becoming runnable (a
// wakeup, or being preempted while still runnable) and running again.
package schedstat
