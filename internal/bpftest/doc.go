// Package bpftest holds helpers for kernel tests: checks that fail a test
// when the machine cannot run eBPF programs, fake Kubernetes pods made of a
// cgroup v2 directory and a network namespace, helper processes that make
// TCP traffic from inside a pod, and packet loss.
//
// Test packages that use the traffic helpers call RunHelperIfRequested first
// in their TestMain, because helper processes are the test binary itself.
package bpftest
