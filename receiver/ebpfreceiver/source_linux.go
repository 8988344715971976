package ebpfreceiver

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// sources is the registry of capabilities, in the order they load and
// report. A capability is one file with its loader, its config block in
// Config, and a line here.
var sources = []loadSource{loadTCP, loadHTTP, loadSched, loadProcess, loadDisk}

// loadSource loads one capability from its config block. The source is nil
// when nothing of it runs. The capabilities are the status of each of its
// parts, loaded or not. It fails only when the capability is required and a
// part cannot run.
type loadSource func(cfg *Config, env sourceEnv) (source, []capability, error)

// sourceEnv is what every source loads with.
type sourceEnv struct {
	res    resources
	logger *zap.Logger
}

// source is one loaded capability.
type source interface {
	// kernel is its loaded eBPF objects.
	kernel() kernelObjects
	// close detaches its programs and stops its readers.
	close() error
	// newMetrics returns its part of the collections of one metrics
	// pipeline.
	newMetrics(env metricsEnv) metricsPart
}

// kernelObjects is what every bpf package's Tracer holds.
type kernelObjects interface {
	Programs() []*ebpf.Program
	Maps() []*ebpf.Map
}

// spansSource is a source that exports spans.
type spansSource interface {
	source
	spanQueue() *spanQueue
}

// logsSource is a source that exports log records.
type logsSource interface {
	source
	logRecords() *processLogs
}

// metricsEnv is what a source's metrics part records with.
type metricsEnv struct {
	mb    *metadata.MetricsBuilder
	start pcommon.Timestamp
	// removed reports a removed cgroup: its data is exported one last
	// time, then dropped.
	removed func(id uint64) bool
	logger  *zap.Logger
}

// metricsPart is one source's part of a collection. It records data points
// into the shared MetricsBuilder and appends the histograms that mdatagen
// cannot build.
type metricsPart interface {
	// snapshot reads the kernel's aggregates for this collection.
	snapshot() error
	// cgroups yields the cgroups the part has data for.
	cgroups(yield func(uint64) bool)
	record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice)
	recordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice)
	// dropStale deletes from the kernel what removed cgroups left behind,
	// once it is exported.
	dropStale() error
}

// capability is one thing the receiver measures; err says why it is off.
type capability struct {
	name  string
	hooks []string
	err   error
}

var errDisabledInConfig = errors.New("disabled in the configuration")

// partStatus returns the status of a capability's parts: all off when
// loadErr is set, else each as disabled says. what names the capability in
// the error returned when it is required and a part cannot run.
func partStatus(what string, hooks map[string][]string, parts []string, required bool, loadErr error, disabled map[string]error) ([]capability, error) {
	if errors.Is(loadErr, os.ErrPermission) {
		loadErr = fmt.Errorf("%w: loading eBPF programs needs CAP_BPF and CAP_PERFMON", loadErr)
	}
	caps := make([]capability, 0, len(parts))
	for _, part := range parts {
		err := loadErr
		if err == nil {
			err = disabled[part]
		}
		if err != nil && required {
			return nil, fmt.Errorf("%s is required but %s cannot run on %s: %w",
				what, part, strings.Join(hooks[part], ", "), err)
		}
		caps = append(caps, capability{name: part, hooks: hooks[part], err: err})
	}
	return caps, nil
}

// disabledParts is the status of a capability turned off in the
// configuration.
func disabledParts(hooks map[string][]string, parts []string) []capability {
	caps, _ := partStatus("", hooks, parts, false, errDisabledInConfig, nil)
	return caps
}

// loadOnePart loads a capability of one part, named part, that runs on
// hooks. The tracer is nil when the part is off.
func loadOnePart[T any](part string, hooks []string, enabled, required bool, load func() (*T, error)) (*T, []capability, error) {
	all := map[string][]string{part: hooks}
	if !enabled {
		return nil, disabledParts(all, []string{part}), nil
	}
	tr, err := load()
	caps, capErr := partStatus(part, all, []string{part}, required, err, nil)
	return tr, caps, capErr
}

// staleKeys collects the kernel keys of removed cgroups as they are
// exported for the last time, to delete them after the collection.
type staleKeys[K any] struct{ keys []K }

func (s *staleKeys[K]) add(keys ...K) { s.keys = append(s.keys, keys...) }

// drop deletes the collected keys with del and forgets them.
func (s *staleKeys[K]) drop(del func([]K) error) error {
	keys := s.keys
	s.keys = nil
	if len(keys) == 0 {
		return nil
	}
	return del(keys)
}
