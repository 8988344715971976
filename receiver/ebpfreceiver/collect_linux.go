package ebpfreceiver

import (
	"maps"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// collector assembles one collection: a Resource for every cgroup that any
// part has data for, then the node's Resource.
type collector struct {
	mb    *metadata.MetricsBuilder
	res   resources
	parts []metricsPart
}

// collect records every part. recordSelf records the receiver's own
// node-level data points. The error, from resolving cgroup paths, leaves
// Resources without their path but never without their data.
func (c *collector) collect(now pcommon.Timestamp, recordSelf func(pcommon.Timestamp)) (pmetric.Metrics, error) {
	ids := make(map[uint64]struct{})
	for _, s := range c.parts {
		for id := range s.cgroups {
			ids[id] = struct{}{}
		}
	}
	err := c.res.paths.Refresh(maps.Keys(ids))

	out := pmetric.NewMetrics()
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		histograms := pmetric.NewMetricSlice()
		for _, s := range c.parts {
			s.record(id, now, histograms)
		}
		c.emit(out, c.res.cgroup(id), histograms)
	}
	histograms := pmetric.NewMetricSlice()
	for _, s := range c.parts {
		s.recordNode(now, histograms)
	}
	recordSelf(now)
	c.emit(out, c.res.node(), histograms)
	omitUnset(out)
	return out, err
}

// emit moves the recorded data points and histograms, under res, into out.
func (c *collector) emit(out pmetric.Metrics, res pcommon.Resource, histograms pmetric.MetricSlice) {
	md := c.mb.Emit(metadata.WithResource(res))
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
