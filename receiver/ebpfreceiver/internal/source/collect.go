package source

import (
	"maps"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// Collector assembles one collection: a Resource for every cgroup that any
// part has data for, then the node's Resource.
type Collector struct {
	MB        *metadata.MetricsBuilder
	Resources Resources
	Parts     []MetricsPart
}

// Collect records every part. recordSelf records the receiver's own
// node-level data points. The error, from resolving cgroup paths, leaves
// Resources without their path but never without their data.
func (c *Collector) Collect(now pcommon.Timestamp, recordSelf func(pcommon.Timestamp)) (pmetric.Metrics, error) {
	ids := make(map[uint64]struct{})
	for _, s := range c.Parts {
		for id := range s.Cgroups {
			ids[id] = struct{}{}
		}
	}
	err := c.Resources.Paths.Refresh(maps.Keys(ids))

	out := pmetric.NewMetrics()
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		histograms := pmetric.NewMetricSlice()
		for _, s := range c.Parts {
			s.Record(id, now, histograms)
		}
		c.emit(out, c.Resources.Cgroup(id), histograms)
	}
	histograms := pmetric.NewMetricSlice()
	for _, s := range c.Parts {
		s.RecordNode(now, histograms)
	}
	recordSelf(now)
	c.emit(out, c.Resources.Node(), histograms)
	omitUnset(out)
	return out, err
}

// emit moves the recorded data points and histograms, under res, into out.
func (c *Collector) emit(out pmetric.Metrics, res pcommon.Resource, histograms pmetric.MetricSlice) {
	md := c.MB.Emit(metadata.WithResource(res))
	if histograms.Len() > 0 {
		rms := md.ResourceMetrics()
		if rms.Len() == 0 {
			rm := rms.AppendEmpty()
			res.CopyTo(rm.Resource())
			rm.ScopeMetrics().AppendEmpty().Scope().SetName(metadata.ScopeName)
		}
		histograms.MoveAndAppendTo(rms.At(0).ScopeMetrics().At(0).Metrics())
	}
	md.ResourceMetrics().MoveAndAppendTo(out.ResourceMetrics())
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
