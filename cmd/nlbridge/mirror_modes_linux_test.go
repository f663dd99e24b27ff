//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/internal/proxytest"
	"github.com/nlbridge/nlbridge/mirror"
)

// mirrorMode is how nlbridge and a Mirror meet in a test: through the
// state bucket, or through the event stream and dump requests alone.
type mirrorMode struct {
	name   string
	bucket bool
}

// mirrorModes are the modes that the mirror tests run in, each as a
// subtest of its own.
var mirrorModes = []mirrorMode{{name: "bucket", bucket: true}, {name: "stream"}}

// server runs the test's NATS server: with JetStream in bucket mode; in
// stream mode without, so that neither side can use a bucket.
func (md mirrorMode) server(t *testing.T) *server.Server {
	t.Helper()
	if md.bucket {
		return jetStreamServer(t, 0, t.TempDir())
	}
	return startServer(t)
}

// config is testConfig with the bucket turned off in stream mode, and dump
// requests answered without the default second between them.
func (md mirrorMode) config(host string, ns *nstest.NS, url string) config.Config {
	cfg := testConfig(host, ns, url)
	if !md.bucket {
		cfg.KV.Bucket = ""
	}
	cfg.Dump.MinInterval = 100 * time.Millisecond
	return cfg
}

// file is the configuration file of an nlbridge run as a process (see
// startChild) with what config sets, plus a netlink receive buffer when
// rcvbuf is not empty.
func (md mirrorMode) file(host string, ns *nstest.NS, url, rcvbuf string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "host: %s\nnetlink:\n  netns: %s\n", host, ns.Path)
	if rcvbuf != "" {
		fmt.Fprintf(&b, "  receive_buffer: %s\n", rcvbuf)
	}
	fmt.Fprintf(&b, "nats:\n  servers: [%s]\ndump:\n  min_interval: 100ms\n", url)
	if !md.bucket {
		b.WriteString("kv:\n  bucket: \"\"\n")
	}
	return b.String()
}

// mirror starts a Mirror (see startMirror), checks that it reads what the
// mode says, and waits until it is ready.
func (md mirrorMode) mirror(t *testing.T, url string, opts ...mirror.Option) (*mirror.Mirror, *changeLog) {
	t.Helper()
	if md.bucket {
		// A Mirror reads the stream when the bucket does not exist yet.
		kvBucket(t, url)
	}
	m, changes := startMirror(t, url, opts...)
	if m.FromBucket() != md.bucket {
		t.Fatalf("the mirror reads the bucket: %v, want %v", m.FromBucket(), md.bucket)
	}
	select {
	case <-m.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("the mirror is not ready 15 s after it started")
	}
	return m, changes
}

// forModes runs f as a parallel subtest for each mode: every subtest has
// its own namespaces and servers, and most of their time is spent
// waiting.
func forModes(t *testing.T, f func(t *testing.T, md mirrorMode)) {
	for _, md := range mirrorModes {
		t.Run(md.name, func(t *testing.T) {
			nstest.SkipUnlessRoot(t)
			t.Parallel()
			f(t, md)
		})
	}
}

// TestIntegrationMirrorKernelTraps: in both modes, one nlbridge and one
// Mirror follow a namespace through a bridge port enslaved and released,
// IPv6 addresses dropped by a link going down and by `ip -6 addr flush`,
// a rename to a name that bucket keys escape, a move to another
// namespace, and a bridge deleted with a port. After each step the
// Mirror holds the kernel's links (name, MTU, master, up) and addresses
// (with their interface's name), and so does what its callback was told.
func TestIntegrationMirrorKernelTraps(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns, other := nstest.New(t), nstest.New(t)
		a0, a1 := ns.AddVeth(t, "a0", "a1")
		b0, b1 := ns.AddVeth(t, "b0", "b1")
		br := ns.AddBridge(t, "br0")
		ns.FastDAD(t, a0, a1, b0, b1, br)
		srv := md.server(t)
		host := "traps-" + md.name
		runBridge(t, context.Background(), md.config(host, ns, srv.ClientURL()))
		m, changes := md.mirror(t, srv.ClientURL())
		// follow waits for the Mirror to follow the kernel; step first
		// waits for the kernel to finish what the step started (DAD,
		// link-local addresses).
		follow := func(what string) {
			t.Helper()
			took := waitMirror(t, ns, m, changes, host, 10*time.Second)
			t.Logf("%s: converged in %v", what, took)
		}
		step := func(what string) {
			t.Helper()
			ns.WaitSettled(t, 10*time.Second)
			follow(what)
		}
		step("start")

		ns.AddAddr(t, a0, netip.MustParsePrefix("192.0.2.1/24"))
		ns.AddAddr(t, a0, netip.MustParsePrefix("2001:db8::1/64"))
		ns.SetMaster(t, a1, br)
		ns.SetMTU(t, a1, 9000)
		ns.SetUp(t, a0, true)
		ns.SetUp(t, a1, true)
		ns.SetUp(t, br, true)
		step("enslave")
		if h, _ := m.Host(host); h.Links[a1].Master != br {
			t.Fatalf("a1's master is %d, want br0 (%d)", h.Links[a1].Master, br)
		}

		ns.SetMaster(t, a1, 0)
		step("release")

		// Setting a link down drops its IPv6 addresses (2001:db8::1 and the
		// link-local one) and keeps its IPv4 ones.
		ns.SetUp(t, a0, false)
		for _, p := range []string{"2001:db8:b::1/64", "2001:db8:b::2/64", "198.51.100.1/24"} {
			ns.AddAddr(t, b0, netip.MustParsePrefix(p))
		}
		ns.SetUp(t, b0, true)
		ns.SetUp(t, b1, true)
		step("link down")
		// The flush takes b0's link-local address too, which the kernel
		// gives back only when b0 comes up again: the kernel is settled
		// once b0 is down.
		ip(t, ns, "-6", "addr", "flush", "dev", "b0")
		follow("ip -6 addr flush")
		if h, _ := m.Host(host); len(addrsOf(h, b0)) != 1 {
			t.Fatalf("b0 holds %v after the flush, want 198.51.100.1/24 only", addrsOf(h, b0))
		}
		ns.SetUp(t, b0, false)

		// A rename changes the interface name of the link's addresses
		// too, and moves all their keys in the bucket, whose writes
		// (deletions of the old keys, values of the new ones) reach the
		// Mirror in any order but each key's own.
		for i := range 8 {
			ns.AddAddr(t, a0, netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/24", i+1)))
		}
		for _, name := range []string{"wan.0", "lan.0", "wan.1", "lan.1", "wan.2", "lan.2", "wan.3", "wan.0"} {
			ns.Rename(t, a0, name)
			step("rename to " + name)
		}

		ns.SetMaster(t, a1, br)
		ns.MoveTo(t, a0, other) // takes its addresses out of the namespace
		step("netns move")
		ns.DelLink(t, br)
		step("bridge deleted")
	})
}

// addrsOf returns the ids of the addresses h holds on the link index.
func addrsOf(h mirror.Host, index uint32) []string {
	var ids []string
	for k := range h.Addrs {
		if k.Index == index {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// TestIntegrationMirrorOverflow: in both modes, nlbridge (a process of its
// own, with a 64 KiB socket buffer) is stopped with SIGSTOP while
// hundreds of links and addresses come and go, and its socket overflows;
// resumed, it resyncs, and the Mirror holds the kernel's state.
// So does a Mirror started while nlbridge was stopped.
func TestIntegrationMirrorOverflow(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns := nstest.New(t)
		v0, _ := ns.AddVeth(t, "k0", "k1")
		ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		gone, _ := ns.AddVeth(t, "k2", "k3")
		srv := md.server(t)
		host := "overflow-" + md.name
		c := startChild(t, md.file(host, ns, srv.ClientURL(), "64KiB"), nil)
		m, changes := md.mirror(t, srv.ClientURL())
		waitMirror(t, ns, m, changes, host, 15*time.Second)

		c.signal(t, syscall.SIGSTOP)
		ns.AddVethPairs(t, "s", 200)
		var del strings.Builder
		for i := range 100 {
			fmt.Fprintf(&del, "link del sa%d\n", i)
		}
		if _, err := ns.Command("ip", strings.NewReader(del.String()), "-batch", "-"); err != nil {
			t.Fatal(err)
		}
		ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
		ns.DelLink(t, gone)
		// A second Mirror starts in the middle of it, while nlbridge
		// cannot answer its dump request.
		late, lateChanges := startMirror(t, srv.ClientURL())
		if late.FromBucket() != md.bucket {
			t.Fatalf("the late mirror reads the bucket: %v, want %v", late.FromBucket(), md.bucket)
		}
		c.signal(t, syscall.SIGCONT)

		took := waitMirror(t, ns, m, changes, host, 30*time.Second)
		t.Logf("converged %v after SIGCONT", took)
		took = waitMirror(t, ns, late, lateChanges, host, 15*time.Second)
		t.Logf("the late mirror converged %v later", took)
		if log := c.stderr.String(); !strings.Contains(log, "netlink overflow") {
			t.Errorf("no overflow in nlbridge's log: the test tested nothing\n%s", log)
		}
	})
}

// TestIntegrationMirrorRestart: in both modes, links and addresses are
// deleted while nlbridge is stopped, and a link takes the name of a
// deleted one with another index. The Mirror, which keeps running, holds
// the kernel's state once nlbridge is back: from the bucket, whose stale
// keys the new run deletes; from the stream, by the repair, which drops
// what the new run's dump does not mention (it publishes no deletion).
func TestIntegrationMirrorRestart(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns := nstest.New(t)
		v0, _ := ns.AddVeth(t, "r0", "r1")
		v2, v3 := ns.AddVeth(t, "r2", "r3")
		ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.2/24"))
		ns.AddAddr(t, v2, netip.MustParsePrefix("198.51.100.1/24"))
		srv := md.server(t)
		host := "restart-" + md.name
		cfg := md.config(host, ns, srv.ClientURL())
		stop := runBridge(t, context.Background(), cfg)
		m, changes := md.mirror(t, srv.ClientURL())
		waitMirror(t, ns, m, changes, host, 10*time.Second)
		before, _ := m.Host(host)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if md.bucket {
			// A clean stop deletes the presence.
			waitGone(t, m, changes, host, 5*time.Second)
		}

		ns.DelLink(t, v2) // r2, r3 and 198.51.100.1
		ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.2/24"))
		ip(t, ns, "link", "add", "r2", "type", "veth", "peer", "name", "r4")
		if ns.Index(t, "r2") == v2 {
			t.Fatal("the new r2 has the old one's index")
		}
		runBridge(t, context.Background(), cfg)
		took := waitMirror(t, ns, m, changes, host, 15*time.Second)
		t.Logf("converged %v after the restart", took)
		after, _ := m.Host(host)
		if after.Boot == before.Boot || after.Gone {
			t.Errorf("after the restart: boot %s (before %s), gone %v", after.Boot, before.Boot, after.Gone)
		}
		if _, ok := after.Links[v3]; ok {
			t.Errorf("r3 (%d) is still in the mirror", v3)
		}
		if md.bucket {
			if n := changes.count("mirror.HostAppeared"); n != 2 {
				t.Errorf("the callback was told %d times that the host appeared, want 2 (start and restart)", n)
			}
		}
	})
}

// TestIntegrationMirrorOwnOutage: in both modes, the Mirror's own
// connection is silently broken while links and addresses change; once
// it has found out and reconnected, it holds the kernel's state: from the
// bucket, by the watcher resuming where it stopped; from the stream, by
// asking every host for a dump.
func TestIntegrationMirrorOwnOutage(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns := nstest.New(t)
		v0, _ := ns.AddVeth(t, "q0", "q1")
		ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		gone, _ := ns.AddVeth(t, "q2", "q3")
		ns.AddAddr(t, gone, netip.MustParsePrefix("203.0.113.1/24"))
		srv := md.server(t)
		proxy := proxytest.New(t, srv.Addr().String())
		host := "own-" + md.name
		runBridge(t, context.Background(), md.config(host, ns, srv.ClientURL()))
		m, changes := md.mirror(t, "nats://"+proxy.Addr())
		waitMirror(t, ns, m, changes, host, 10*time.Second)
		accepted := proxy.Accepted()

		proxy.Blackhole()
		ns.SetMTU(t, v0, 1400)
		ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
		ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		ns.AddVeth(t, "q4", "q5")
		ns.DelLink(t, gone)
		took := waitMirror(t, ns, m, changes, host, 20*time.Second)
		t.Logf("converged %v after the partition", took)
		if proxy.Accepted() == accepted {
			t.Error("the mirror never reconnected through the proxy, and the test tested nothing")
		}
	})
}
