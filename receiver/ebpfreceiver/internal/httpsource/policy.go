package httpsource

import (
	"encoding/binary"
	"math"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// spanPolicy chooses the spans exported. Every failed or slow span is kept,
// with the other spans of its trace on this node; of the other traces a
// share is kept, chosen by trace id so that every node that sees a trace
// from its traceparent header decides alike. RED metrics count every
// request whatever the policy.
type spanPolicy struct {
	slow time.Duration // 0: no span is slow
	// below keeps the traces whose id's last 8 bytes are less than it;
	// all keeps every trace.
	below uint64
	all   bool
}

func newSpanPolicy(cfg SpansConfig) spanPolicy {
	p := spanPolicy{slow: cfg.SlowThreshold, all: cfg.KeepPercent >= 100}
	if !p.all {
		p.below = uint64(cfg.KeepPercent / 100 * math.MaxUint64)
	}
	return p
}

// notable reports a span kept whatever the share: failed, or slow.
func (p spanPolicy) notable(s *span) bool {
	return s.x.errType != "" || (p.slow > 0 && s.x.duration() >= p.slow)
}

// sampled reports whether the share keeps trace id.
func (p spanPolicy) sampled(id pcommon.TraceID) bool {
	return p.all || binary.BigEndian.Uint64(id[8:]) < p.below
}

// keep returns the spans of ready that the policy exports. linked holds
// every span linked with them, ready ones included: a notable span keeps
// its whole trace.
func (p spanPolicy) keep(ready, linked []*span) []*span {
	if p.all {
		return ready
	}
	notable := make(map[pcommon.TraceID]bool)
	for _, s := range linked {
		if p.notable(s) {
			notable[s.traceID] = true
		}
	}
	kept := ready[:0:0]
	for _, s := range ready {
		if notable[s.traceID] || p.sampled(s.traceID) {
			kept = append(kept, s)
		}
	}
	return kept
}
