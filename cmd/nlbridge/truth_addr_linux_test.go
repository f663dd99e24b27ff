//go:build linux

package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// TestIntegrationAddrTruthAfterOverflow checks that a resync after a
// netlink overflow tells addresses apart as the kernel does, and does not
// mistake lifetimes counting down for a change. Before SIGSTOP, one link
// has 10.9.0.1 twice, with the peers 10.9.0.2 and 10.9.0.3; two addresses
// with finite lifetimes; and 2001:db8:9::1/64. While nlbridge is stopped, a
// storm of veth pairs overflows its 64 KiB socket buffer, so that the
// kernel drops what follows: the second peer is deleted, one lifetime is
// changed for real, and the IPv6 address is added again as /56. Resumed,
// nlbridge must publish a DELADDR for the deleted peer and nothing for the
// other, a NEWADDR for the real lifetime change and none for the address
// whose lifetimes only counted down, and a NEWADDR of the IPv6 address with
// its new prefix length but no DELADDR for it; and a consumer keyed by
// index and id must equal the kernel.
func TestIntegrationAddrTruthAfterOverflow(t *testing.T) {
	ns := nstest.New(t)
	events, c := startSmallBuffer(t, ns, "truth")

	const (
		kept     = "10.9.0.1 peer 10.9.0.2/32"
		deleted  = "10.9.0.1 peer 10.9.0.3/32"
		counting = "192.0.2.9/24"    // lifetimes that only count down
		changed  = "198.51.100.9/24" // lifetimes changed while stopped
		inet6    = "2001:db8:9::1"   // /64, then /56
	)
	v0, _ := ns.AddVeth(t, "t0", "t1")
	ip := func(args ...string) {
		t.Helper()
		if _, err := ns.Command("ip", nil, args...); err != nil {
			t.Fatal(err)
		}
	}
	ip("addr", "add", "10.9.0.1", "peer", "10.9.0.2/32", "dev", "t0")
	ip("addr", "add", "10.9.0.1", "peer", "10.9.0.3/32", "dev", "t0")
	ip("addr", "add", counting, "dev", "t0", "valid_lft", "1000", "preferred_lft", "500")
	ip("addr", "add", changed, "dev", "t0", "valid_lft", "1000", "preferred_lft", "500")
	ip("addr", "add", inet6+"/64", "dev", "t0", "nodad")
	waitConverged(t, ns, events, 10*time.Second)
	events.settle()
	mark := len(events.all())
	published := time.Now() // the lifetimes' last reading is no later

	c.signal(t, syscall.SIGSTOP)
	ns.AddVethPairs(t, "s", 300)
	ip("addr", "del", "10.9.0.1", "peer", "10.9.0.3/32", "dev", "t0")
	ip("addr", "change", changed, "dev", "t0", "valid_lft", "2000", "preferred_lft", "1000")
	ip("addr", "del", inet6+"/64", "dev", "t0")
	ip("addr", "add", inet6+"/56", "dev", "t0", "nodad")
	ns.DelVethPairs(t, "s", 300)
	// Long enough for the kernel to report lifetimes seconds shorter.
	time.Sleep(time.Until(published.Add(3500 * time.Millisecond)))
	c.signal(t, syscall.SIGCONT)

	events.waitFor(mark, "the SYNC after the resync", func(m msg) bool { return m.str("reason") == "resync" })
	events.settle()
	if log := c.stderr.String(); !strings.Contains(log, "netlink overflow") {
		t.Fatalf("no overflow in the log, so nothing was lost and the resync was not tested:\n%s", log)
	}
	checkConverged(t, ns, events.all())

	// What was published for each of t0's addresses after SIGCONT, as
	// "TYPE", with the prefix length for the IPv6 one. (Resync messages
	// are dump messages, which carry no "changed".)
	after := map[string][]string{}
	for _, m := range events.all()[mark:] {
		if !strings.HasSuffix(m.str("type"), "ADDR") || m.obj("addr")["index"] != float64(v0) {
			continue
		}
		a := m.obj("addr")
		what := m.str("type")
		if a["id"] == inet6 {
			what += fmt.Sprintf(" /%v", a["prefix_len"])
		}
		id, _ := a["id"].(string)
		after[id] = append(after[id], what)
	}
	for _, tt := range []struct {
		id   string
		want []string
	}{
		{kept, nil},
		{deleted, []string{"DELADDR"}},
		{counting, nil},
		{changed, []string{"NEWADDR"}},
		{inet6, []string{"NEWADDR /56"}},
	} {
		if got := after[tt.id]; !slices.Equal(got, tt.want) {
			t.Errorf("after the resync, %s: published %q, want %q", tt.id, got, tt.want)
		}
	}

	// The lifetimes did count down.
	addrs, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.Index == v0 && kernelAddrKey(a) == fmt.Sprintf("%d %s", v0, counting) {
			if a.Attributes.CacheInfo.Valid > 997 {
				t.Errorf("%s has %d s of valid lifetime left, want it counted down", counting, a.Attributes.CacheInfo.Valid)
			}
		}
	}
	checkSeq(t, events.all())
}
