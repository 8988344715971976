package source

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/metadata"
)

// RecordMapFill records a kernel map's entries and its fill, entries over
// capacity. Both are off by default: they are for debugging, and the
// ebpf.*.lost counters already say when a full map lost an update.
func RecordMapFill(mb *metadata.MetricsBuilder, now pcommon.Timestamp, entries, capacity int64, m metadata.AttributeEbpfMap) {
	mb.RecordEbpfMapEntriesDataPoint(now, entries, m)
	if capacity > 0 {
		mb.RecordEbpfMapUtilizationDataPoint(now, float64(entries)/float64(capacity), m)
	}
}
