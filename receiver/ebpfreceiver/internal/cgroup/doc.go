// Package cgroup turns the cgroup v2 ids that eBPF programs record into
// cgroup paths, and cgroup paths into container and pod identities.
package cgroup
