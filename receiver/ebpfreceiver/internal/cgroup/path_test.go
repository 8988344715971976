package cgroup

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const (
	cid  = "5e0a3f6c2b1d4e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f"
	uid  = "0b7a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
	uidU = "0b7a4c1e_2f3d_4e5f_8a9b_0c1d2e3f4a5b"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Identity
	}{
		{
			name: "containerd systemd burstable",
			path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "Burstable"},
		},
		{
			name: "crio systemd besteffort",
			path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope",
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "BestEffort"},
		},
		{
			name: "docker systemd guaranteed",
			path: "/kubepods.slice/kubepods-pod" + uidU + ".slice/docker-" + cid + ".scope",
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "Guaranteed"},
		},
		{
			name: "cgroupfs burstable",
			path: "/kubepods/burstable/pod" + uid + "/" + cid,
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "Burstable"},
		},
		{
			name: "cgroupfs guaranteed",
			path: "/kubepods/pod" + uid + "/" + cid,
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "Guaranteed"},
		},
		{
			name: "nested below the container",
			path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope/init.scope",
			want: Identity{ContainerID: cid, PodUID: uid, QoSClass: "Burstable"},
		},
		{
			name: "kind node prefix",
			path: "/system.slice/docker-" + cid + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice",
			want: Identity{ContainerID: cid},
		},
		{
			name: "pod sandbox level",
			path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			want: Identity{PodUID: uid, QoSClass: "Burstable"},
		},
		{
			name: "plain docker",
			path: "/system.slice/docker-" + cid + ".scope",
			want: Identity{ContainerID: cid},
		},
		{name: "systemd service", path: "/system.slice/nginx.service"},
		{name: "user session", path: "/user.slice/user-0.slice/session-3.scope"},
		{name: "root", path: "/"},
		{name: "empty", path: ""},
		{
			name: "pod with a non-container child",
			path: "/kubepods/besteffort/pod" + uid + "/abc123",
			want: Identity{PodUID: uid, QoSClass: "BestEffort"},
		},
		{name: "bare id outside a pod", path: "/machine/" + cid},
		{name: "upper-case id", path: "/system.slice/docker-" + "5E0A3F6C2B1D4E7F8A9B0C1D2E3F4A5B6C7D8E9F0A1B2C3D4E5F6A7B8C9D0E1F" + ".scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Parse(tt.path))
		})
	}
}
