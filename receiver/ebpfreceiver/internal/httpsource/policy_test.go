package httpsource

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/httpflow"
)

// policySpan is a server span of trace n that answered status in d.
func policySpan(n uint64, status int, d time.Duration) *span {
	s := testSpan(httpflow.Server, 1, 1_000, 1_000+uint64(d))
	setHTTP(&s.x, func(e *httpflow.Exchange) { e.Status = status })
	s.traceID = pcommon.TraceID{}
	binary.BigEndian.PutUint64(s.traceID[8:], n)
	return s
}

func TestSpanPolicy(t *testing.T) {
	slow := 100 * time.Millisecond
	all := newSpanPolicy(SpansConfig{SlowThreshold: slow, KeepPercent: 100})
	none := newSpanPolicy(SpansConfig{SlowThreshold: slow, KeepPercent: 0})
	half := newSpanPolicy(SpansConfig{KeepPercent: 50})

	ok := policySpan(1<<63+1, 200, time.Millisecond) // upper half of the id space
	failed := policySpan(1<<63+2, 500, time.Millisecond)
	late := policySpan(1<<63+3, 200, slow)
	closed := policySpan(1<<63+4, 0, time.Millisecond)
	setHTTP(&closed.x, func(e *httpflow.Exchange) { e.Err = httpflow.ErrClosed })
	low := policySpan(7, 200, time.Millisecond)
	ready := []*span{ok, failed, late, closed, low}

	assert.Equal(t, ready, all.keep(ready, ready), "100% keeps every span")
	assert.Equal(t, []*span{failed, late, closed}, none.keep(ready, ready), "0% keeps the failed and slow ones")
	assert.Equal(t, []*span{failed, closed, low}, half.keep(ready, ready), "no threshold: slow is not notable; the share takes the low ids")

	// A notable span keeps its trace: a client span of the failed trace,
	// even when the failed span itself was exported before or waits still.
	caller := policySpan(1<<63+2, 500, time.Millisecond)
	caller.x.role = httpflow.Client
	setHTTP(&caller.x, func(e *httpflow.Exchange) { e.Status = 200 })
	assert.Equal(t, []*span{caller}, none.keep([]*span{caller}, []*span{caller, failed}))
	assert.Empty(t, none.keep([]*span{caller}, []*span{caller}))
}

// The share is that of the trace ids.
func TestSpanPolicyShare(t *testing.T) {
	p := newSpanPolicy(SpansConfig{KeepPercent: 25})
	const n = 100000
	kept := 0
	for range n {
		if p.sampled(randomTraceID()) {
			kept++
		}
	}
	assert.InDelta(t, n/4, kept, 6*137, "Binomial(100000, 0.25): sd 137")
	assert.False(t, newSpanPolicy(SpansConfig{}).sampled(pcommon.TraceID{}), "0% samples nothing, not even id 0")
}
