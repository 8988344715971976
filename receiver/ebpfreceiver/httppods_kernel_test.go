//go:build linux

package ebpfreceiver

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ebpfreceiver/otelcol-ebpf/internal/bpftest"
	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/otlptest"
)

// Helper processes of this package's tests, run in fake pods.
var httpHelpers = map[string]bpftest.HelperFunc{
	"http-hop": httpHop,
	"http-get": httpGet,
}

// httpHop serves HTTP on -port. With -next, each request first calls next,
// passing a traceparent of its own when -propagate and the request had one.
func httpHop(args []string) error {
	fs := flag.NewFlagSet("http-hop", flag.ContinueOnError)
	port := fs.Int("port", 8080, "port")
	next := fs.String("next", "", "URL to call while serving")
	propagate := fs.Bool("propagate", false, "propagate traceparent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	client := &http.Client{Timeout: 10 * time.Second}
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if *next != "" {
			req, _ := http.NewRequest("GET", *next, nil)
			if tp := r.Header.Get("traceparent"); *propagate && tp != "" {
				req.Header.Set("traceparent", tp[:36]+newSpanID()+tp[52:])
			}
			resp, err := client.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		_, _ = w.Write([]byte("ok"))
	}))
}

// httpGet makes one GET to -url, with -traceparent if set.
func httpGet(args []string) error {
	fs := flag.NewFlagSet("http-get", flag.ContinueOnError)
	url := fs.String("url", "", "URL")
	tp := fs.String("traceparent", "", "traceparent header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req, err := http.NewRequest("GET", *url, nil)
	if err != nil {
		return err
	}
	if *tp != "" {
		req.Header.Set("traceparent", *tp)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func newSpanID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// A caller on the node calls pod A, A calls pod B and B calls pod C while
// serving: the six spans form one trace with the right parents, with
// traceparent propagated by the applications and without.
func TestHTTPTraceAcrossPods(t *testing.T) {
	bpftest.RequireBPF(t)
	for _, propagate := range []bool{false, true} {
		t.Run(fmt.Sprintf("propagate=%v", propagate), func(t *testing.T) {
			traces, _ := httpReceivers(t, createDefaultConfig())
			node := bpftest.NewNode(t)
			a := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
			b := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
			c := bpftest.NewPod(t, bpftest.PodOptions{Node: node})
			const port = 8080
			hop := func(p *bpftest.Pod, next *bpftest.Pod) {
				args := []string{"-port", fmt.Sprint(port), fmt.Sprintf("-propagate=%v", propagate)}
				if next != nil {
					args = append(args, "-next", fmt.Sprintf("http://%s:%d/%s", next.IP, port, next.ContainerID[:8]))
				}
				p.StartHelper(t, true, "http-hop", args...)
			}
			hop(c, nil)
			hop(b, c)
			hop(a, b)
			args := []string{"-url", fmt.Sprintf("http://%s:%d/a", a.IP, port)}
			if propagate {
				args = append(args, "-traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-"+newSpanID()+"-01")
			}
			node.StartHelper(t, false, "http-get", args...).Wait(t)

			spans := spansByContainer(t, traces, port, 6)
			caller := spans[""][ptrace.SpanKindClient]
			chain := []ptrace.Span{
				caller,
				spans[a.ContainerID][ptrace.SpanKindServer], spans[a.ContainerID][ptrace.SpanKindClient],
				spans[b.ContainerID][ptrace.SpanKindServer], spans[b.ContainerID][ptrace.SpanKindClient],
				spans[c.ContainerID][ptrace.SpanKindServer],
			}
			for i, s := range chain {
				assert.Equal(t, caller.TraceID(), s.TraceID(), "one trace: span %d %s", i, s.Name())
				if i > 0 {
					assert.Equal(t, chain[i-1].SpanID(), s.ParentSpanID(), "span %d %s is the child of span %d", i, s.Name(), i-1)
				}
			}
			if propagate {
				tid, _ := traceParentIDs(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01")
				assert.Equal(t, tid, caller.TraceID(), "the application's trace")
			} else {
				assert.True(t, caller.ParentSpanID().IsEmpty(), "the caller's span is the root")
			}
		})
	}
}

// spansByContainer waits for n spans to and from port and returns them by
// container id ("" for the node) and kind.
func spansByContainer(t *testing.T, sink interface{ AllTraces() []ptrace.Traces }, port, n int) map[string]map[ptrace.SpanKind]ptrace.Span {
	t.Helper()
	var got map[string]map[ptrace.SpanKind]ptrace.Span
	require.Eventually(t, func() bool {
		got = map[string]map[ptrace.SpanKind]ptrace.Span{}
		seen := 0
		for res, s := range otlptest.Spans(sink.AllTraces()...) {
			if otlptest.Int(s.Attributes(), "server.port") != int64(port) {
				continue
			}
			cid := otlptest.Str(res, "container.id")
			if got[cid] == nil {
				got[cid] = map[ptrace.SpanKind]ptrace.Span{}
			}
			got[cid][s.Kind()] = s
			seen++
		}
		return seen >= n
	}, 15*time.Second, 50*time.Millisecond, "%d spans on port %d", n, port)
	return got
}
