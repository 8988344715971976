//go:build linux

package bpftest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Drop is a packet drop rule made by DropSent.
type Drop struct {
	netns string
	table string
}

// DropSent drops every nth TCP data segment (IP length over 100 bytes) that
// p sends to port, as if the wire lost it, until cleanup or Remove.
//
// The rule sits on the ingress of the pod's veth peer on the node (an
// nftables netdev table in the node's namespace). A drop inside the pod's own
// namespace (an inet output chain) would not do: TCP sees a local
// transmission error there, not a loss, and does not retransmit as it does
// for a lost segment.
func (p *Pod) DropSent(t testing.TB, port uint16, nth int) *Drop {
	t.Helper()
	RequireTool(t, "nft")
	d := &Drop{netns: p.Node.Netns, table: strings.ReplaceAll(name("drop"), "-", "_")}
	rules := fmt.Sprintf(`table netdev %s {
	chain sent {
		type filter hook ingress device %q priority 0;
		ip protocol tcp tcp dport %d ip length > 100 numgen inc mod %d == 0 counter drop
	}
}
`, d.table, p.veth, port, nth)
	cmd := exec.Command("ip", "netns", "exec", d.netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("add drop rule: %v: %s", err, out)
	}
	t.Cleanup(func() { d.remove(t, false) })
	return d
}

// Dropped returns the number of packets the rule dropped so far.
func (d *Drop) Dropped(t testing.TB) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", d.netns, "nft", "-j", "list", "table", "netdev", d.table).Output()
	if err != nil {
		t.Fatalf("list drop rule: %v", err)
	}
	var list struct {
		Nftables []struct {
			Rule *struct {
				Expr []struct {
					Counter *struct{ Packets uint64 } `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("parse drop rule: %v", err)
	}
	for _, o := range list.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if e.Counter != nil {
				return e.Counter.Packets
			}
		}
	}
	t.Fatalf("drop rule has no counter: %s", out)
	return 0
}

// Remove removes the rule.
func (d *Drop) Remove(t testing.TB) {
	t.Helper()
	d.remove(t, true)
}

func (d *Drop) remove(t testing.TB, must bool) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", d.netns, "nft", "delete", "table", "netdev", d.table).CombinedOutput()
	if err != nil && (must || !strings.Contains(string(out), "No such file")) {
		t.Errorf("remove drop rule: %v: %s", err, out)
	}
}
