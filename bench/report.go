package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// sample is one workload under one configuration in one round.
type sample struct {
	Round         int
	Config        string
	Workload      string
	Requests      int
	Errors        int
	RPS           float64
	P50Us, P99Us  float64
	CPUPerReqUs   float64 // busy CPU of the whole machine per request
	AddedCPUUs    float64 // CPUPerReqUs minus the same round's "nothing"
	AgentCPUPct   float64 // the agent's utime+stime, % of one core
	SinkCPUPct    float64 // the OTLP sink's, apart from the agent's and the added CPU
	PeakRSSMB     float64 // the agent's VmHWM
	BPFNsPerEvent float64 // run_time_ns / run_cnt of the agent's programs
	BPFNsPerReq   float64
	HTTPLost      uint64 // receiver: ebpf.http.lost; floor2: ring buffer full
	TCPLost       uint64
	FloorRecords  uint64
	Spans         int // server spans exported
	FailedSpans   int // the failed ones
	CapturePct    float64
	DeliveryP50Us float64
	DeliveryP99Us float64
	SpanLagP50Us  float64 // a server span's end to the sink
	SpanLagP99Us  float64
	// The same for the failed server spans, which express sends.
	FailedLagP50Us, FailedLagP99Us float64
}

// stat is a median with its min and max over rounds.
type stat struct{ Med, Min, Max float64 }

func statOf(v []float64) stat {
	if len(v) == 0 {
		return stat{}
	}
	s := slices.Sorted(slices.Values(v))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{m, s[0], s[len(s)-1]}
}

// row is one workload under one configuration, over all rounds.
type row struct {
	Workload, Config                                  string
	RPS, P50Us, P99Us, AddedCPUUs, AgentCPUPct        stat
	SinkCPUPct                                        stat
	PeakRSSMB, BPFNsPerEvent, BPFNsPerReq, CapturePct stat
	DeliveryP50Us, DeliveryP99Us                      stat
	SpanLagP50Us, SpanLagP99Us                        stat
	FailedLagP50Us, FailedLagP99Us                    stat
	Lost                                              uint64 // most in any round
}

type idleResult struct {
	Connections      int
	RSSMB, PeakRSSMB float64
}

// idleCPUResult is the full receiver's CPU on a node with no traffic.
type idleCPUResult struct {
	Seconds     float64
	AgentCPUPct float64
}

// results is what results.json holds.
type results struct {
	Machine           string
	Rounds            int
	Seconds           float64 // per workload
	Started, Finished time.Time
	Samples           []sample
	Rows              []row
	Ratios            []ratio
	Idle              *idleResult    `json:",omitempty"`
	IdleCPU           *idleCPUResult `json:",omitempty"`
}

type ratio struct {
	Workload, Name string
	Value, Target  float64
	Higher         bool // whether the target is a floor (>=) or a ceiling (<=)
}

func (r *results) summarize() {
	base := map[[2]any]float64{}
	for _, s := range r.Samples {
		if s.Config == "nothing" {
			base[[2]any{s.Round, s.Workload}] = s.CPUPerReqUs
		}
	}
	for i := range r.Samples {
		s := &r.Samples[i]
		if b, ok := base[[2]any{s.Round, s.Workload}]; ok {
			s.AddedCPUUs = s.CPUPerReqUs - b
		}
	}
	get := map[string]row{}
	for _, w := range workloads {
		for _, c := range configs {
			var ss []sample
			for _, s := range r.Samples {
				if s.Workload == w.name && s.Config == c {
					ss = append(ss, s)
				}
			}
			if len(ss) == 0 {
				continue
			}
			f := func(fn func(sample) float64) stat {
				var v []float64
				for _, s := range ss {
					v = append(v, fn(s))
				}
				return statOf(v)
			}
			rw := row{Workload: w.name, Config: c,
				RPS:            f(func(s sample) float64 { return s.RPS }),
				P50Us:          f(func(s sample) float64 { return s.P50Us }),
				P99Us:          f(func(s sample) float64 { return s.P99Us }),
				AddedCPUUs:     f(func(s sample) float64 { return s.AddedCPUUs }),
				AgentCPUPct:    f(func(s sample) float64 { return s.AgentCPUPct }),
				SinkCPUPct:     f(func(s sample) float64 { return s.SinkCPUPct }),
				PeakRSSMB:      f(func(s sample) float64 { return s.PeakRSSMB }),
				BPFNsPerEvent:  f(func(s sample) float64 { return s.BPFNsPerEvent }),
				BPFNsPerReq:    f(func(s sample) float64 { return s.BPFNsPerReq }),
				CapturePct:     f(func(s sample) float64 { return s.CapturePct }),
				DeliveryP50Us:  f(func(s sample) float64 { return s.DeliveryP50Us }),
				DeliveryP99Us:  f(func(s sample) float64 { return s.DeliveryP99Us }),
				SpanLagP50Us:   f(func(s sample) float64 { return s.SpanLagP50Us }),
				SpanLagP99Us:   f(func(s sample) float64 { return s.SpanLagP99Us }),
				FailedLagP50Us: f(func(s sample) float64 { return s.FailedLagP50Us }),
				FailedLagP99Us: f(func(s sample) float64 { return s.FailedLagP99Us }),
			}
			for _, s := range ss {
				rw.Lost = max(rw.Lost, s.HTTPLost+s.TCPLost)
			}
			r.Rows = append(r.Rows, rw)
			get[w.name+"/"+c] = rw
		}
	}
	for _, w := range workloads {
		g := func(c string) (row, bool) { x, ok := get[w.name+"/"+c]; return x, ok }
		f1, ok1 := g("floor1")
		f2, ok2 := g("floor2")
		m, okM := g("metrics")
		f, okF := g("full")
		sm, okS := g("sampled")
		// A paced workload's throughput is its rate.
		if ok2 && okF && w.rate == 0 {
			r.Ratios = append(r.Ratios, ratio{w.name, "throughput full / floor2", f.RPS.Med / f2.RPS.Med, 0.95, true})
		}
		if ok1 && okM && w.rate == 0 {
			r.Ratios = append(r.Ratios, ratio{w.name, "throughput metrics / floor1", m.RPS.Med / f1.RPS.Med, 0.97, true})
		}
		if ok1 && okM {
			r.Ratios = append(r.Ratios, ratio{w.name, "added CPU/req metrics / floor1", div(m.AddedCPUUs.Med, f1.AddedCPUUs.Med), 1.5, false})
		}
		if ok2 && okF {
			r.Ratios = append(r.Ratios, ratio{w.name, "added CPU/req full / floor2", div(f.AddedCPUUs.Med, f2.AddedCPUUs.Med), 1.5, false})
		}
		if okF {
			r.Ratios = append(r.Ratios, ratio{w.name, "capture % (full)", f.CapturePct.Med, 99.9, true},
				ratio{w.name, "agent CPU µs/req (full)", f.AgentCPUPct.Med * 1e4 / f.RPS.Med, 5, false})
			if w.rate > 0 {
				r.Ratios = append(r.Ratios, ratio{w.name, "failed span end→sink p99 µs (full)", f.FailedLagP99Us.Med, 2000, false})
			}
		}
		if okS {
			r.Ratios = append(r.Ratios, ratio{w.name, "agent CPU µs/req (sampled)", sm.AgentCPUPct.Med * 1e4 / sm.RPS.Med, 1.5, false})
		}
	}
	// One agent runs every workload of a round: its peak is the round's.
	if f, ok := get[workloads[0].name+"/full"]; ok {
		r.Ratios = append(r.Ratios, ratio{"all", "peak RSS MB (full)", f.PeakRSSMB.Med, 100, false})
	}
}

// div is a/b for added CPU, which noise can push to or below zero; the
// ratio then means nothing and is NaN.
func div(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return math.NaN()
	}
	return a / b
}

func (s stat) rng(format string) string {
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", s.Med, s.Min, s.Max)
}

// table is the markdown table make bench-system prints and docs/performance.md holds.
func (r *results) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s; %d rounds × %.0f s per workload; medians [min–max]\n\n", r.Machine, r.Rounds, r.Seconds)
	b.WriteString("| workload | config | req/s | p50 µs | p99 µs | added CPU µs/req | agent % core | sink % core | peak RSS MB | BPF ns/event | BPF ns/req | lost | capture % | deliv p50/p99 µs | span→sink p50/p99 ms | failed span→sink p50/p99 ms |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	dash := func(ok bool, s string) string {
		if !ok {
			return "–"
		}
		return s
	}
	for _, w := range r.Rows {
		agent := w.Config != "nothing"
		recv := w.Config == "metrics" || tracing(w.Config)
		sunk := tracing(w.Config) && w.Config != "full-file" // the sink measures lags
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			w.Workload, w.Config, w.RPS.rng("%.0f"), w.P50Us.Med, w.P99Us.Med,
			dash(agent, w.AddedCPUUs.rng("%.1f")),
			dash(agent, fmt.Sprintf("%.1f", w.AgentCPUPct.Med)),
			dash(recv && w.Config != "full-file", fmt.Sprintf("%.1f", w.SinkCPUPct.Med)),
			dash(agent, fmt.Sprintf("%.0f", w.PeakRSSMB.Med)),
			dash(agent, fmt.Sprintf("%.0f", w.BPFNsPerEvent.Med)),
			dash(agent, fmt.Sprintf("%.0f", w.BPFNsPerReq.Med)),
			dash(recv || w.Config == "floor2", fmt.Sprint(w.Lost)),
			dash(spans(w.Config), fmt.Sprintf("%.2f", w.CapturePct.Med)),
			dash(tracing(w.Config), fmt.Sprintf("%.0f / %.0f", w.DeliveryP50Us.Med, w.DeliveryP99Us.Med)),
			dash(sunk, fmt.Sprintf("%.0f / %.0f", w.SpanLagP50Us.Med/1e3, w.SpanLagP99Us.Med/1e3)),
			dash(sunk && w.FailedLagP99Us.Med > 0, fmt.Sprintf("%.1f / %.1f", w.FailedLagP50Us.Med/1e3, w.FailedLagP99Us.Med/1e3)))
	}
	b.WriteString("\n| workload | figure | value | target | met |\n|---|---|---|---|---|\n")
	for _, x := range r.Ratios {
		op, met := "≤", x.Value <= x.Target
		if x.Higher {
			op, met = "≥", x.Value >= x.Target
		}
		verdict, value := map[bool]string{true: "yes", false: "no"}[met], fmt.Sprintf("%.3g", x.Value)
		if math.IsNaN(x.Value) || math.IsInf(x.Value, 0) {
			verdict, value = "n/a", "n/a (a median ≤ 0: noise)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s %g | %s |\n", x.Workload, x.Name, value, op, x.Target, verdict)
	}
	if r.IdleCPU != nil {
		fmt.Fprintf(&b, "| idle | full receiver CPU over %.0f s with no traffic (collection every 10 s), %% of a core | %.2f | ≤ 1 | %s |\n",
			r.IdleCPU.Seconds, r.IdleCPU.AgentCPUPct, map[bool]string{true: "yes", false: "no"}[r.IdleCPU.AgentCPUPct <= 1])
	}
	if r.Idle != nil {
		fmt.Fprintf(&b, "| idle | full receiver RSS with %d idle keep-alive connections, MB | %.0f (peak %.0f) | ≤ 100 | %s |\n",
			r.Idle.Connections, r.Idle.RSSMB, r.Idle.PeakRSSMB, map[bool]string{true: "yes", false: "no"}[r.Idle.PeakRSSMB <= 100])
	}
	return b.String()
}

var palette = []color.RGBA{{120, 120, 120, 255}, {90, 150, 220, 255}, {40, 90, 170, 255}, {240, 160, 60, 255}, {200, 60, 50, 255}, {240, 130, 120, 255}, {130, 40, 120, 255}}

// chart draws one cell per workload (columns) and figure (rows:
// throughput, added CPU per request), each on its own scale, with one bar
// per configuration at its median and min–max error bars.
func (r *results) chart(path string) error {
	const W, H, cellH = 1080, 720, 330
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	figures := []struct {
		title string
		val   func(row) stat
	}{
		{"req/s", func(rw row) stat { return rw.RPS }},
		{"added CPU us/req", func(rw row) stat { return rw.AddedCPUUs }},
	}
	cellW := W / len(workloads)
	for fi, fg := range figures {
		for wi, w := range workloads {
			var rows []row
			for _, x := range r.Rows {
				if x.Workload == w.name {
					rows = append(rows, x)
				}
			}
			cell(img, wi*cellW, 10+fi*cellH, cellW, cellH, w.name+": "+fg.title, rows, fg.val)
		}
	}
	for ci, c := range configs {
		x := 70 + ci*145
		draw.Draw(img, image.Rect(x, H-30, x+14, H-16), image.NewUniform(palette[ci]), image.Point{}, draw.Src)
		text(img, x+20, H-18, c)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cell(img *image.RGBA, left, top, w, h int, title string, rows []row, val func(row) stat) {
	text(img, left+60, top+14, title)
	x0, y0, x1, y1 := left+60, top+30, left+w-15, top+h-30
	lo, hi := 0.0, 0.0
	for _, rw := range rows {
		lo, hi = min(lo, val(rw).Min), max(hi, val(rw).Max)
	}
	if hi == lo {
		hi = lo + 1
	}
	y := func(v float64) int { return y1 - int((v-lo)/(hi-lo)*float64(y1-y0)) }
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		hline(img, x0, x1, y(v), color.RGBA{225, 225, 225, 255})
		text(img, left+2, y(v)+4, fmt.Sprintf("%.4g", v))
	}
	hline(img, x0, x1, y(0), color.Black)
	bw := (x1 - x0 - 20) / len(configs)
	for ci, c := range configs {
		for _, rw := range rows {
			if rw.Config != c {
				continue
			}
			s := val(rw)
			bx := x0 + 10 + ci*bw
			ya, yb := y(s.Med), y(0)
			draw.Draw(img, image.Rect(bx+3, min(ya, yb), bx+bw-3, max(ya, yb)+1), image.NewUniform(palette[ci]), image.Point{}, draw.Src)
			mid := bx + bw/2
			vline(img, mid, y(s.Max), y(s.Min), color.Black)
			hline(img, mid-4, mid+4, y(s.Max), color.Black)
			hline(img, mid-4, mid+4, y(s.Min), color.Black)
		}
	}
}

func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.Black, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := min(y0, y1); y <= max(y0, y1); y++ {
		img.Set(x, y, c)
	}
}
