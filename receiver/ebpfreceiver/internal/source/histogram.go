package source

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Pow2Buckets is the bucket count of the histograms counted in power-of-two
// microsecond buckets: EBR_BUCKETS in bpf/include/ebr_maps.h, which the
// kernel's RTT, run queue and disk latency histograms use.
const Pow2Buckets = 24

// pow2MicrosecondBounds are those histograms' bounds in seconds: 2 µs,
// 4 µs, … about 8.4 s.
var pow2MicrosecondBounds = func() []float64 {
	b := make([]float64, Pow2Buckets-1)
	for i := range b {
		b[i] = float64(uint64(2)<<i) / 1e6
	}
	return b
}()

// NewDurationHistogram appends a cumulative histogram in seconds and
// returns its data points.
func NewDurationHistogram(ms pmetric.MetricSlice, name, description string) pmetric.HistogramDataPointSlice {
	m := ms.AppendEmpty()
	m.SetName(name)
	m.SetDescription(description)
	m.SetUnit("s")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return h.DataPoints()
}

// SetPow2Histogram fills dp from a kernel histogram counted in power-of-two
// microsecond buckets, with its sum in nanoseconds.
func SetPow2Histogram(dp pmetric.HistogramDataPoint, start, now pcommon.Timestamp, count, sumNS uint64, buckets []uint64) {
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(now)
	dp.SetCount(count)
	dp.SetSum(float64(sumNS) / 1e9)
	dp.ExplicitBounds().FromRaw(pow2MicrosecondBounds)
	dp.BucketCounts().FromRaw(buckets)
}
