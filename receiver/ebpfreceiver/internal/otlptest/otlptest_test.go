package otlptest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// export holds one resource per container id, each with a sum, a gauge and
// a histogram.
func export(value int64, ids ...string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, id := range ids {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("container.id", id)
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		sum := ms.AppendEmpty()
		sum.SetName("opened")
		dps := sum.SetEmptySum().DataPoints()
		for _, dir := range []string{"in", "out"} {
			dp := dps.AppendEmpty()
			dp.SetIntValue(value)
			dp.Attributes().PutStr("dir", dir)
		}
		gauge := ms.AppendEmpty()
		gauge.SetName("up")
		gauge.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(1)
		h := ms.AppendEmpty()
		h.SetName("latency")
		h.SetEmptyHistogram().DataPoints().AppendEmpty().SetCount(uint64(value))
	}
	return md
}

func TestMetrics(t *testing.T) {
	md := export(3, "a", "b")
	assert.True(t, Has(md, "up"))
	assert.False(t, Has(md, "down"))
	assert.Equal(t, int64(12), SumInt(md, "opened", func(pcommon.Map) bool { return true }))
	assert.Equal(t, int64(6), SumInt(md, "opened", func(a pcommon.Map) bool { return Str(a, "dir") == "out" }))
	var ids []string
	for res, dp := range Points(md, "up") {
		ids = append(ids, Str(res, "container.id"))
		assert.Equal(t, int64(1), dp.IntValue())
	}
	assert.Equal(t, []string{"a", "b"}, ids, "gauges too, with their resources")
	var count uint64
	for _, dp := range Histograms(md, "latency") {
		count += dp.Count()
	}
	assert.Equal(t, uint64(6), count)
	for range Points(md, "latency") {
		t.Fatal("a histogram has no number points")
	}
	for range Points(md, "opened") {
		break // stopping early must not panic
	}

	latest, ok := Latest([]pmetric.Metrics{export(1, "a", "b"), export(2, "a"), pmetric.NewMetrics()}, "container.id", "b")
	require.True(t, ok)
	assert.Equal(t, 1, latest.ResourceMetrics().Len())
	assert.Equal(t, int64(2), SumInt(latest, "opened", func(pcommon.Map) bool { return true }), "b's resource from the first export")
	latest, _ = Latest([]pmetric.Metrics{export(1, "a"), export(2, "a")}, "container.id", "a")
	assert.Equal(t, int64(4), SumInt(latest, "opened", func(pcommon.Map) bool { return true }), "the latest export wins")
	_, ok = Latest([]pmetric.Metrics{export(1, "a")}, "container.id", "c")
	assert.False(t, ok)
}

func TestSpansAndLogs(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("container.id", "a")
	rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("GET /")
	rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("POST /")
	var names []string
	for res, s := range Spans(td, ptrace.NewTraces(), td) {
		names = append(names, Str(res, "container.id")+" "+s.Name())
	}
	assert.Equal(t, []string{"a GET /", "a POST /", "a GET /", "a POST /"}, names, "every scope of every batch")

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutInt("process.pid", 7)
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().SetEventName("process.oom_kill")
	var events []string
	for res, lr := range LogRecords(ld) {
		assert.Equal(t, int64(7), Int(res, "process.pid"))
		events = append(events, lr.EventName())
	}
	assert.Equal(t, []string{"process.oom_kill"}, events)
	assert.Zero(t, Int(res(), "missing"))
	assert.Empty(t, Str(res(), "missing"))
}

func res() pcommon.Map { return pcommon.NewMap() }

// The file exporter writes one request per line; the last may be cut.
func TestReadFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.json")
	assert.Empty(t, ReadMetricsFile(t, path), "no file yet")
	var m pmetric.JSONMarshaler
	var b []byte
	for _, v := range []int64{1, 2} {
		line, err := m.MarshalMetrics(export(v, "a"))
		require.NoError(t, err)
		b = append(append(b, line...), '\n')
	}
	b = append(b, `{"resourceMetrics":[{"reso`...)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	got := ReadMetricsFile(t, path)
	require.Len(t, got, 2)
	assert.Equal(t, int64(4), SumInt(got[1], "opened", func(pcommon.Map) bool { return true }))

	tpath := filepath.Join(t.TempDir(), "traces.json")
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("x")
	line, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tpath, line, 0o600))
	assert.Len(t, ReadTracesFile(t, tpath), 1)

	lpath := filepath.Join(t.TempDir(), "logs.json")
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().SetEventName("e")
	line, err = (&plog.JSONMarshaler{}).MarshalLogs(ld)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(lpath, append(line, "\nnot json\n"...), 0o600))
	logs := ReadLogsFile(t, lpath)
	require.Len(t, logs, 1, "a line that is not OTLP JSON is skipped")
	assert.Equal(t, 1, logs[0].LogRecordCount())
}
