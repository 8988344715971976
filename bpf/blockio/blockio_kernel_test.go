//go:build linux

package blockio

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
)

func TestMain(m *testing.M) {
	bpftest.RunHelperIfRequested(map[string]bpftest.HelperFunc{
		"disk-io": diskIO,
	})
	os.Exit(m.Run())
}

// testOptions size the maps as the C code does; Load takes no defaults.
var testOptions = Options{MaxInflight: 8192, MaxSeries: 8192}

// The workload: blocks O_DIRECT writes then as many reads of blockSize
// bytes each. A loop device takes up to 1280 KiB and 128 segments of up to
// 64 KiB in one request (checked by checkLimits), so each 64 KiB request
// is one request, and synchronous direct I/O leaves nothing to merge.
const (
	blocks    = 64
	blockSize = 64 << 10
)

func load(t *testing.T, opts Options) *Tracer {
	t.Helper()
	bpftest.RequireBPF(t)
	tr, err := Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func snapshot(t *testing.T, tr *Tracer, opts Options) Snapshot {
	t.Helper()
	var s Snapshot
	if err := tr.Snapshot(&s); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// More requests in flight than fit is an accounting error, such as
	// more deletes than inserts.
	if s.Inflight > uint64(opts.MaxInflight) {
		t.Errorf("inflight %d, more than the %d that fit", s.Inflight, opts.MaxInflight)
	}
	if len(s.Series) > int(opts.MaxSeries) {
		t.Errorf("%d series, more than the %d that fit", len(s.Series), opts.MaxSeries)
	}
	for k, st := range s.Series {
		checkHistogram(t, keyString(k), st)
	}
	for op, st := range s.Overflow {
		checkHistogram(t, fmt.Sprintf("overflow of op %d", op), st)
	}
	return s
}

// checkHistogram checks that the latency buckets hold one sample per
// completed request, and that completed requests took some time.
func checkHistogram(t *testing.T, what string, st Stats) {
	t.Helper()
	var n uint64
	for _, b := range st.LatencyBuckets {
		n += b
	}
	if n != st.Count || (st.Count > 0) != (st.LatencySumNs > 0) {
		t.Errorf("%s: count %d, latency sum %d ns, buckets %v", what, st.Count, st.LatencySumNs, st.LatencyBuckets)
	}
}

func keyString(k Key) string {
	return fmt.Sprintf("{cgroup %d dev %d:%d op %d}", k.CgroupId, k.Major(), k.Minor(), k.Op)
}

func devOf(l *bpftest.Loop) uint32 { return l.Major<<minorBits | l.Minor }

// checkLimits fails t unless the loop device takes a blockSize request
// whole.
func checkLimits(t *testing.T, l *bpftest.Loop) {
	t.Helper()
	for file, least := range map[string]int{
		"max_sectors_kb":   blockSize >> 10,
		"max_segment_size": 4096,
		"max_segments":     blockSize / 4096,
	} {
		raw, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/queue/%s", l.Major, l.Minor, file))
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || v < least {
			t.Fatalf("%s %s: %q, want at least %d", l.Name, file, raw, least)
		}
	}
}

// runDiskIO runs diskIO in pod on l: n blocks of size bytes, from parallel
// threads.
func runDiskIO(t *testing.T, pod *bpftest.Pod, l *bpftest.Loop, n, size, parallel int) {
	t.Helper()
	pod.StartHelper(t, false, "disk-io", "-dev", l.Path, "-blocks", strconv.Itoa(n),
		"-size", strconv.Itoa(size), "-parallel", strconv.Itoa(parallel)).Wait(t)
}

func TestLoad(t *testing.T) {
	bpftest.RequireBPF(t)
	if _, err := Load(Options{MaxInflight: 0, MaxSeries: 1}); err == nil {
		t.Error("load with MaxInflight 0: no error")
	}
	tr, err := Load(testOptions)
	if err != nil {
		t.Fatalf("load on %s: %v", bpftest.KernelRelease(t), err)
	}
	if got := len(tr.Programs()); got != len(Hooks) {
		t.Errorf("%d programs, want %d", got, len(Hooks))
	}
	var names []string
	for _, m := range tr.Maps() {
		info, err := m.Info()
		if err != nil {
			t.Fatalf("map info: %v", err)
		}
		names = append(names, info.Name)
	}
	for _, want := range []string{"inflight", "series", "overflow", "counters"} {
		if !slices.Contains(names, want) {
			t.Errorf("maps %v: no %s", names, want)
		}
	}
	if err := tr.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// The pod's direct reads and writes of a loop device count for the pod's
// cgroup and the loop disk, exactly.
func TestDiskIO(t *testing.T) {
	tr := load(t, testOptions)
	l := bpftest.NewLoop(t, blocks*blockSize)
	checkLimits(t, l)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	runDiskIO(t, pod, l, blocks, blockSize, 1)

	s := snapshot(t, tr, testOptions)
	if s.Lost != (Lost{}) {
		t.Errorf("lost: %+v", s.Lost)
	}
	for _, op := range []Op{OpWrite, OpRead} {
		k := Key{CgroupId: pod.CgroupID, Dev: devOf(l), Op: uint8(op)}
		st, ok := s.Series[k]
		if !ok {
			t.Errorf("no series %s", keyString(k))
			continue
		}
		if st.Count != blocks || st.Bytes != blocks*blockSize {
			t.Errorf("%s: %d requests of %d bytes, want %d of %d", keyString(k), st.Count, st.Bytes, blocks, blocks*blockSize)
		}
		t.Logf("%s: %d requests, %d bytes, mean latency %d us, buckets %v",
			keyString(k), st.Count, st.Bytes, st.LatencySumNs/max(st.Count, 1)/1000, st.LatencyBuckets)
	}
	// The pod did no other I/O on the loop device and wrote nowhere else;
	// running the helper may read its binary from another disk.
	for k, st := range s.Series {
		if k.CgroupId != pod.CgroupID {
			continue
		}
		if (k.Dev == devOf(l) && k.Op != uint8(OpWrite) && k.Op != uint8(OpRead)) || (k.Dev != devOf(l) && k.Op == uint8(OpWrite)) {
			t.Errorf("unexpected series %s: %+v", keyString(k), st)
		}
	}

	if err := tr.DeleteCgroups([]uint64{pod.CgroupID}); err != nil {
		t.Fatalf("delete cgroups: %v", err)
	}
	s = snapshot(t, tr, testOptions)
	for k := range s.Series {
		if k.CgroupId == pod.CgroupID {
			t.Errorf("series %s left after DeleteCgroups", keyString(k))
		}
	}
}

func TestDeviceName(t *testing.T) {
	bpftest.RequireRoot(t)
	l := bpftest.NewLoop(t, 1<<20)
	if got := DeviceName(devOf(l)); got != l.Name {
		t.Errorf("DeviceName(%d:%d) = %q, want %q", l.Major, l.Minor, got, l.Name)
	}
}

// With room for one series, the pod's reads and writes cannot both have
// one: what does not fit goes to the overflow of its op, and is counted.
func TestSeriesFull(t *testing.T) {
	opts := Options{MaxInflight: 8192, MaxSeries: 1}
	tr := load(t, opts)
	l := bpftest.NewLoop(t, blocks*blockSize)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	runDiskIO(t, pod, l, blocks, blockSize, 1)

	s := snapshot(t, tr, opts)
	if s.Lost.InflightFull != 0 {
		t.Errorf("inflight full %d, want 0", s.Lost.InflightFull)
	}
	missing := 0
	for _, op := range []Op{OpWrite, OpRead} {
		k := Key{CgroupId: pod.CgroupID, Dev: devOf(l), Op: uint8(op)}
		in, ok := s.Series[k]
		if !ok {
			missing++
		}
		o := s.Overflow[op]
		if in.Count+o.Count < blocks || in.Bytes+o.Bytes < blocks*blockSize {
			t.Errorf("op %d: %d requests of %d bytes in the series and %d of %d in overflow, want at least %d of %d in all",
				op, in.Count, in.Bytes, o.Count, o.Bytes, blocks, blocks*blockSize)
		}
	}
	if missing == 0 {
		t.Errorf("both series of the pod fit in a map of 1: %v", s.Series)
	}
	// Each request that does not fit completes once.
	if s.Lost.SeriesFull < blocks {
		t.Errorf("series full %d, want at least %d", s.Lost.SeriesFull, blocks)
	}
	t.Logf("lost %+v; overflow counts: write %d read %d", s.Lost, s.Overflow[OpWrite].Count, s.Overflow[OpRead].Count)
}

// With room for one request in flight, what cannot be tracked is counted
// as lost, not as I/O. Each 4 MiB direct write or read is split into
// several requests (a bio holds at most 256 pages), which are issued one
// after the other, faster than the loop device's worker completes them;
// four threads do it at once.
func TestInflightFull(t *testing.T) {
	const n, size = 8, 4 << 20
	opts := Options{MaxInflight: 1, MaxSeries: 8192}
	tr := load(t, opts)
	l := bpftest.NewLoop(t, n*size)
	pod := bpftest.NewPod(t, bpftest.PodOptions{})
	runDiskIO(t, pod, l, n, size, 4)

	s := snapshot(t, tr, opts)
	var counted Stats
	for _, op := range []Op{OpWrite, OpRead} {
		st := s.Series[Key{CgroupId: pod.CgroupID, Dev: devOf(l), Op: uint8(op)}]
		counted.Add(&st)
	}
	if s.Lost.InflightFull == 0 || counted.Bytes >= 2*n*size {
		t.Errorf("inflight full %d, the pod's %d bytes counted in %d requests: want some of %d bytes lost",
			s.Lost.InflightFull, counted.Bytes, counted.Count, 2*n*size)
	}
	t.Logf("lost %+v; the pod's %d bytes counted in %d requests", s.Lost, counted.Bytes, counted.Count)
}

// diskIO writes -blocks blocks of -size bytes to -dev with O_DIRECT from
// -parallel threads, syncs, then reads them back the same way and checks
// them.
func diskIO(args []string) error {
	fs := flag.NewFlagSet("disk-io", flag.ContinueOnError)
	dev := fs.String("dev", "", "block device")
	n := fs.Int("blocks", 1, "blocks")
	size := fs.Int("size", 4096, "block size, a multiple of 4096")
	parallel := fs.Int("parallel", 1, "threads")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := unix.Open(*dev, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", *dev, err)
	}
	defer unix.Close(fd)
	each := func(do func(buf []byte, off int64) error) error {
		errs := make(chan error, *parallel)
		var wg sync.WaitGroup
		for w := range *parallel {
			wg.Go(func() {
				// An anonymous mapping is page aligned, as O_DIRECT wants.
				buf, err := unix.Mmap(-1, 0, *size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					errs <- err
					return
				}
				defer unix.Munmap(buf)
				for i := w; i < *n; i += *parallel {
					if err := do(buf, int64(i)*int64(*size)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	fill := func(buf []byte, off int64) {
		for i := range buf {
			buf[i] = byte(off>>16) + byte(i)
		}
	}
	err = each(func(buf []byte, off int64) error {
		fill(buf, off)
		if n, err := unix.Pwrite(fd, buf, off); err != nil || n != len(buf) {
			return fmt.Errorf("write at %d: %d bytes: %v", off, n, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	want := make([]byte, *size)
	var mu sync.Mutex
	return each(func(buf []byte, off int64) error {
		if n, err := unix.Pread(fd, buf, off); err != nil || n != len(buf) {
			return fmt.Errorf("read at %d: %d bytes: %v", off, n, err)
		}
		mu.Lock()
		defer mu.Unlock()
		fill(want, off)
		if !bytes.Equal(buf, want) {
			return fmt.Errorf("read at %d: not what was written", off)
		}
		return nil
	})
}
