package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// serve is the bench's HTTP server, run as its own process: /fail answers
// 500, any other path hello.
func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "hello\n")
	}))
}

// loadResult is what a load generator measured.
type loadResult struct {
	requests, errors int
	elapsed          time.Duration
	lat              []time.Duration
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	return r.lat[min(int(q*float64(len(r.lat))), len(r.lat)-1)]
}

// run calls w's request from its goroutines until d has passed or its max
// calls are made, at its rate if it has one, and collects latencies. A
// paced request's latency starts when it is sent, not at its slot.
func run(w workload, d time.Duration, do func() error) loadResult {
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	var sent atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	per := w.max / w.conc
	for range w.conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<16)
			errs := 0
			for n := 0; n < per && time.Now().Before(deadline); n++ {
				if w.rate > 0 {
					slot := start.Add(time.Duration(sent.Add(1)-1) * time.Second / time.Duration(w.rate))
					time.Sleep(time.Until(slot))
				}
				t := time.Now()
				if do() != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.lat)
	return res
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// workload is one kind of traffic against the server at url.
type workload struct {
	name string
	conc int
	max  int
	rate int // requests per second over all goroutines; 0: as fast as they go
	// do returns one request against url, and a cleanup.
	do func(url string) (func() error, func())
}

var workloads = []workload{
	{"keepalive", 16, 2_000_000, 0, keepAlive},
	// rate5k is keepalive held below saturation, where latency is not
	// queueing. 1% of its requests fail: the spans that express sends.
	{"rate5k", 16, 2_000_000, 5000, func(url string) (func() error, func()) {
		call, done := keepAlive(url)
		failing, doneFailing := keepAlive(url + "fail")
		var n atomic.Int64
		return func() error {
			if n.Add(1)%100 == 0 {
				return failing()
			}
			return call()
		}, func() { done(); doneFailing() }
	}},
	{"shortconn", 8, 500_000, 0, func(url string) (func() error, func()) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		return func() error { return get(c, url) }, func() {}
	}},
	{"churn", 4, 20_000, 0, func(url string) (func() error, func()) {
		// curl when there is one: a small process, as most short-lived
		// clients are; else this binary, whose Go start-up costs more.
		if curl, err := exec.LookPath("curl"); err == nil {
			return func() error { return exec.Command(curl, "-sfo", "/dev/null", url).Run() }, func() {}
		}
		self, _ := os.Executable()
		return func() error { return exec.Command(self, "churn-child", url).Run() }, func() {}
	}},
}

func keepAlive(url string) (func() error, func()) {
	t := &http.Transport{MaxIdleConnsPerHost: 64}
	c := &http.Client{Transport: t}
	return func() error { return get(c, url) }, t.CloseIdleConnections
}

// churnChild is one short-lived process making one request on a new
// connection.
func churnChild(url string) error {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return get(c, url)
}

// holdIdle opens n keep-alive connections to addr, makes one request on
// each and keeps them open until the returned function is called.
func holdIdle(addr string, n int) (func(), error) {
	conns := make([]net.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	buf := make([]byte, 4096)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("connection %d: %w", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
			closeAll()
			return nil, err
		}
		if _, err := c.Read(buf); err != nil {
			closeAll()
			return nil, err
		}
	}
	return closeAll, nil
}
