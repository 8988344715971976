//go:build linux

package k8stest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// Kubectl runs kubectl against c with stdin (may be nil) and returns its
// output. It fails t on error.
func (c *Cluster) Kubectl(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	args = append([]string{"--kubeconfig=" + c.Kubeconfig, "--request-timeout=30s"}, args...)
	cmd := exec.Command("kubectl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args[2:], " "), err, stderr.Bytes())
	}
	return string(out)
}

// create creates obj and returns the uid the API server gave it.
func (c *Cluster) create(t testing.TB, obj any) string {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return c.Kubectl(t, b, "create", "-f", "-", "-o", "jsonpath={.metadata.uid}")
}

// CreateNamespace creates the namespace name.
func (c *Cluster) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	c.create(t, object("v1", "Namespace", metadata{Name: name}, nil))
}

// Pod describes a pod with one container.
type Pod struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// Node binds the pod to a node (spec.nodeName); no scheduler runs.
	Node string
	// Container names the pod's container; empty means "app".
	Container string
	// ReplicaSet, when set, makes a ReplicaSet of that name the pod's
	// controller, as for a Deployment's pod. The owner is not created.
	ReplicaSet string
}

// CreatePod creates p and returns the uid the API server gave it.
func (c *Cluster) CreatePod(t testing.TB, p Pod) string {
	t.Helper()
	if p.Container == "" {
		p.Container = "app"
	}
	m := metadata{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, Annotations: p.Annotations}
	if p.ReplicaSet != "" {
		m.OwnerReferences = []map[string]any{{
			"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": p.ReplicaSet,
			"uid": uuid(t), "controller": true, "blockOwnerDeletion": true,
		}}
	}
	spec := map[string]any{
		"nodeName":   p.Node,
		"containers": []map[string]any{{"name": p.Container, "image": image}},
	}
	return c.create(t, object("v1", "Pod", m, spec))
}

// SetPodLabels adds or replaces labels of the pod namespace/name.
func (c *Cluster) SetPodLabels(t testing.TB, namespace, name string, labels map[string]string) {
	t.Helper()
	args := []string{"label", "pod", name, "-n", namespace, "--overwrite"}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k+"="+labels[k])
	}
	c.Kubectl(t, nil, args...)
}

// PodStatus is what a kubelet would report for a pod with one running
// container.
type PodStatus struct {
	// IP is the pod's IP address.
	IP string
	// ContainerID is the runtime's id with its scheme, as in
	// containerd://<64 hex>.
	ContainerID string
}

// SetPodStatus marks the pod namespace/name Running with s, through the
// status subresource.
func (c *Cluster) SetPodStatus(t testing.TB, namespace, name string, s PodStatus) {
	t.Helper()
	container := c.Kubectl(t, nil, "get", "pod", name, "-n", namespace, "-o", "jsonpath={.spec.containers[0].name}")
	now := time.Now().UTC().Format(time.RFC3339)
	patch := map[string]any{"status": map[string]any{
		"phase":     "Running",
		"podIP":     s.IP,
		"podIPs":    []map[string]string{{"ip": s.IP}},
		"hostIP":    "127.0.0.1",
		"startTime": now,
		"conditions": []map[string]any{
			{"type": "Ready", "status": "True", "lastTransitionTime": now},
		},
		"containerStatuses": []map[string]any{{
			"name":         container,
			"image":        image,
			"imageID":      imageID,
			"containerID":  s.ContainerID,
			"ready":        true,
			"started":      true,
			"restartCount": 0,
			"state":        map[string]any{"running": map[string]string{"startedAt": now}},
		}},
	}}
	b, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	c.Kubectl(t, nil, "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", string(b))
}

// The image of every pod's container. Nothing pulls it.
const (
	image   = "registry.k8s.io/pause:3.10"
	imageID = "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
)

type metadata struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	OwnerReferences []map[string]any  `json:"ownerReferences,omitempty"`
}

func object(apiVersion, kind string, m metadata, spec any) map[string]any {
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": m}
	if spec != nil {
		o["spec"] = spec
	}
	return o
}

// uuid returns a random version 4 UUID.
func uuid(t testing.TB) string {
	t.Helper()
	h := randomHex(t, 16)
	b := []byte(h)
	b[12] = '4'
	b[16] = "89ab"[b[16]%4]
	h = string(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
