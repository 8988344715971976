//go:build linux

package source

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/blockio"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/schedstat"
	"github.com/ebpfreceiver/otelcol-ebpf/bpf/tcpconn"
)

// The kernel's histograms take their bucket count from EBR_BUCKETS, through
// the generated arrays; each needs one bound between each two buckets.
func TestKernelHistogramsMatchBounds(t *testing.T) {
	for name, n := range map[string]int{
		"tcp.rtt":                 tcpconn.RTTBuckets,
		"sched.run_queue.latency": schedstat.LatencyBuckets,
		"disk latency":            blockio.LatencyBuckets,
	} {
		assert.Len(t, pow2MicrosecondBounds, n-1, name)
	}
	assert.InDelta(t, 2e-6, pow2MicrosecondBounds[0], 1e-12, "bucket 0 is [0, 2) µs")
	assert.InDelta(t, float64(uint64(1)<<(Pow2Buckets-1))/1e6, pow2MicrosecondBounds[Pow2Buckets-2], 1e-9,
		"the last bucket starts at 2^(EBR_BUCKETS-1) µs")
}
