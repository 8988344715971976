package source

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// Env is what every source loads with.
type Env struct {
	Resources Resources
	Logger    *zap.Logger
}

// Source is one loaded capability.
type Source interface {
	// Kernel is its loaded eBPF objects.
	Kernel() KernelObjects
	// Close detaches its programs and stops its readers.
	Close() error
	// NewMetrics returns its part of the collections of one metrics
	// pipeline.
	NewMetrics(env MetricsEnv) MetricsPart
}

// KernelObjects is what every bpf package's Tracer holds.
type KernelObjects interface {
	Programs() []*ebpf.Program
	Maps() []*ebpf.Map
}

// SpansSource is a source that exports spans.
type SpansSource interface {
	Source
	// SetTracesConsumer starts (next != nil) or stops building spans.
	SetTracesConsumer(next consumer.Traces)
}

// LogsSource is a source that exports log records.
type LogsSource interface {
	Source
	// SetLogsConsumer starts (next != nil) or stops building log records.
	SetLogsConsumer(next consumer.Logs, cfg metadata.LogsBuilderConfig, set receiver.Settings)
}

// MetricsEnv is what a source's metrics part records with.
type MetricsEnv struct {
	MB    *metadata.MetricsBuilder
	Start pcommon.Timestamp
	// Removed reports a removed cgroup: its data is exported one last
	// time, then dropped.
	Removed func(id uint64) bool
	Logger  *zap.Logger
}

// MetricsPart is one source's part of a collection. It records data points
// into the shared MetricsBuilder and appends the histograms that mdatagen
// cannot build.
type MetricsPart interface {
	// Snapshot reads the kernel's aggregates for this collection.
	Snapshot() error
	// Cgroups yields the cgroups the part has data for.
	Cgroups(yield func(uint64) bool)
	Record(id uint64, now pcommon.Timestamp, histograms pmetric.MetricSlice)
	RecordNode(now pcommon.Timestamp, histograms pmetric.MetricSlice)
	// DropStale deletes from the kernel what removed cgroups left behind,
	// once it is exported.
	DropStale() error
}

// Capability is the status of one part of a capability; Err says why it is
// off.
type Capability struct {
	Name  string
	Hooks []string
	Err   error
}

// ErrDisabledInConfig is the reason of a capability turned off.
var ErrDisabledInConfig = errors.New("disabled in the configuration")

// PartStatus returns the status of a capability's parts: all off when
// loadErr is set, else each as disabled says. what names the capability in
// the error returned when it is required and a part cannot run.
func PartStatus(what string, hooks map[string][]string, parts []string, required bool, loadErr error, disabled map[string]error) ([]Capability, error) {
	if errors.Is(loadErr, os.ErrPermission) {
		loadErr = fmt.Errorf("%w: loading eBPF programs needs CAP_BPF and CAP_PERFMON", loadErr)
	}
	caps := make([]Capability, 0, len(parts))
	for _, part := range parts {
		err := loadErr
		if err == nil {
			err = disabled[part]
		}
		if err != nil && required {
			return nil, fmt.Errorf("%s is required but %s cannot run on %s: %w",
				what, part, strings.Join(hooks[part], ", "), err)
		}
		caps = append(caps, Capability{Name: part, Hooks: hooks[part], Err: err})
	}
	return caps, nil
}

// DisabledParts is the status of a capability turned off in the
// configuration.
func DisabledParts(hooks map[string][]string, parts []string) []Capability {
	caps, _ := PartStatus("", hooks, parts, false, ErrDisabledInConfig, nil)
	return caps
}

// LoadOnePart loads a capability of one part, named part, that runs on
// hooks. The tracer is nil when the part is off.
func LoadOnePart[T any](part string, hooks []string, enabled, required bool, load func() (*T, error)) (*T, []Capability, error) {
	all := map[string][]string{part: hooks}
	if !enabled {
		return nil, DisabledParts(all, []string{part}), nil
	}
	tr, err := load()
	caps, capErr := PartStatus(part, all, []string{part}, required, err, nil)
	return tr, caps, capErr
}

// StaleKeys collects the kernel keys of removed cgroups as they are
// exported for the last time, to delete them after the collection.
type StaleKeys[K any] struct{ keys []K }

func (s *StaleKeys[K]) Add(keys ...K) { s.keys = append(s.keys, keys...) }

// Drop deletes the collected keys with del and forgets them.
func (s *StaleKeys[K]) Drop(del func([]K) error) error {
	keys := s.keys
	s.keys = nil
	if len(keys) == 0 {
		return nil
	}
	return del(keys)
}

// LoadParts loads a capability of several parts whose tracer reports the
// parts it could not attach. The tracer is nil when nothing of it runs.
func LoadParts[T interface {
	*E
	Disabled() map[string]error
	Close() error
}, E any](what string, hooks map[string][]string, parts []string, enabled, required bool, load func() (T, error)) (T, []Capability, error) {
	if !enabled {
		return nil, DisabledParts(hooks, parts), nil
	}
	tr, err := load()
	var disabled map[string]error
	if err == nil {
		disabled = tr.Disabled()
	}
	caps, capErr := PartStatus(what, hooks, parts, required, err, disabled)
	switch {
	case err != nil:
		return nil, caps, capErr
	case capErr != nil:
		return nil, nil, errors.Join(capErr, tr.Close())
	}
	return tr, caps, nil
}

// ReadEach hands every record read to handle until the reader is closed. A
// record that cannot be decoded is logged, naming what it is, and skipped.
func ReadEach[E any](read func(*E) error, logger *zap.Logger, what string, handle func(*E)) {
	var e E
	for {
		err := read(&e)
		switch {
		case errors.Is(err, os.ErrClosed):
			return
		case err != nil:
			logger.Warn("bad "+what, zap.Error(err))
		default:
			handle(&e)
		}
	}
}

// ByCgroup groups the keys of a snapshot map by the cgroup each names.
func ByCgroup[K comparable, V any](m map[K]V, cgroupOf func(K) uint64) map[uint64][]K {
	by := make(map[uint64][]K)
	for k := range m {
		id := cgroupOf(k)
		by[id] = append(by[id], k)
	}
	return by
}
