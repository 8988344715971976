// Package otlptest reads what tests find in OTLP data: data points, spans
// and log records with their resources, attribute values, and the file
// exporter's JSON lines.
package otlptest

import (
	"bufio"
	"bytes"
	"errors"
	"iter"
	"os"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// metrics yields each metric of md named name with its resource's
// attributes; every metric when name is "".
func metrics(md pmetric.Metrics, name string) iter.Seq2[pcommon.Map, pmetric.Metric] {
	return func(yield func(pcommon.Map, pmetric.Metric) bool) {
		rms := md.ResourceMetrics()
		for i := range rms.Len() {
			res := rms.At(i).Resource().Attributes()
			sms := rms.At(i).ScopeMetrics()
			for j := range sms.Len() {
				ms := sms.At(j).Metrics()
				for k := range ms.Len() {
					if m := ms.At(k); (name == "" || m.Name() == name) && !yield(res, m) {
						return
					}
				}
			}
		}
	}
}

// Has reports whether md holds a metric named name.
func Has(md pmetric.Metrics, name string) bool {
	for range metrics(md, name) {
		return true
	}
	return false
}

// Points yields the data points of the sum or gauge name in md with their
// resource's attributes.
func Points(md pmetric.Metrics, name string) iter.Seq2[pcommon.Map, pmetric.NumberDataPoint] {
	return func(yield func(pcommon.Map, pmetric.NumberDataPoint) bool) {
		for res, m := range metrics(md, name) {
			var dps pmetric.NumberDataPointSlice
			switch m.Type() {
			case pmetric.MetricTypeSum:
				dps = m.Sum().DataPoints()
			case pmetric.MetricTypeGauge:
				dps = m.Gauge().DataPoints()
			default:
				continue
			}
			for i := range dps.Len() {
				if !yield(res, dps.At(i)) {
					return
				}
			}
		}
	}
}

// Histograms yields the data points of the histogram name in md with their
// resource's attributes.
func Histograms(md pmetric.Metrics, name string) iter.Seq2[pcommon.Map, pmetric.HistogramDataPoint] {
	return func(yield func(pcommon.Map, pmetric.HistogramDataPoint) bool) {
		for res, m := range metrics(md, name) {
			if m.Type() != pmetric.MetricTypeHistogram {
				continue
			}
			dps := m.Histogram().DataPoints()
			for i := range dps.Len() {
				if !yield(res, dps.At(i)) {
					return
				}
			}
		}
	}
}

// SumInt adds the int values of the points of name whose attributes
// match.
func SumInt(md pmetric.Metrics, name string, match func(attrs pcommon.Map) bool) int64 {
	var n int64
	for _, dp := range Points(md, name) {
		if match(dp.Attributes()) {
			n += dp.IntValue()
		}
	}
	return n
}

// Latest returns, from the latest of exports that has one, the resource
// whose attribute k is v, alone in a Metrics.
func Latest(exports []pmetric.Metrics, k, v string) (pmetric.Metrics, bool) {
	for i := len(exports) - 1; i >= 0; i-- {
		rms := exports[i].ResourceMetrics()
		for j := range rms.Len() {
			if Str(rms.At(j).Resource().Attributes(), k) == v {
				md := pmetric.NewMetrics()
				rms.At(j).CopyTo(md.ResourceMetrics().AppendEmpty())
				return md, true
			}
		}
	}
	return pmetric.Metrics{}, false
}

// Spans yields every span of tds with its resource's attributes.
func Spans(tds ...ptrace.Traces) iter.Seq2[pcommon.Map, ptrace.Span] {
	return func(yield func(pcommon.Map, ptrace.Span) bool) {
		for _, td := range tds {
			rss := td.ResourceSpans()
			for i := range rss.Len() {
				res := rss.At(i).Resource().Attributes()
				sss := rss.At(i).ScopeSpans()
				for j := range sss.Len() {
					ss := sss.At(j).Spans()
					for k := range ss.Len() {
						if !yield(res, ss.At(k)) {
							return
						}
					}
				}
			}
		}
	}
}

// LogRecords yields every log record of lds with its resource's
// attributes.
func LogRecords(lds ...plog.Logs) iter.Seq2[pcommon.Map, plog.LogRecord] {
	return func(yield func(pcommon.Map, plog.LogRecord) bool) {
		for _, ld := range lds {
			rls := ld.ResourceLogs()
			for i := range rls.Len() {
				res := rls.At(i).Resource().Attributes()
				sls := rls.At(i).ScopeLogs()
				for j := range sls.Len() {
					lrs := sls.At(j).LogRecords()
					for k := range lrs.Len() {
						if !yield(res, lrs.At(k)) {
							return
						}
					}
				}
			}
		}
	}
}

// Str returns the string value of k in m, or "".
func Str(m pcommon.Map, k string) string {
	v, _ := m.Get(k)
	return v.Str()
}

// Int returns the int value of k in m, or 0.
func Int(m pcommon.Map, k string) int64 {
	v, _ := m.Get(k)
	return v.Int()
}

// ReadMetricsFile decodes the file exporter's metrics output.
func ReadMetricsFile(t testing.TB, path string) []pmetric.Metrics {
	return readLines(t, path, (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics)
}

// ReadTracesFile decodes the file exporter's traces output.
func ReadTracesFile(t testing.TB, path string) []ptrace.Traces {
	return readLines(t, path, (&ptrace.JSONUnmarshaler{}).UnmarshalTraces)
}

// ReadLogsFile decodes the file exporter's logs output.
func ReadLogsFile(t testing.TB, path string) []plog.Logs {
	return readLines(t, path, (&plog.JSONUnmarshaler{}).UnmarshalLogs)
}

// readLines decodes one OTLP JSON request per line of path, which may not
// exist yet. A last line still being written is left for the next read.
func readLines[T any](t testing.TB, path string, decode func([]byte) (T, error)) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(nil, 64<<20)
	for s.Scan() {
		if v, err := decode(s.Bytes()); err == nil {
			out = append(out, v)
		}
	}
	return out
}
