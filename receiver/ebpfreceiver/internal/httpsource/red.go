package httpsource

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

// durationBounds are the semantic conventions' advice for HTTP durations.
var durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// redKey is one series of http.server.request.duration or
// http.client.request.duration.
type redKey struct {
	cgroupID uint64
	server   bool
	method   string
	status   int
	version  string
	route    string // server side; "" on the overflow series
	overflow bool
	addr     netip.Addr // client side: server.address and server.port; made a string at export
	port     uint16
	errType  string
}

type redValue struct {
	counts [15]uint64 // len(durationBounds)+1
	count  uint64
	sum    float64
}

// redMetrics aggregates request durations per resource into cumulative
// histograms, with at most maxRoutes route templates per resource.
type redMetrics struct {
	mu        sync.Mutex
	start     pcommon.Timestamp
	maxRoutes int
	series    map[redKey]*redValue
	// routes holds, per cgroup, the admitted route templates; admission is
	// sticky so that no cumulative series jumps.
	routes map[uint64]map[string]struct{}
	folded map[uint64]map[string]struct{}
}

func newREDMetrics(maxRoutes int) *redMetrics {
	return &redMetrics{
		start:     pcommon.NewTimestampFromTime(time.Now()),
		maxRoutes: maxRoutes,
		series:    make(map[redKey]*redValue),
		routes:    make(map[uint64]map[string]struct{}),
		folded:    make(map[uint64]map[string]struct{}),
	}
}

// add counts an HTTP exchange.
func (r *redMetrics) add(x *exchange) {
	k := redKey{
		cgroupID: x.cgroupID,
		server:   x.role == httpflow.Server,
		method:   x.http.method,
		status:   x.http.status,
		version:  x.http.version,
		errType:  x.errType,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k.server {
		k.route, k.overflow = r.admit(x.cgroupID, routeOf(x.http.path))
	} else {
		k.addr, k.port = x.remote.Addr(), x.remote.Port()
	}
	v := r.series[k]
	if v == nil {
		v = &redValue{}
		r.series[k] = v
	}
	d := x.duration().Seconds()
	i, _ := slices.BinarySearch(durationBounds, d)
	v.counts[i]++
	v.count++
	v.sum += d
}

// admit returns the route to record for a cgroup, or the overflow.
func (r *redMetrics) admit(cgroupID uint64, route string) (string, bool) {
	admitted := r.routes[cgroupID]
	if admitted == nil {
		admitted = make(map[string]struct{})
		r.routes[cgroupID] = admitted
	}
	if _, ok := admitted[route]; ok {
		return route, false
	}
	if len(admitted) < r.maxRoutes {
		admitted[route] = struct{}{}
		return route, false
	}
	if r.folded[cgroupID] == nil {
		r.folded[cgroupID] = make(map[string]struct{})
	}
	if len(r.folded[cgroupID]) < r.maxRoutes*10 { // bound the memory of the count
		r.folded[cgroupID][route] = struct{}{}
	}
	return "", true
}

// forget drops a cgroup's series and route admissions.
func (r *redMetrics) forget(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.series {
		if k.cgroupID == id {
			delete(r.series, k)
		}
	}
	delete(r.routes, id)
	delete(r.folded, id)
}

func (r *redMetrics) cgroups(yield func(uint64) bool) {
	r.mu.Lock()
	ids := make(map[uint64]struct{})
	for k := range r.series {
		ids[k.cgroupID] = struct{}{}
	}
	r.mu.Unlock()
	for id := range ids {
		if !yield(id) {
			return
		}
	}
}

// appendHistograms adds the cgroup's request duration histograms.
func (r *redMetrics) appendHistograms(id uint64, now pcommon.Timestamp, ms pmetric.MetricSlice) (folded int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []redKey
	for k := range r.series {
		if k.cgroupID == id {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b redKey) int {
		return cmp.Or(cmp.Compare(a.method, b.method), cmp.Compare(a.route, b.route), cmp.Compare(a.status, b.status),
			a.addr.Compare(b.addr), cmp.Compare(a.port, b.port), cmp.Compare(a.errType, b.errType))
	})
	var server, client pmetric.HistogramDataPointSlice
	for _, k := range keys {
		var dps *pmetric.HistogramDataPointSlice
		if k.server {
			if server == (pmetric.HistogramDataPointSlice{}) {
				server = source.NewDurationHistogram(ms, "http.server.request.duration", "Duration of HTTP server requests, from the first byte of the request read to the last byte of the response written.")
			}
			dps = &server
		} else {
			if client == (pmetric.HistogramDataPointSlice{}) {
				client = source.NewDurationHistogram(ms, "http.client.request.duration", "Duration of HTTP client requests, from the first byte of the request written to the last byte of the response read.")
			}
			dps = &client
		}
		v := r.series[k]
		dp := dps.AppendEmpty()
		dp.SetStartTimestamp(r.start)
		dp.SetTimestamp(now)
		dp.SetCount(v.count)
		dp.SetSum(v.sum)
		dp.ExplicitBounds().FromRaw(durationBounds)
		dp.BucketCounts().FromRaw(v.counts[:])
		k.putAttributes(dp.Attributes())
	}
	return len(r.folded[id])
}

func (k redKey) putAttributes(a pcommon.Map) {
	a.PutStr("http.request.method", k.method)
	if k.status != 0 {
		a.PutInt("http.response.status_code", int64(k.status))
	}
	a.PutStr("network.protocol.version", k.version)
	if k.errType != "" {
		a.PutStr("error.type", k.errType)
	}
	if k.server {
		a.PutStr("url.scheme", "http")
		if k.overflow {
			a.PutBool("otel.metric.overflow", true)
		} else {
			a.PutStr("http.route", k.route)
		}
		return
	}
	a.PutStr("server.address", k.addr.String())
	a.PutInt("server.port", int64(k.port))
}
