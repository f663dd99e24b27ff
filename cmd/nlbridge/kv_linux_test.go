//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/sink"
)

// kvBucket returns the bucket "netlink" on url, waiting for nlbridge to
// create it.
func kvBucket(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		kv, err := js.KeyValue(ctx, "netlink")
		cancel()
		if err == nil {
			return kv
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket netlink: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bucketState decodes host's keys as a consumer's state: links by index
// and name, addresses by index and id. A key that does not name its
// value's object is an error.
func bucketState(kv jetstream.KeyValue, host string) (state, error) {
	s := state{links: map[float64]string{}, addrs: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := kv.WatchFiltered(ctx, []string{host + ".link.>", host + ".addr.>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return s, err
	}
	defer w.Stop()
	addrKeys := map[string]map[string]any{} // key → address
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return s, ctx.Err()
		}
		if e == nil {
			// An address is filed under its link's name and its id.
			for key, a := range addrKeys {
				name, ok := s.links[a["index"].(float64)]
				if want := host + ".addr." + sink.EscapeToken(name) + "." + sink.EscapeToken(a["id"].(string)); ok && key != want {
					return s, fmt.Errorf("address %v under key %s, want %s", a["id"], key, want)
				}
			}
			return s, nil
		}
		m, err := decodePayload(&nats.Msg{Header: nats.Header{"Content-Type": {"application/json"}}, Data: e.Value()})
		if err != nil {
			return s, fmt.Errorf("%s: %w", e.Key(), err)
		}
		v := msg{doc: m}
		switch {
		case v.str("type") == "NEWLINK" && strings.HasPrefix(e.Key(), host+".link."):
			s.links[v.obj("link")["index"].(float64)] = v.obj("link")["name"].(string)
			if want := host + ".link." + sink.EscapeToken(v.obj("link")["name"].(string)); e.Key() != want {
				return s, fmt.Errorf("key %s holds link %v", e.Key(), v.obj("link")["name"])
			}
		case v.str("type") == "NEWADDR" && strings.HasPrefix(e.Key(), host+".addr."):
			s.addrs[consumerAddrKey(v.obj("addr"))] = true
			addrKeys[e.Key()] = v.obj("addr")
		default:
			return s, fmt.Errorf("key %s holds a %s", e.Key(), v.str("type"))
		}
	}
}

// waitBucket waits until host's keys hold the kernel's links and
// addresses, and returns how long that took.
func waitBucket(t *testing.T, ns *nstest.NS, kv jetstream.KeyValue, host string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, err := bucketState(kv, host)
		want := kernelState(t, ns)
		if err == nil && got.equal(want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("the bucket did not converge within %v: %v\n got %v %v\nwant %v %v", timeout, err,
				got.links, got.addrs, want.links, want.addrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIntegrationKVStorm: nlbridge stopped with SIGSTOP while thousands of
// links come and go overflows its socket; resumed, it resyncs, and the
// bucket holds exactly the kernel's links and addresses.
func TestIntegrationKVStorm(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "k0", "k1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	srv := jetStreamServer(t, 0, t.TempDir())
	c := startChild(t, fmt.Sprintf(`host: kvstorm
netlink:
  netns: %s
  receive_buffer: 64KiB
nats:
  servers: [%s]
`, ns.Path, srv.ClientURL()), nil)
	kv := kvBucket(t, srv.ClientURL())
	waitBucket(t, ns, kv, "kvstorm", 10*time.Second)

	c.signal(t, syscall.SIGSTOP)
	ns.AddVethPairs(t, "s", 500)
	var del strings.Builder
	for i := range 250 {
		fmt.Fprintf(&del, "link del sa%d\n", i)
	}
	if _, err := ns.Command("ip", strings.NewReader(del.String()), "-batch", "-"); err != nil {
		t.Fatal(err)
	}
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
	c.signal(t, syscall.SIGCONT)
	took := waitBucket(t, ns, kv, "kvstorm", 30*time.Second)
	t.Logf("the bucket converged %v after SIGCONT", took)
	if log := c.stderr.String(); !strings.Contains(log, "netlink overflow") {
		t.Errorf("no overflow in the log:\n%s", log)
	}
}

// TestIntegrationKVOutage: the server, with the bucket in file storage,
// restarts while links and addresses change; the bucket survives and
// nlbridge catches it up.
func TestIntegrationKVOutage(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "o0", "o1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	store := t.TempDir()
	srv := jetStreamServer(t, 0, store)
	port := portOf(srv)
	runBridge(t, context.Background(), testConfig("kvout", ns, srv.ClientURL()))
	kv := kvBucket(t, srv.ClientURL())
	waitBucket(t, ns, kv, "kvout", 10*time.Second)
	// Let the server confirm the startup dump: what it has not confirmed
	// when it goes down is published, and written, again.
	time.Sleep(time.Second)
	lo, err := kv.Get(context.Background(), "kvout.link.lo")
	if err != nil {
		t.Fatal(err)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	time.Sleep(100 * time.Millisecond)
	for mtu := uint32(1280); mtu < 1380; mtu++ {
		ns.SetMTU(t, v0, mtu)
	}
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
	ns.DelLink(t, ns.Index(t, "o1")) // takes o0 with it
	v2, _ := ns.AddVeth(t, "o2", "o3")
	ns.AddAddr(t, v2, netip.MustParsePrefix("203.0.113.1/24"))

	srv = jetStreamServer(t, port, store)
	kv = kvBucket(t, srv.ClientURL())
	waitBucket(t, ns, kv, "kvout", 15*time.Second)
	again, err := kv.Get(context.Background(), "kvout.link.lo")
	if err != nil {
		t.Fatal(err)
	}
	if again.Revision() != lo.Revision() {
		t.Errorf("lo's key has revision %d after the restart, %d before: the bucket did not survive, or lo was written again",
			again.Revision(), lo.Revision())
	}
}

// TestIntegrationKVRestart: links and addresses deleted while nlbridge was
// down leave the bucket at its next start, and their deletions are part
// of the startup dump.
func TestIntegrationKVRestart(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "r0", "r1")
	v2, _ := ns.AddVeth(t, "r2", "r3")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.2/24"))
	ns.AddAddr(t, v2, netip.MustParsePrefix("198.51.100.1/24"))
	srv := jetStreamServer(t, 0, t.TempDir())
	cfg := testConfig("kvrestart", ns, srv.ClientURL())
	stop := runBridge(t, context.Background(), cfg)
	kv := kvBucket(t, srv.ClientURL())
	waitBucket(t, ns, kv, "kvrestart", 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	ns.DelLink(t, v2) // r2, r3 and 198.51.100.1
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.2/24"))
	ip(t, ns, "link", "add", "r2", "type", "veth", "peer", "name", "r4") // r2 again, another index
	events := collect(t, connect(t, srv), "netlink.kvrestart.>")
	runBridge(t, context.Background(), cfg)
	at := events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	all := events.all()
	dels := map[string]bool{}
	for _, m := range all[:at] {
		switch m.str("type") {
		case "DELLINK":
			dels[m.obj("link")["name"].(string)] = true
		case "DELADDR":
			dels[m.obj("addr")["address"].(string)] = true
		}
	}
	if !dels["r2"] || !dels["r3"] || !dels["192.0.2.2"] || len(dels) != 3 {
		t.Errorf("deletions in the startup dump: %v, want r2, r3 and 192.0.2.2", dels)
	}
	checkConverged(t, ns, all[:at+1])
	waitBucket(t, ns, kv, "kvrestart", 10*time.Second)
}

// TestIntegrationKVPresence: a killed nlbridge's presence expires within
// the TTL and a watcher sees it go; SIGTERM deletes it at once.
func TestIntegrationKVPresence(t *testing.T) {
	ns := nstest.New(t)
	srv := jetStreamServer(t, 0, t.TempDir())
	conf := fmt.Sprintf("host: pres\nnetlink:\n  netns: %s\nnats:\n  servers: [%s]\nkv:\n  presence_ttl: 3s\n", ns.Path, srv.ClientURL())
	watch := func(kv jetstream.KeyValue) jetstream.KeyWatcher {
		w, err := kv.Watch(context.Background(), "pres.presence")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Stop() })
		return w
	}
	// gone waits for the presence key to be written by boot, then to go.
	gone := func(w jetstream.KeyWatcher, killed func(), within time.Duration, op jetstream.KeyValueOp) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		var start time.Time
		for {
			select {
			case e := <-w.Updates():
				if e == nil {
					continue
				}
				if e.Operation() == jetstream.KeyValuePut {
					if start.IsZero() {
						var p struct{ Boot string }
						if err := json.Unmarshal(e.Value(), &p); err != nil || p.Boot == "" {
							t.Fatalf("presence %s: %v", e.Value(), err)
						}
						killed()
						start = time.Now()
					}
					continue
				}
				if start.IsZero() {
					continue // a deletion from an earlier run
				}
				if d := time.Since(start); d > within || e.Operation() != op {
					t.Errorf("presence went %v after (%s), want within %v (%s)", d, e.Operation(), within, op)
				} else {
					t.Logf("presence went %v after (%s)", d, e.Operation())
				}
				return
			case <-timeout:
				t.Fatal("presence did not go")
			}
		}
	}
	c := startChild(t, conf, nil)
	kv := kvBucket(t, srv.ClientURL())
	// Killed: the TTL's expiry marker (a purge).
	gone(watch(kv), func() { c.signal(t, syscall.SIGKILL) }, 3*time.Second+2*time.Second, jetstream.KeyValuePurge)
	c.wait(5 * time.Second)

	c = startChild(t, conf, nil)
	// Stopped: nlbridge deletes it itself, before the TTL could (the
	// operation tells them apart; the time allows for a loaded machine).
	gone(watch(kv), func() { c.signal(t, syscall.SIGTERM) }, 2*time.Second, jetstream.KeyValueDelete)
	if err := c.wait(10 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestIntegrationKVKernelTraps: the bucket follows the kernel through a
// bridge enslave and release, a rename (which moves the link's address
// keys) to a name that needs escaping, a move to another namespace, IPv6
// addresses dropped by setting a link down, and a bridge deleted with a
// port.
func TestIntegrationKVKernelTraps(t *testing.T) {
	ns, other := nstest.New(t), nstest.New(t)
	a0, a1 := ns.AddVeth(t, "a0", "a1")
	br := ns.AddBridge(t, "br0")
	srv := jetStreamServer(t, 0, t.TempDir())
	runBridge(t, context.Background(), testConfig("kvtraps", ns, srv.ClientURL()))
	kv := kvBucket(t, srv.ClientURL())
	waitBucket(t, ns, kv, "kvtraps", 10*time.Second)

	ns.AddAddr(t, a0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, a0, netip.MustParsePrefix("2001:db8::1/64"))
	ns.SetMaster(t, a1, br)
	ns.SetUp(t, a0, true)
	ns.SetUp(t, a1, true)
	ns.SetUp(t, br, true)
	waitBucket(t, ns, kv, "kvtraps", 10*time.Second)

	ns.SetMaster(t, a1, 0)
	ns.SetUp(t, a0, false) // drops 2001:db8::1 (and the link-local address)
	ns.Rename(t, a0, "wan.0")
	ns.AddAddr(t, a0, netip.MustParsePrefix("198.51.100.1/24"))
	waitBucket(t, ns, kv, "kvtraps", 10*time.Second)
	if _, err := kv.Get(context.Background(), "kvtraps.addr.wan=2E0.192=2E0=2E2=2E1=2F24"); err != nil {
		t.Errorf("192.0.2.1 after the rename of a0 to wan.0: %v", err)
	}

	ns.SetMaster(t, a1, br)
	ns.MoveTo(t, a0, other) // takes its addresses out of the namespace
	ns.DelLink(t, br)
	waitBucket(t, ns, kv, "kvtraps", 10*time.Second)
}
