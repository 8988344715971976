// Package cgrouptrack reports cgroup v2 directories as they are made and
// removed, with their paths, from the cgroup:cgroup_mkdir and
// cgroup:cgroup_rmdir tracepoints.
package cgrouptrack
