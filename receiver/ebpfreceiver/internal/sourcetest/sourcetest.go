// Package sourcetest is what the golden tests of every source share: fake
// cgroup paths, a metrics environment, one collection and the golden-file
// comparison.
package sourcetest

import (
	"iter"
	"os"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/source"
)

// The cgroups of the golden files: a pod's container, a systemd service,
// and a removed cgroup whose path is no longer known.
const (
	PodCgroup     = 101
	ServiceCgroup = 102
	GoneCgroup    = 103
	PodPath       = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7a4c1e_2f3d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-5e0a3f6c2b1d4e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f.scope"
	ServicePath   = "/system.slice/nginx.service"
)

// fakePaths stands in for the cgroup resolver: the builders only read it.
type fakePaths map[uint64]string

func (fakePaths) Refresh(iter.Seq[uint64]) error { return nil }

func (fakePaths) Resolve(iter.Seq[uint64]) error { return nil }

func (fakePaths) IsRemoved(id uint64) bool { return id == GoneCgroup }

func (p fakePaths) Path(id uint64) (string, bool) {
	path, ok := p[id]
	return path, ok
}

// Paths knows PodCgroup and ServiceCgroup, and reports GoneCgroup removed.
var Paths source.CgroupPaths = fakePaths{PodCgroup: PodPath, ServiceCgroup: ServicePath}

// Resources is the golden files' node and cgroups.
var Resources = source.Resources{Attributes: metadata.DefaultResourceAttributesConfig(), Paths: Paths,
	HostName: "node-1", NodeName: "k8s-node-1"}

// MetricsEnv is what the scraper gives a metrics part, with the per-map
// metrics, off by default, turned on so that the golden files cover them.
func MetricsEnv() source.MetricsEnv {
	cfg := metadata.DefaultMetricsBuilderConfig()
	cfg.Metrics.EbpfMapEntries.Enabled = true
	cfg.Metrics.EbpfMapUtilization.Enabled = true
	start := pcommon.NewTimestampFromTime(time.Now())
	mb := metadata.NewMetricsBuilder(cfg, receivertest.NewNopSettings(metadata.Type), metadata.WithStartTime(start))
	return source.MetricsEnv{MB: mb, Start: start, Removed: Paths.IsRemoved, Logger: zap.NewNop()}
}

// Collect does what the scraper does once the parts hold their snapshots.
func Collect(t *testing.T, env source.MetricsEnv, parts ...source.MetricsPart) pmetric.Metrics {
	t.Helper()
	c := source.Collector{MB: env.MB, Resources: Resources, Parts: parts}
	out, err := c.Collect(pcommon.NewTimestampFromTime(time.Now()), func(pcommon.Timestamp) {})
	require.NoError(t, err)
	return out
}

// TakeStale returns what a collection left to drop from the kernel, and
// forgets it as DropStale does.
func TakeStale[K any](s *source.StaleKeys[K]) (keys []K) {
	_ = s.Drop(func(k []K) error { keys = k; return nil })
	return keys
}

// CompareGolden compares got with the golden file at path; WRITE_GOLDEN=1
// rewrites the file first.
func CompareGolden(t *testing.T, path string, got pmetric.Metrics) {
	t.Helper()
	if os.Getenv("WRITE_GOLDEN") != "" {
		golden.WriteMetrics(t, path, got)
	}
	want, err := golden.ReadMetrics(path)
	require.NoError(t, err)
	require.NoError(t, pmetrictest.CompareMetrics(want, got,
		pmetrictest.IgnoreTimestamp(),
		pmetrictest.IgnoreStartTimestamp(),
		pmetrictest.IgnoreResourceMetricsOrder(),
		pmetrictest.IgnoreMetricsOrder(),
		pmetrictest.IgnoreMetricDataPointsOrder(),
	))
}
