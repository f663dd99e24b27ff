//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// ip runs ip(8) with args inside ns and fails t if it fails.
func ip(t *testing.T, ns *nstest.NS, args ...string) {
	t.Helper()
	if _, err := ns.Command("ip", nil, args...); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationIndexReusedDuringOutage deletes, while the NATS server is
// down, a link with an address and creates another with the same index
// (as `ip link add ... index N`, SR-IOV and namespace moves do), and
// creates and deletes links that nlbridge never got to publish. After the
// server is back, consumers must get the old link's DELLINK before the new
// one's NEWLINK (or they would keep its address), and no DELLINK at all
// for links they never heard of.
func TestIntegrationIndexReusedDuringOutage(t *testing.T) {
	ns := nstest.New(t)
	old, _ := ns.AddVeth(t, "o0", "o1")
	ns.AddAddr(t, old, netip.MustParsePrefix("192.0.2.1/24"))
	o := startOutage(t, ns, "reuse")
	events := o.events
	before := len(events.all())

	o.stop()
	ip(t, ns, "link", "del", "o0")
	ip(t, ns, "link", "add", "name", "n0", "index", fmt.Sprint(old), "type", "veth", "peer", "name", "n1")
	ns.AddAddr(t, old, netip.MustParsePrefix("198.51.100.1/24"))
	ns.AddVethPairs(t, "z", 30)
	ns.DelVethPairs(t, "z", 30)

	at := o.restart(t, before)
	all := events.all()
	caughtUp := all[before : at+1]
	t.Logf("after the outage: %s", describe(caughtUp))
	del, add := -1, -1
	for i, m := range caughtUp {
		if m.obj("link") == nil || uint32(m.obj("link")["index"].(float64)) != old {
			continue
		}
		switch m.str("type") {
		case "DELLINK":
			if m.obj("link")["name"] != "o0" {
				t.Errorf("the DELLINK of index %d names %v, want o0, the link consumers hold", old, m.obj("link")["name"])
			}
			del = i
		case "NEWLINK":
			add = i
		}
	}
	if del < 0 || add < del {
		t.Errorf("index %d: DELLINK at %d, NEWLINK at %d of the catch-up; want the DELLINK first", old, del, add)
	}
	for _, m := range caughtUp {
		if strings.Contains(m.subject, ".za") || strings.Contains(m.subject, ".zb") {
			t.Errorf("published %s for a link created and deleted during the outage", m.subject)
		}
	}
	if len(caughtUp) > 8 {
		t.Errorf("catching up took %d messages, want the o0 and o1 DELLINKs, n0 and n1, n0's address and the SYNC", len(caughtUp))
	}
	checkConverged(t, ns, all)
	checkSeq(t, all)
	checkDellinks(t, ns, all, map[uint32]int{old: 1})
}

// TestIntegrationFilterRename renames a published link out of the
// interface filter and back in: leaving is a DELLINK, entering is a
// NEWLINK with the link's addresses, including one added while it was out.
func TestIntegrationFilterRename(t *testing.T) {
	ns := nstest.New(t)
	idx, _ := ns.AddVeth(t, "keep1", "peer1")
	ns.AddAddr(t, idx, netip.MustParsePrefix("192.0.2.1/24"))
	srv := startServer(t)
	events := collect(t, connect(t, srv), "netlink.flt.>")
	cfg := testConfig("flt", ns, srv.ClientURL())
	cfg.Filter.Include = []string{"keep*"}
	runBridge(t, context.Background(), cfg)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	checkConvergedKeep(t, ns, events.all())

	from := len(events.all())
	ns.Rename(t, idx, "other1")
	events.waitFor(from, "the DELLINK of keep1", func(m msg) bool { return m.subject == "netlink.flt.link.keep1.del" })
	checkConvergedKeep(t, ns, events.all())

	ns.AddAddr(t, idx, netip.MustParsePrefix("198.51.100.1/24"))
	from = len(events.all())
	ns.Rename(t, idx, "keep2")
	events.waitFor(from, "the NEWADDR 198.51.100.1 on keep2", func(m msg) bool {
		return m.subject == "netlink.flt.addr.keep2.new" && m.obj("addr")["address"] == "198.51.100.1"
	})
	all := events.all()
	for _, m := range all {
		if strings.Contains(m.subject, "other1") || strings.Contains(m.subject, "peer1") {
			t.Errorf("published %s, which the filter leaves out", m.subject)
		}
	}
	checkConvergedKeep(t, ns, all)
	checkSeq(t, all)
}

// checkConvergedKeep compares the consumer's state with the kernel's links
// named keep* and their addresses.
func checkConvergedKeep(t *testing.T, ns *nstest.NS, msgs []msg) {
	t.Helper()
	got, want := apply(msgs), kernelState(t, ns)
	for i, name := range want.links {
		if !strings.HasPrefix(name, "keep") {
			delete(want.links, i)
			for k := range want.addrs {
				if strings.HasPrefix(k, fmt.Sprintf("%v ", i)) {
					delete(want.addrs, k)
				}
			}
		}
	}
	if fmt.Sprint(got.links) != fmt.Sprint(want.links) || fmt.Sprint(got.addrs) != fmt.Sprint(want.addrs) {
		t.Errorf("consumer holds %v %v; the kernel's keep* links are %v %v", got.links, got.addrs, want.links, want.addrs)
	}
}
