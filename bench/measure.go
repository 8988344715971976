package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
)

// clkTck is USER_HZ, 100 on every Linux this runs on.
const clkTck = 100

// busyTicks is the machine's busy CPU time from /proc/stat, in ticks:
// every process's user and system time plus interrupts.
func busyTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var n uint64
	for i, s := range f[1:] {
		if i == 3 || i == 4 || i == 7 { // idle, iowait, steal
			continue
		}
		v, _ := strconv.ParseUint(s, 10, 64)
		n += v
	}
	return n
}

// procTicks is a process's utime+stime in ticks.
func procTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+2:])) // f[0] is field 3, state
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// peakRSS is a process's VmHWM in bytes.
func peakRSS(pid int) uint64 {
	return statusKB(pid, "VmHWM:") * 1024
}

// rss is a process's VmRSS in bytes.
func rss(pid int) uint64 {
	return statusKB(pid, "VmRSS:") * 1024
}

func statusKB(pid int, key string) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			v, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	return 0
}

// enableBPFStats turns on kernel.bpf_stats_enabled and returns a function
// that restores the previous value.
func enableBPFStats() (func(), error) {
	const p = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return nil, err
	}
	return func() { os.WriteFile(p, old, 0) }, nil
}

// bpfRun is the summed run time and run count of some programs.
type bpfRun struct{ ns, cnt uint64 }

// ownProgIDs are the BPF programs a process holds through its file
// descriptors (programs and links), from /proc/PID/fdinfo: only the
// agent's own, not those of tests that others run at the same time.
func ownProgIDs(pid int) map[ebpf.ProgramID]bool {
	ids := map[ebpf.ProgramID]bool{}
	if pid == 0 {
		return ids
	}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "prog_id:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				ids[ebpf.ProgramID(n)] = true
			}
		}
	}
	return ids
}

// bpfStats sums run_time_ns and run_cnt over the given programs.
func bpfStats(ids map[ebpf.ProgramID]bool) bpfRun {
	var r bpfRun
	for id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		st, err := p.Stats()
		p.Close()
		if err == nil {
			r.ns += uint64(st.Runtime.Nanoseconds())
			r.cnt += st.RunCount
		}
	}
	return r
}

// export is what the receiver's file exporters wrote.
type export struct {
	httpLost, tcpLost uint64
	delivery          []uint64 // bucket counts, last export
	bounds            []float64
	spans             map[int]int // server spans by server.port
}

// readExport parses the OTLP JSON lines of the metrics and traces files.
// Counters are cumulative, so the last export of each wins.
func readExport(metricsPath, tracesPath string) (export, error) {
	e := export{spans: map[int]int{}}
	err := eachLine(metricsPath, func(line []byte) {
		var req struct {
			ResourceMetrics []struct {
				ScopeMetrics []struct {
					Metrics []struct {
						Name      string
						Sum       *struct{ DataPoints []struct{ AsInt string } }
						Histogram *struct {
							DataPoints []struct {
								BucketCounts   []string
								ExplicitBounds []float64
							}
						}
					}
				}
			}
		}
		if json.Unmarshal(line, &req) != nil {
			return
		}
		// A line may hold several collections (batch); keep the last of each.
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					switch {
					case m.Name == "ebpf.http.lost" && m.Sum != nil:
						e.httpLost = sumInts(m.Sum.DataPoints)
					case m.Name == "ebpf.tcp.lost" && m.Sum != nil:
						e.tcpLost = sumInts(m.Sum.DataPoints)
					case m.Name == "ebpf.http.delivery.duration" && m.Histogram != nil && len(m.Histogram.DataPoints) > 0:
						dp := m.Histogram.DataPoints[0]
						e.bounds = dp.ExplicitBounds
						e.delivery = e.delivery[:0]
						for _, s := range dp.BucketCounts {
							v, _ := strconv.ParseUint(s, 10, 64)
							e.delivery = append(e.delivery, v)
						}
					}
				}
			}
		}
	})
	if err != nil {
		return e, err
	}
	err = eachLine(tracesPath, func(line []byte) {
		var req struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct {
						Kind       int
						Attributes []struct {
							Key   string
							Value struct{ IntValue string }
						}
					}
				}
			}
		}
		if json.Unmarshal(line, &req) != nil {
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if s.Kind != 2 { // SPAN_KIND_SERVER
						continue
					}
					for _, a := range s.Attributes {
						if a.Key == "server.port" {
							p, _ := strconv.Atoi(a.Value.IntValue)
							e.spans[p]++
						}
					}
				}
			}
		}
	})
	return e, err
}

func sumInts(dps []struct{ AsInt string }) uint64 {
	var n uint64
	for _, dp := range dps {
		v, _ := strconv.ParseUint(dp.AsInt, 10, 64)
		n += v
	}
	return n
}

func eachLine(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 256<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	return sc.Err()
}

// histQuantile returns the q quantile of a histogram with explicit bounds,
// interpolated linearly inside the bucket (the first bucket starts at 0).
// The last, unbounded bucket reports its lower bound.
func histQuantile(counts []uint64, bounds []float64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(counts) != len(bounds)+1 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range counts {
		if seen+float64(c) >= rank && c > 0 {
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			if i == len(bounds) {
				return lo
			}
			return lo + (bounds[i]-lo)*(rank-seen)/float64(c)
		}
		seen += float64(c)
	}
	return bounds[len(bounds)-1]
}
