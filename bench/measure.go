package main

import (
	"bufio"
	"bytes"
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
