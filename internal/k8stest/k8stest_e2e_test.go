//go:build e2e && linux

package k8stest

import (
	"testing"
)

func TestCluster(t *testing.T) {
	c := Start(t)
	c.CreateNamespace(t, "shop")
	uid := c.CreatePod(t, Pod{
		Namespace: "shop", Name: "web-6c45f8d6f6-x7k2p", Node: "node-a",
		Labels: map[string]string{"app": "web"}, ReplicaSet: "web-6c45f8d6f6",
	})
	if len(uid) != 36 {
		t.Fatalf("pod uid %q", uid)
	}
	const id = "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	c.SetPodStatus(t, "shop", "web-6c45f8d6f6-x7k2p", PodStatus{IP: "10.244.0.7", ContainerID: id})
	c.SetPodLabels(t, "shop", "web-6c45f8d6f6-x7k2p", map[string]string{"track": "canary"})

	got := c.Kubectl(t, nil, "get", "pod", "web-6c45f8d6f6-x7k2p", "-n", "shop", "-o",
		`jsonpath={.metadata.uid} {.spec.nodeName} {.metadata.ownerReferences[0].name} {.metadata.labels.app} {.metadata.labels.track} {.status.phase} {.status.podIP} {.status.containerStatuses[0].name} {.status.containerStatuses[0].containerID}`)
	want := uid + " node-a web-6c45f8d6f6 web canary Running 10.244.0.7 app " + id
	if got != want {
		t.Errorf("pod is\n%s\nwant\n%s", got, want)
	}
}
