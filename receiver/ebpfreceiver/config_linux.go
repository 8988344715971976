package ebpfreceiver

import "github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"

// checkCgroupRoot fails unless path is a cgroup v2 mount.
func checkCgroupRoot(path string) error { return cgroup.CheckRoot(path) }
