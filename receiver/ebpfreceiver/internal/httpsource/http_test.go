//go:build linux

package httpsource

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

// request is a finished exchange of a cgroup with peer that took d.
func request(role httpflow.Role, cgroupID uint64, peer, method, target string, status int, d time.Duration) exchange {
	const start = 1_000_000_000
	x := newHTTP1Exchange(role, httpflow.Exchange{Method: method, Target: target, Version: "1.1", Status: status,
		RequestStart: start, ResponseEnd: start + uint64(d)})
	x.cgroupID, x.remote = cgroupID, netip.MustParseAddrPort(peer)
	return x
}

// cgroupsOnly is the HTTP part without RecordNode, which reads the kernel's
// counters and so needs a loaded tracer.
type cgroupsOnly struct{ metrics }

func (cgroupsOnly) RecordNode(pcommon.Timestamp, pmetric.MetricSlice) {}

func TestMetrics(t *testing.T) {
	const client = "198.18.0.1:40000"
	http10 := request(httpflow.Server, sourcetest.ServiceCgroup, client, "GET", "/", 200, 2*time.Millisecond)
	setHTTP(&http10, func(e *httpflow.Exchange) { e.Version = "1.0" })
	closed := request(httpflow.Server, sourcetest.PodCgroup, client, "PUT", "/blobs/5e0a3f6c2b1d4e7f", 0, 30*time.Second)
	setHTTP(&closed, func(e *httpflow.Exchange) { e.Err = httpflow.ErrClosed })
	exchanges := []exchange{
		request(httpflow.Server, sourcetest.PodCgroup, client, "GET", "/users/42", 200, 3*time.Millisecond),
		request(httpflow.Server, sourcetest.PodCgroup, client, "GET", "/users/7", 200, 5*time.Millisecond), // on a bound
		request(httpflow.Server, sourcetest.PodCgroup, client, "GET", "/users/9", 404, 20*time.Millisecond),
		request(httpflow.Server, sourcetest.PodCgroup, client, "POST", "/orders", 201, 120*time.Millisecond),
		request(httpflow.Server, sourcetest.PodCgroup, client, "GET", "/items/0b7a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b", 500, 1200*time.Millisecond),
		request(httpflow.Server, sourcetest.PodCgroup, client, "GET", "/health?probe=1", 200, time.Millisecond),
		closed,
		request(httpflow.Client, sourcetest.PodCgroup, "198.18.0.3:9000", "GET", "/accounts/42", 200, 8*time.Millisecond),
		request(httpflow.Client, sourcetest.PodCgroup, "198.18.0.3:9000", "GET", "/accounts/43", 503, 60*time.Millisecond),
		request(httpflow.Client, sourcetest.PodCgroup, "[2001:db8::1]:8443", "POST", "/v2/charges", 404, 15*time.Millisecond),
		http10,
		request(httpflow.Server, sourcetest.ServiceCgroup, client, "GET", "/", 200, 4*time.Millisecond),
		request(httpflow.Server, sourcetest.ServiceCgroup, client, "HEAD", "/", 304, 300*time.Microsecond),
		request(httpflow.Server, sourcetest.GoneCgroup, client, "GET", "/gone", 200, 10*time.Millisecond),
	}
	tests := []struct {
		name      string
		maxRoutes int
	}{
		{name: "all", maxRoutes: DefaultConfig().MaxRoutesPerResource},
		{name: "route_cap", maxRoutes: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sourcetest.MetricsEnv()
			p := &pipeline{red: newREDMetrics(tt.maxRoutes)}
			for i := range exchanges {
				p.red.add(&exchanges[i])
			}
			part := cgroupsOnly{(&Source{p: p}).NewMetrics(env).(metrics)}
			got := sourcetest.Collect(t, env, part)
			sourcetest.CompareGolden(t, filepath.Join("testdata", tt.name+".yaml"), got)

			// A removed cgroup's series are exported once, then forgotten.
			assert.NotContains(t, slices.Collect(part.Cgroups), uint64(sourcetest.GoneCgroup))
			assert.Contains(t, slices.Collect(part.Cgroups), uint64(sourcetest.PodCgroup))
			assert.NotContains(t, p.red.routes, uint64(sourcetest.GoneCgroup))
		})
	}
}
