package source

import (
	"iter"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// CgroupPaths resolves the cgroup ids the kernel records.
type CgroupPaths interface {
	// Refresh resolves the ids in use at a collection and evicts removed
	// cgroups no longer in use.
	Refresh(ids iter.Seq[uint64]) error
	// Resolve resolves ids between collections and evicts nothing.
	Resolve(ids iter.Seq[uint64]) error
	Path(id uint64) (string, bool)
	// IsRemoved reports a removed cgroup whose data is still exported.
	IsRemoved(id uint64) bool
}

// Resources builds the Resources that data is grouped by: one per cgroup,
// and one for the node itself.
type Resources struct {
	Attributes metadata.ResourceAttributesConfig
	Paths      CgroupPaths
	HostName   string
	// NodeName is the Kubernetes node name, empty outside Kubernetes.
	NodeName string
}

// Node is the node's own Resource.
func (r Resources) Node() pcommon.Resource {
	rb := metadata.NewResourceBuilder(r.Attributes)
	r.setNode(rb)
	return rb.Emit()
}

// Cgroup is the Resource of a cgroup.
func (r Resources) Cgroup(id uint64) pcommon.Resource {
	rb := metadata.NewResourceBuilder(r.Attributes)
	r.setNode(rb)
	rb.SetCgroupID(int64(id))
	if p, ok := r.Paths.Path(id); ok {
		rb.SetCgroupPath(p)
		ident := cgroup.Parse(p)
		if ident.ContainerID != "" {
			rb.SetContainerID(ident.ContainerID)
		}
		if ident.PodUID != "" {
			rb.SetK8sPodUID(ident.PodUID)
		}
		if ident.QoSClass != "" {
			rb.SetK8sPodQosClass(ident.QoSClass)
		}
	}
	return rb.Emit()
}

func (r Resources) setNode(rb *metadata.ResourceBuilder) {
	rb.SetHostName(r.HostName)
	if r.NodeName != "" {
		rb.SetK8sNodeName(r.NodeName)
	}
}
