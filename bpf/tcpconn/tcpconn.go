//go:build linux

package tcpconn

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/bpf/internal/loader"
)

// Options size the kernel maps and set the sampling.
type Options struct {
	// MaxConnections bounds the connections tracked at once.
	MaxConnections uint32
	// MaxFlows bounds the flows aggregated at once; what does not fit is
	// counted in Snapshot.Overflow.
	MaxFlows uint32
	// RTTSampleInterval is the least time between two smoothed RTT samples
	// of one connection; zero samples every received segment.
	RTTSampleInterval time.Duration
	// AttachTo renames the tracepoint a program attaches to, by program
	// name. Tests use it to force a hook to be missing.
	AttachTo map[string]string
	// KernelBTF is the path of a BTF file to resolve CO-RE relocations
	// against instead of the running kernel's; empty means the running
	// kernel's. Hooks are still found in the running kernel's BTF.
	KernelBTF string
	// RejectProgram, for tests only, replaces the named program's
	// instructions with ones the verifier rejects.
	RejectProgram string
}

// The parts of the TCP metrics. Each needs its own hooks; a part whose
// hooks are missing or rejected is disabled and the others still run.
const (
	PartConnections = "tcp"             // opened, active; every other part needs it
	PartBytes       = "tcp.bytes"       // bytes sent and received
	PartRetransmits = "tcp.retransmits" // retransmitted segments
	PartResets      = "tcp.resets"      // resets sent and received
	PartRTT         = "tcp.rtt"         // smoothed RTT samples
)

// programs maps each program to its tracepoint and part.
var programs = []loader.Program{
	{Name: "ebr_tcp_state", Tracepoint: "sock:inet_sock_set_state", Part: PartConnections},
	{Name: "ebr_tcp_destroy", Tracepoint: "tcp:tcp_destroy_sock", Part: PartConnections},
	{Name: "ebr_sock_send", Tracepoint: "sock:sock_send_length", Part: PartBytes},
	{Name: "ebr_sock_recv", Tracepoint: "sock:sock_recv_length", Part: PartBytes},
	{Name: "ebr_tcp_retrans", Tracepoint: "tcp:tcp_retransmit_skb", Part: PartRetransmits},
	{Name: "ebr_tcp_rst_tx", Tracepoint: "tcp:tcp_send_reset", Part: PartResets},
	{Name: "ebr_tcp_rst_rx", Tracepoint: "tcp:tcp_receive_reset", Part: PartResets},
	{Name: "ebr_tcp_probe", Tracepoint: "tcp:tcp_probe", Part: PartRTT},
}

// Hooks are the tracepoints each part attaches to.
var Hooks = loader.PartHooks(programs)

// Tracer is the loaded and attached programs and their maps.
type Tracer struct {
	*loader.Objects
	disabled map[string]error
}

// Load loads the maps and, one by one, the programs, and attaches them. A
// program that cannot load or attach disables its part, which Disabled
// reports; Load fails only when the connections part cannot run. The caller
// must Close the Tracer.
func Load(opts Options) (*Tracer, error) {
	if opts.MaxConnections == 0 || opts.MaxFlows == 0 {
		return nil, fmt.Errorf("tcpconn: MaxConnections (%d) and MaxFlows (%d) must be positive", opts.MaxConnections, opts.MaxFlows)
	}
	if opts.RTTSampleInterval < 0 {
		return nil, fmt.Errorf("tcpconn: negative RTTSampleInterval %s", opts.RTTSampleInterval)
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load tcpconn spec: %w", err)
	}
	spec.Maps[bpfMapConns].MaxEntries = opts.MaxConnections
	spec.Maps[bpfMapFlows].MaxEntries = opts.MaxFlows
	if err := loader.SetConst(spec, bpfVarRttSampleIntervalNs, uint64(opts.RTTSampleInterval)); err != nil {
		return nil, fmt.Errorf("set rtt sample interval: %w", err)
	}
	objs, err := loader.New(spec, loader.Options{KernelBTF: opts.KernelBTF, RejectProgram: opts.RejectProgram})
	if err != nil {
		return nil, fmt.Errorf("tcpconn: %w", err)
	}
	t := &Tracer{Objects: objs, disabled: make(map[string]error)}
	for _, p := range programs {
		if t.disabled[p.Part] != nil {
			continue
		}
		ps := spec.Programs[p.Name]
		if to, ok := opts.AttachTo[p.Name]; ok {
			ps.AttachTo = to
		}
		if err := t.Attach(spec, p); err != nil {
			t.disabled[p.Part] = err
		}
	}
	if err := t.disabled[PartConnections]; err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Disabled returns the parts that could not run, with why.
func (t *Tracer) Disabled() map[string]error {
	return maps.Clone(t.disabled)
}

// Parts returns every part's name.
func Parts() []string {
	return slices.Sorted(maps.Keys(Hooks))
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
	// Conns is the number of connections tracked now.
	Conns uint64
}

// DeleteFlows removes flows from the kernel map, such as those of a removed
// cgroup once exported. A flow updated again afterwards starts from zero.
func (t *Tracer) DeleteFlows(flows []Flow) error {
	return loader.Delete(t.Map(bpfMapFlows), flows)
}

// Snapshot reads the maps into s, reusing its storage.
func (t *Tracer) Snapshot(s *Snapshot) error {
	if err := loader.ReadPerCPU(t.Map(bpfMapFlows), t.NumCPU(), &s.Flows, loader.Sum[FlowStats]); err != nil {
		return fmt.Errorf("read flows: %w", err)
	}
	perCPU := make([]FlowStats, t.NumCPU())
	for d := range s.Overflow {
		if err := t.Map(bpfMapOverflow).Lookup(uint32(d), &perCPU); err != nil {
			return fmt.Errorf("read overflow: %w", err)
		}
		s.Overflow[d] = loader.Sum(perCPU)
	}
	var inserted, deleted uint64
	if err := loader.ReadCounters(t.Map(bpfMapCounters), map[bpfCounter]*uint64{
		bpfCounterCOUNTER_CONNS_FULL:     &s.Lost.ConnsFull,
		bpfCounterCOUNTER_FLOWS_FULL:     &s.Lost.FlowsFull,
		bpfCounterCOUNTER_CONNS_INSERTED: &inserted,
		bpfCounterCOUNTER_CONNS_DELETED:  &deleted,
	}); err != nil {
		return err
	}
	s.Conns = inserted - deleted
	return nil
}
