//go:build linux

// Package k8stest runs a real Kubernetes API server for end-to-end tests:
// etcd and kube-apiserver on loopback ports, with no cluster, scheduler or
// kubelet. Tests create namespaces and pods through kubectl and set pod
// status themselves, the way a kubelet would.
//
// etcd comes from Debian's etcd-server package. kube-apiserver is built once
// per machine by tools/kube-apiserver/build.sh; a test fails with that
// command when the binary is missing.
package k8stest
