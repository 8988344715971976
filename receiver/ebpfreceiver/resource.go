package ebpfreceiver

import (
	"iter"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// nodeNameEnv names the variable that carries the Kubernetes node name; the
// DaemonSet sets it from the downward API's spec.nodeName.
const nodeNameEnv = "K8S_NODE_NAME"

// cgroupPaths resolves the cgroup ids the kernel records.
type cgroupPaths interface {
	// Refresh resolves the ids in use at a collection and evicts removed
	// cgroups no longer in use.
	Refresh(ids iter.Seq[uint64]) error
	// Resolve resolves ids between collections and evicts nothing.
	Resolve(ids iter.Seq[uint64]) error
	Path(id uint64) (string, bool)
	// IsRemoved reports a removed cgroup whose data is still exported.
	IsRemoved(id uint64) bool
}

// resources builds the Resources that data is grouped by: one per cgroup,
// and one for the node itself.
type resources struct {
	rac      metadata.ResourceAttributesConfig
	paths    cgroupPaths
	hostName string
	nodeName string
}

func (r resources) node() pcommon.Resource {
	rb := metadata.NewResourceBuilder(r.rac)
	r.setNode(rb)
	return rb.Emit()
}

func (r resources) cgroup(id uint64) pcommon.Resource {
	rb := metadata.NewResourceBuilder(r.rac)
	r.setNode(rb)
	rb.SetCgroupID(int64(id))
	if p, ok := r.paths.Path(id); ok {
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

func (r resources) setNode(rb *metadata.ResourceBuilder) {
	rb.SetHostName(r.hostName)
	if r.nodeName != "" {
		rb.SetK8sNodeName(r.nodeName)
	}
}

// omitUnset drops the attributes that do not apply to a series: mdatagen
// records every attribute a metric declares, so a server-side series would
// otherwise carry network.peer.port 0.
func omitUnset(md pmetric.Metrics) {
	unset := func(k string, v pcommon.Value) bool {
		switch k {
		case "network.peer.address", "ebpf.capability.reason", "system.device", "process.exit.signal":
			return v.Str() == ""
		case "network.peer.port", "network.local.port", "process.exit.code":
			return v.Int() == 0
		case "otel.metric.overflow":
			return !v.Bool()
		}
		return false
	}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				var dps pmetric.NumberDataPointSlice
				switch m := ms.At(k); m.Type() {
				case pmetric.MetricTypeSum:
					dps = m.Sum().DataPoints()
				case pmetric.MetricTypeGauge:
					dps = m.Gauge().DataPoints()
				default:
					continue
				}
				for l := range dps.Len() {
					dps.At(l).Attributes().RemoveIf(unset)
				}
			}
		}
	}
}
