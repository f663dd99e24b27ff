//go:build linux

package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/internal/proxytest"
)

// TestIntegrationInflightLoss partitions nlbridge from its NATS server
// without closing the connection: a proxy between them keeps the TCP
// connection up but drops everything on it. What nlbridge publishes then
// is taken by the NATS client and never reaches the server. nlbridge must
// find the connection dead within seconds, connect again (the proxy
// forwards new connections), and publish the current state of every
// object whose message was lost, then SYNC reconnect, so that a consumer
// of the server holds the kernel's state again.
func TestIntegrationInflightLoss(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "f0", "f1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	gone, _ := ns.AddVeth(t, "f2", "f3")
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.inflight.>")
	proxy := proxytest.New(t, srv.Addr().String())
	runBridge(t, context.Background(), testConfig("inflight", ns, "nats://"+proxy.Addr()))
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	// Give the server time to confirm the startup dump (a flush at most
	// every 200 ms), so that the partition loses only what follows.
	time.Sleep(time.Second)
	before := len(events.all())

	proxy.Blackhole()
	start := time.Now()
	for mtu := uint32(1400); mtu < 1410; mtu++ {
		ns.SetMTU(t, v0, mtu)
	}
	ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddVeth(t, "f4", "f5")
	ns.DelLink(t, gone) // and its peer f3

	for proxy.Accepted() < 2 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("nlbridge did not connect again within 20 s of the partition")
		}
		time.Sleep(20 * time.Millisecond)
	}
	detected := time.Since(start)
	events.waitFor(before, "SYNC reconnect", func(m msg) bool { return m.str("reason") == "reconnect" })
	converged := waitConverged(t, ns, events, 10*time.Second)
	t.Logf("connected again %v after the partition; converged %v later", detected, converged)

	all := events.all()
	gap := false
	for i := before; i < len(all); i++ {
		gap = gap || all[i].num("seq") != all[i-1].num("seq")+1
	}
	if !gap {
		t.Errorf("no gap in seq after the partition: nothing was lost, so nothing was tested")
	}
	checkConverged(t, ns, all)
	checkDellinks(t, ns, all, nil)
}
