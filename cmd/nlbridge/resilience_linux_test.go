//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/sink"
)

// serverOn runs a NATS server on 127.0.0.1:port (a random one for 0).
func serverOn(t *testing.T, port int) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", port
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

func portOf(s *server.Server) int {
	return int(netip.MustParseAddrPort(s.Addr().String()).Port())
}

// TestIntegrationSigstopStorm pauses nlbridge with SIGSTOP while thousands
// of links are created and deleted, so that its small socket buffer
// overflows; resumed, it must see the overflow, resync, and bring a
// consumer back to the kernel's state within seconds.
func TestIntegrationSigstopStorm(t *testing.T) {
	ns := nstest.New(t)
	events, c := startSmallBuffer(t, ns, "storm")

	c.signal(t, syscall.SIGSTOP)
	ns.AddVethPairs(t, "s", 1500)
	var del strings.Builder
	for i := range 700 {
		fmt.Fprintf(&del, "link del sa%d\n", i)
	}
	if _, err := ns.Command("ip", strings.NewReader(del.String()), "-batch", "-"); err != nil {
		t.Fatal(err)
	}
	c.signal(t, syscall.SIGCONT)

	took := waitConverged(t, ns, events, 30*time.Second)
	t.Logf("converged %v after SIGCONT, %d messages", took, len(events.all()))
	if took > 15*time.Second {
		t.Errorf("converging took %v, want seconds", took)
	}
	events.waitFor(0, "a SYNC after the resync", func(m msg) bool { return m.str("reason") == "resync" })
	if log := c.stderr.String(); !strings.Contains(log, "netlink overflow") {
		t.Errorf("no overflow in the log:\n%s", log)
	}
	all := events.all()
	checkSeq(t, all)
	checkDellinks(t, ns, all, nil)
}

// startSmallBuffer runs nlbridge as a child process named host on ns with a
// 64 KiB socket receive buffer, which a SIGSTOP and a burst of changes
// overflow, and a NATS server of its own; it returns the collector of the
// host's events once the startup dump is in, and the child.
func startSmallBuffer(t *testing.T, ns *nstest.NS, host string) (*collector, *child) {
	t.Helper()
	srv := startServer(t)
	events := collect(t, connect(t, srv), "netlink."+host+".>")
	c := startChild(t, fmt.Sprintf(`host: %s
netlink:
  netns: %s
  receive_buffer: 64KiB
nats:
  servers: [%s]
`, host, ns.Path, srv.ClientURL()), nil)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	return events, c
}

// outage is a bridge on a namespace publishing to a JetStream server whose
// stream a consumer reads, for tests that stop the server and start it
// again on the same port and store.
type outage struct {
	srv    *server.Server
	port   int
	store  string
	events *collector
}

// startOutage runs the bridge as host on ns against a JetStream server and
// waits for the startup dump.
func startOutage(t *testing.T, ns *nstest.NS, host string) *outage {
	t.Helper()
	o := &outage{store: t.TempDir()}
	o.srv = jetStreamServer(t, 0, o.store)
	o.port = portOf(o.srv)
	o.events = collectStream(t, makeStream(t, o.srv), "NETLINK")
	runBridge(t, context.Background(), testConfig(host, ns, o.srv.ClientURL()))
	o.events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	// Let the server confirm the startup dump (nlbridge flushes at most
	// every 200 ms while publishing); what it has not confirmed when it
	// goes down is published again after reconnecting.
	time.Sleep(time.Second)
	return o
}

// stop stops the server and gives the bridge a moment to notice.
func (o *outage) stop() {
	o.srv.Shutdown()
	o.srv.WaitForShutdown()
	time.Sleep(100 * time.Millisecond)
}

// restart starts the server again and returns the position of the SYNC
// reconnect that follows the messages before from.
func (o *outage) restart(t *testing.T, from int) int {
	t.Helper()
	o.srv = jetStreamServer(t, o.port, o.store)
	return o.events.waitFor(from, "SYNC reconnect", func(m msg) bool { return m.str("reason") == "reconnect" })
}

// TestIntegrationServerRestart kills the NATS server mid-stream and starts
// it again: nlbridge keeps reading the kernel, then publishes what changed
// meanwhile, once per object, and a SYNC "reconnect". The consumer reads a
// JetStream stream on the subjects, which keeps what arrives while the
// consumer itself is reconnecting.
func TestIntegrationServerRestart(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "r0", "r1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	o := startOutage(t, ns, "restart")
	before := len(o.events.all())

	o.stop()
	for mtu := uint32(1280); mtu < 1380; mtu++ {
		ns.SetMTU(t, v0, mtu) // a hundred changes: one message after
	}
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddVeth(t, "r2", "r3")

	at := o.restart(t, before)
	caughtUp := o.events.all()[before : at+1]
	if len(caughtUp) > 5 {
		t.Errorf("catching up took %d messages, want one per changed object (r0, r2, r3, the address) and the SYNC", len(caughtUp))
	}
	all := o.events.all()
	checkConverged(t, ns, all)
	checkSeq(t, all)
	checkDellinks(t, ns, all, nil)
}

// jetStreamServer runs a NATS server with JetStream, storing in dir.
func jetStreamServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", port
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.JetStream, opts.StoreDir = true, dir
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// TestIntegrationStartBeforeServer starts nlbridge with no server up: it
// must run, and publish the state once the server appears. The consumer
// reads a JetStream stream that exists from the server's first moment (it
// was made on an earlier run of the server with the same store), so that
// it cannot miss what nlbridge publishes as soon as it connects.
func TestIntegrationStartBeforeServer(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVeth(t, "b0", "b1")
	store := t.TempDir()
	probe := jetStreamServer(t, 0, store)
	port := portOf(probe)
	makeStream(t, probe)
	probe.Shutdown()
	probe.WaitForShutdown()

	cfg := testConfig("early", ns, fmt.Sprintf("nats://127.0.0.1:%d", port))
	runBridge(t, context.Background(), cfg)
	time.Sleep(300 * time.Millisecond) // the startup dump finds no server
	ns.AddVeth(t, "b2", "b3")

	srv := jetStreamServer(t, port, store)
	nc := connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	events := collectStream(t, js, "NETLINK")
	events.waitFor(0, "SYNC reconnect", func(m msg) bool { return m.str("reason") == "reconnect" })
	all := events.all()
	checkConverged(t, ns, all)
	checkSeq(t, all)
}

// makeStream creates the stream NETLINK on the subjects, deduplicating by
// Nats-Msg-Id within a minute.
func makeStream(t *testing.T, srv *server.Server) jetstream.JetStream {
	t.Helper()
	nc := connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "NETLINK", Subjects: []string{"netlink.>"}, Storage: jetstream.FileStorage, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	return js
}

// TestIntegrationShutdownRestart sends SIGTERM right after a burst: every
// event nlbridge read is published (no gap), it exits 0 within seconds, and
// a restart has a new boot, starts seq at 1 and dumps.
func TestIntegrationShutdownRestart(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.term.>")
	conf := fmt.Sprintf("host: term\nnetlink:\n  netns: %s\nnats:\n  servers: [%s]\n", ns.Path, srv.ClientURL())
	c := startChild(t, conf, nil)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	ns.AddVethPairs(t, "t", 100)
	c.signal(t, syscall.SIGTERM)
	start := time.Now()
	if err := c.wait(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("exit took %v after SIGTERM", took)
	}
	events.settle()
	first := events.all()
	checkSeq(t, first)
	t.Logf("published %d messages before exiting", len(first))

	c2 := startChild(t, conf, nil)
	at := waitChild(t, c2, events, len(first), "the second startup SYNC", 10*time.Second,
		func(m msg) bool { return m.str("reason") == "startup" })
	second := events.all()[len(first) : at+1]
	if second[0].num("seq") != 1 || second[0].str("boot") == first[0].str("boot") {
		t.Errorf("after restart: seq %v boot %s; before: boot %s", second[0].num("seq"), second[0].str("boot"), first[0].str("boot"))
	}
	checkSeq(t, second)
	checkConverged(t, ns, second)
	c2.signal(t, syscall.SIGTERM)
	if err := c2.wait(10 * time.Second); err != nil {
		t.Errorf("second exit: %v", err)
	}
}

// TestIntegrationRequestStorm fires hundreds of dump requests at once:
// every one is answered, far fewer dumps are published, and a narrowed
// request publishes one interface only.
func TestIntegrationRequestStorm(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "q", 20)
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.storm.>")
	cfg := testConfig("storm", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	cfg.Dump.MinInterval = 200 * time.Millisecond
	runBridge(t, context.Background(), cfg)
	for deadline := time.Now().Add(20 * time.Second); ; { // until the bridge is up
		_, err := nc.Request("nlbridge.storm.dump", nil, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	replies := make(chan sink.DumpReply, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := "nlbridge.storm.dump"
			if i%2 == 0 {
				subject = "nlbridge.dump" // fleet-wide
			}
			resp, err := nc.Request(subject, nil, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if code := resp.Header.Get(micro.ErrorCodeHeader); code != "" {
				errs <- fmt.Errorf("error %s: %s", code, resp.Header.Get(micro.ErrorHeader))
				return
			}
			var r sink.DumpReply
			if err := json.Unmarshal(resp.Data, &r); err != nil {
				errs <- err
				return
			}
			replies <- r
		}()
	}
	wg.Wait()
	close(errs)
	close(replies)
	for err := range errs {
		t.Error(err)
	}
	dumps := map[uint64]bool{}
	for r := range replies {
		dumps[r.LastSeq] = true
		if r.Links != 41 || r.Addrs != 80 {
			t.Errorf("reply %+v, want 41 links and 80 addresses", r)
		}
	}
	events.settle()
	syncs := 0
	for _, m := range events.all() {
		switch m.str("type") {
		case "SYNC":
			syncs++
		case "DELADDR", "DELLINK":
			t.Errorf("a dump published %s %v for an object that exists", m.subject, m.doc)
		}
	}
	t.Logf("%d requests answered by %d dumps (%d SYNCs published)", n, len(dumps), syncs)
	if len(dumps) > 10 || syncs > 11 {
		t.Errorf("%d requests caused %d dumps, want far fewer", n, len(dumps))
	}

	// One interface.
	from := len(events.all())
	resp, err := nc.Request("nlbridge.storm.dump", []byte(`{"interface":"qa3"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r sink.DumpReply
	if err := json.Unmarshal(resp.Data, &r); err != nil || r.Links != 1 || r.Addrs != 2 || r.Interface != "qa3" {
		t.Fatalf("narrowed reply %s: %+v, %v", resp.Data, r, err)
	}
	at := events.waitFor(from, "the narrowed SYNC", func(m msg) bool { return m.num("seq") == float64(r.LastSeq) })
	for _, m := range events.all()[from:at] {
		if !strings.Contains(m.subject, ".qa3.") {
			t.Errorf("narrowed dump published %s %v", m.subject, m.doc)
		}
	}
	if last := events.all()[at]; last.str("interface") != "qa3" {
		t.Errorf("narrowed SYNC = %v", last.doc)
	}
}

// TestIntegrationUnchangedNewlink: the kernel sends a NEWLINK when a field
// nlbridge does not publish changes (here the transmit queue length);
// nlbridge drops it, and says in "changed" what the next one changed.
func TestIntegrationUnchangedNewlink(t *testing.T) {
	ns := nstest.New(t)
	idx, _ := ns.AddVeth(t, "u0", "u1")
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.same.>")
	cfg := testConfig("same", ns, srv.ClientURL())
	runBridge(t, context.Background(), cfg)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })

	// The kernel's own notification, read beside nlbridge.
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	floor, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_LINK, NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer floor.Close()
	from := len(events.all())
	if _, err := ns.Command("ip", nil, "link", "set", "dev", "u0", "txqueuelen", "500"); err != nil {
		t.Fatal(err)
	}
	floor.SetReadDeadline(time.Now().Add(5 * time.Second))
	msgs, err := floor.Receive()
	if err != nil || len(msgs) == 0 || msgs[0].Header.Type != unix.RTM_NEWLINK {
		t.Fatalf("the kernel sent %v, %v; want a NEWLINK for the queue length", msgs, err)
	}
	ns.SetMTU(t, idx, 1400)
	at := events.waitFor(from, "NEWLINK u0 mtu 1400", func(m msg) bool { return m.subject == "netlink.same.link.u0.new" })
	got := events.all()[from:]
	if at != from || fmt.Sprint(got[0].doc["changed"]) != "[mtu]" || got[0].obj("link")["mtu"] != float64(1400) {
		t.Errorf("after the queue length and MTU changes: %d messages, first %v; want only the MTU change, changed [mtu]",
			len(got), got[0].doc)
	}
}
