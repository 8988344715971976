package cgroup

import (
	"path"
	"regexp"
	"strings"
)

// Identity is what a cgroup path says about its owner. Fields the path does
// not name are empty.
type Identity struct {
	// ContainerID is the full 64-hex container runtime id.
	ContainerID string
	// PodUID is the Kubernetes pod uid, with dashes.
	PodUID string
	// QoSClass is the pod's QoS class: Guaranteed, Burstable or BestEffort.
	QoSClass string
}

var (
	// A container scope under the systemd driver, e.g.
	// cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope.
	systemdContainer = regexp.MustCompile(`^(?:cri-containerd|crio|docker|libpod)-([0-9a-f]{64})\.scope$`)
	// A container directory under the cgroupfs driver: the bare id.
	bareContainer = regexp.MustCompile(`^([0-9a-f]{64})$`)
	// kubepods-burstable-pod<uid>.slice (uid with _) or pod<uid> (cgroupfs).
	systemdPod  = regexp.MustCompile(`^kubepods(?:-(besteffort|burstable))?-pod([0-9a-f_]{36})\.slice$`)
	cgroupfsPod = regexp.MustCompile(`^pod([0-9a-f-]{36})$`)
)

// Parse reads the container and pod identity out of a cgroup path such as
//
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
//	/kubepods/besteffort/pod<uid>/<id>
//
// A container is recognised only below a kubepods or runtime-named element;
// a path that names none keeps an empty Identity.
func Parse(p string) Identity {
	var id Identity
	inKubepods := false
	for _, elem := range strings.Split(path.Clean("/"+p), "/") {
		switch {
		case elem == "kubepods" || elem == "kubepods.slice":
			inKubepods = true
			id.QoSClass = "Guaranteed"
		case inKubepods && (elem == "besteffort" || elem == "kubepods-besteffort.slice"):
			id.QoSClass = "BestEffort"
		case inKubepods && (elem == "burstable" || elem == "kubepods-burstable.slice"):
			id.QoSClass = "Burstable"
		}
		if m := systemdPod.FindStringSubmatch(elem); m != nil && inKubepods {
			id.PodUID = strings.ReplaceAll(m[2], "_", "-")
		} else if m := cgroupfsPod.FindStringSubmatch(elem); m != nil && inKubepods {
			id.PodUID = m[1]
		} else if m := systemdContainer.FindStringSubmatch(elem); m != nil {
			id.ContainerID = m[1]
		} else if m := bareContainer.FindStringSubmatch(elem); m != nil && id.PodUID != "" {
			id.ContainerID = m[1]
		}
	}
	if id.PodUID == "" {
		id.QoSClass = ""
	}
	return id
}
