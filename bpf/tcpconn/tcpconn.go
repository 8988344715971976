//go:build linux

package tcpconn

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Options size the kernel maps. Zero values take the defaults.
type Options struct {
	// MaxConnections bounds the connections tracked at once.
	MaxConnections uint32
	// MaxFlows bounds the flows aggregated at once; what does not fit is
	// counted in Snapshot.Overflow.
	MaxFlows uint32
	// RTTSampleInterval is the least time between two smoothed RTT samples
	// of one connection.
	RTTSampleInterval time.Duration
}

// Hooks lists the tracepoints the programs attach to, for error messages and
// documentation.
var Hooks = []string{
	"sock:inet_sock_set_state", "sock:sock_send_length", "sock:sock_recv_length",
	"tcp:tcp_retransmit_skb", "tcp:tcp_send_reset", "tcp:tcp_receive_reset", "tcp:tcp_probe",
}

// Tracer is the loaded and attached programs and their maps.
type Tracer struct {
	objs  bpfObjects
	links []link.Link
	ncpu  int
}

// Load loads the programs, sizes the maps from opts and attaches every
// program. The caller must Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load tcpconn spec: %w", err)
	}
	if opts.MaxConnections > 0 {
		spec.Maps[bpfMapConns].MaxEntries = opts.MaxConnections
	}
	if opts.MaxFlows > 0 {
		spec.Maps[bpfMapFlows].MaxEntries = opts.MaxFlows
	}
	if opts.RTTSampleInterval > 0 {
		if err := spec.Variables[bpfVarRttSampleIntervalNs].Set(uint64(opts.RTTSampleInterval)); err != nil {
			return nil, fmt.Errorf("set rtt sample interval: %w", err)
		}
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	t := &Tracer{ncpu: ncpu}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load tcpconn programs: %w (verifier log: %+v)", err, verr)
		}
		return nil, fmt.Errorf("load tcpconn programs: %w", err)
	}
	for _, p := range t.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			info, _ := p.Info()
			name := ""
			if info != nil {
				name = info.Name
			}
			t.Close()
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// Programs returns the loaded programs, for their kernel ids and stats.
func (t *Tracer) Programs() []*ebpf.Program {
	return []*ebpf.Program{
		t.objs.EbrTcpState, t.objs.EbrSockSend, t.objs.EbrSockRecv,
		t.objs.EbrTcpRetrans, t.objs.EbrTcpRstTx, t.objs.EbrTcpRstRx, t.objs.EbrTcpProbe,
	}
}

// Maps returns the loaded maps, for their kernel ids and fill.
func (t *Tracer) Maps() []*ebpf.Map {
	return []*ebpf.Map{t.objs.Conns, t.objs.Flows, t.objs.Overflow, t.objs.Counters}
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Lost counts what the kernel side could not keep.
type Lost struct {
	// ConnsFull counts connections that could not be tracked because the
	// conns map was full: their events are not counted.
	ConnsFull uint64
	// FlowsFull counts flow updates that did not fit in the flows map and
	// went to Overflow instead.
	FlowsFull uint64
}

// Snapshot is the content of the maps at one moment.
type Snapshot struct {
	// Flows maps each flow to its counters, summed over CPUs.
	Flows map[Flow]FlowStats
	// Overflow holds what did not fit in the flows map, by Direction.
	Overflow [directionCount]FlowStats
	// Lost counts the kernel side's losses.
	Lost Lost
}

// Snapshot reads the maps into s, reusing its storage.
func (t *Tracer) Snapshot(s *Snapshot) error {
	if s.Flows == nil {
		s.Flows = make(map[Flow]FlowStats)
	}
	clear(s.Flows)
	perCPU := make([]FlowStats, t.ncpu)
	var key Flow
	it := t.objs.Flows.Iterate()
	for it.Next(&key, &perCPU) {
		s.Flows[key] = sum(perCPU)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read flows: %w", err)
	}
	for d := range s.Overflow {
		if err := t.objs.Overflow.Lookup(uint32(d), &perCPU); err != nil {
			return fmt.Errorf("read overflow: %w", err)
		}
		s.Overflow[d] = sum(perCPU)
	}
	counters := make([]uint64, t.ncpu)
	for c, dst := range map[bpfCounter]*uint64{
		bpfCounterCOUNTER_CONNS_FULL: &s.Lost.ConnsFull,
		bpfCounterCOUNTER_FLOWS_FULL: &s.Lost.FlowsFull,
	} {
		if err := t.objs.Counters.Lookup(uint32(c), &counters); err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		*dst = 0
		for _, v := range counters {
			*dst += v
		}
	}
	return nil
}

func sum(perCPU []FlowStats) FlowStats {
	var total FlowStats
	for i := range perCPU {
		total.Add(&perCPU[i])
	}
	return total
}
