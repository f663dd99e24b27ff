//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/internal/proxytest"
	"github.com/nlbridge/nlbridge/mirror"
)

// mirrorState is a host's state in a Mirror, keyed as kernelState keys the
// kernel's: links by index (with their names), addresses by index and id.
func mirrorState(h mirror.Host) state {
	s := state{links: map[float64]string{}, addrs: map[string]bool{}}
	for i, l := range h.Links {
		s.links[float64(i)] = l.Name
	}
	for k := range h.Addrs {
		s.addrs[fmt.Sprintf("%d %s", k.Index, k.ID)] = true
	}
	return s
}

// changeLog applies the changes a Mirror delivers, as an application
// would, so that tests can check that they add up to the Mirror's state.
type changeLog struct {
	mu    sync.Mutex
	hosts map[string]*state
	seen  map[string]int // change type → count
	gone  map[string]bool
}

func newChangeLog() *changeLog {
	return &changeLog{hosts: map[string]*state{}, seen: map[string]int{}, gone: map[string]bool{}}
}

func (c *changeLog) apply(ch mirror.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.hosts[ch.HostName()]
	if s == nil {
		s = &state{links: map[float64]string{}, addrs: map[string]bool{}}
		c.hosts[ch.HostName()] = s
	}
	c.seen[fmt.Sprintf("%T", ch)]++
	switch ch := ch.(type) {
	case mirror.LinkAdded:
		s.links[float64(ch.Link.Index)] = ch.Link.Name
	case mirror.LinkChanged:
		s.links[float64(ch.Link.Index)] = ch.Link.Name
	case mirror.LinkRemoved:
		delete(s.links, float64(ch.Link.Index))
	case mirror.AddrAdded:
		s.addrs[fmt.Sprintf("%d %s", ch.Addr.Index, ch.Addr.ID())] = true
	case mirror.AddrRemoved:
		delete(s.addrs, fmt.Sprintf("%d %s", ch.Addr.Index, ch.Addr.ID()))
	case mirror.HostAppeared:
		c.gone[ch.Host] = false
	case mirror.HostGone:
		c.gone[ch.Host] = true
	}
}

func (c *changeLog) state(host string) state {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := state{links: map[float64]string{}, addrs: map[string]bool{}}
	if h := c.hosts[host]; h != nil {
		for k, v := range h.links {
			s.links[k] = v
		}
		for k := range h.addrs {
			s.addrs[k] = true
		}
	}
	return s
}

// startMirror runs a Mirror on its own connection until the test ends.
func startMirror(t *testing.T, url string, opts ...mirror.Option) (*mirror.Mirror, *changeLog) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	changes := newChangeLog()
	m, err := mirror.New(nc, append([]mirror.Option{mirror.WithChanges(changes.apply), mirror.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, changes
}

// waitMirror waits until the Mirror's state of host, and the state its
// changes add up to, equal the kernel's, and returns how long that took.
func waitMirror(t *testing.T, ns *nstest.NS, m *mirror.Mirror, changes *changeLog, host string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		want := kernelState(t, ns)
		h, _ := m.Host(host)
		got := mirrorState(h)
		told := changes.state(host)
		if got.equal(want) && told.equal(want) && h.Synced {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("the mirror of %s did not converge within %v (synced %v)\n  mirror %v %v\ncallback %v %v\n  kernel %v %v",
				host, timeout, h.Synced, got.links, got.addrs, told.links, told.addrs, want.links, want.addrs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// churn adds, changes and deletes links and addresses.
func churn(t *testing.T, ns *nstest.NS, prefix string) {
	t.Helper()
	a, b := ns.AddVeth(t, prefix+"0", prefix+"1")
	ns.AddAddr(t, a, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, a, netip.MustParsePrefix("2001:db8::1/64"))
	ns.AddAddr(t, b, netip.MustParsePrefix("198.51.100.1/24"))
	ns.SetMTU(t, a, 9000)
	ns.Rename(t, b, prefix+".x")
	ns.DelAddr(t, a, netip.MustParsePrefix("192.0.2.1/24"))
	c, _ := ns.AddVeth(t, prefix+"2", prefix+"3")
	ns.AddAddr(t, c, netip.MustParsePrefix("203.0.113.1/24"))
	ns.DelLink(t, c) // and its peer
}

// TestIntegrationMirrorStream: with no bucket, a Mirror started after
// nlbridge (CBOR) holds the kernel's links and addresses, after churn, and
// after a restart of nlbridge during which links and addresses were
// deleted (which the new run's startup dump does not publish: the repair
// must drop them).
func TestIntegrationMirrorStream(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "m0", "m1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.10/24"))
	v2, _ := ns.AddVeth(t, "m2", "m3")
	ns.AddAddr(t, v2, netip.MustParsePrefix("198.51.100.10/24"))
	srv := startServer(t)
	cfg := testConfig("mstream", ns, srv.ClientURL())
	cfg.KV.Bucket = ""
	cfg.Encoding = config.EncodingCBOR
	cfg.Dump.MinInterval = 100 * time.Millisecond
	stop := runBridge(t, context.Background(), cfg)
	waitStartup(t, srv, "mstream")

	m, changes := startMirror(t, srv.ClientURL())
	if m.FromBucket() {
		t.Fatal("the mirror reads a bucket on a server without JetStream")
	}
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror is not ready 10 s after it started")
	}
	waitMirror(t, ns, m, changes, "mstream", 5*time.Second)

	churn(t, ns, "c")
	took := waitMirror(t, ns, m, changes, "mstream", 10*time.Second)
	t.Logf("converged %v after the churn", took)

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ns.DelLink(t, v2)
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.10/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.11/24"))
	before, _ := m.Host("mstream")
	runBridge(t, context.Background(), cfg)
	took = waitMirror(t, ns, m, changes, "mstream", 10*time.Second)
	after, _ := m.Host("mstream")
	if after.Boot == before.Boot {
		t.Errorf("boot %s did not change with the restart", after.Boot)
	}
	t.Logf("converged %v after the restart; changes delivered: %v", took, changes.seen)
	for _, typ := range []string{"mirror.HostAppeared", "mirror.LinkAdded", "mirror.LinkChanged", "mirror.LinkRemoved", "mirror.AddrAdded", "mirror.AddrRemoved"} {
		if changes.seen[typ] == 0 {
			t.Errorf("no %s delivered", typ)
		}
	}
}

// waitStartup waits for host's startup SYNC.
func waitStartup(t *testing.T, srv interface{ ClientURL() string }, host string) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The bridge may have published it already: ask for a dump instead
	// of waiting for a message, which also says the service is up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := nc.Request("nlbridge."+host+".dump", nil, 5*time.Second)
		if err == nil && msg.Header.Get("Nats-Service-Error-Code") == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answers no dump request: %v", host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationMirrorStorm: a Mirror started while hundreds of veth
// pairs come and go holds the kernel's state once the storm is over.
func TestIntegrationMirrorStorm(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	cfg := testConfig("mstorm", ns, srv.ClientURL())
	cfg.KV.Bucket = ""
	runBridge(t, context.Background(), cfg)
	waitStartup(t, srv, "mstorm")

	done := make(chan error, 1)
	go func() {
		var batch strings.Builder
		for i := range 300 {
			fmt.Fprintf(&batch, "link add st%d type veth peer name su%d\n", i, i)
			if i%3 == 0 {
				fmt.Fprintf(&batch, "addr add 10.%d.%d.1/24 dev st%d\n", i/256, i%256, i)
			}
		}
		for i := range 150 {
			fmt.Fprintf(&batch, "link del st%d\n", 2*i)
		}
		_, err := ns.Command("ip", strings.NewReader(batch.String()), "-batch", "-")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // in the middle of it
	m, changes := startMirror(t, srv.ClientURL())
	select {
	case err := <-done:
		t.Fatalf("the storm was over before the mirror started (%v): nothing was tested", err)
	default:
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := waitMirror(t, ns, m, changes, "mstorm", 20*time.Second)
	t.Logf("converged %v after the storm", took)
}

// TestIntegrationMirrorOutage: nlbridge's connection is silently broken
// while links and addresses change; once it reconnects and repairs, the
// Mirror (whose own connection never broke) holds the kernel's state.
func TestIntegrationMirrorOutage(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "p0", "p1")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	gone, _ := ns.AddVeth(t, "p2", "p3")
	srv := startServer(t)
	proxy := proxytest.New(t, srv.Addr().String())
	cfg := testConfig("moutage", ns, "nats://"+proxy.Addr())
	cfg.KV.Bucket = ""
	runBridge(t, context.Background(), cfg)
	waitStartup(t, srv, "moutage")
	m, changes := startMirror(t, srv.ClientURL())
	waitMirror(t, ns, m, changes, "moutage", 10*time.Second)
	time.Sleep(500 * time.Millisecond) // let the server confirm what it has

	proxy.Blackhole()
	for mtu := uint32(1400); mtu < 1410; mtu++ {
		ns.SetMTU(t, v0, mtu)
	}
	ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddVeth(t, "p4", "p5")
	ns.DelLink(t, gone)
	took := waitMirror(t, ns, m, changes, "moutage", 25*time.Second)
	t.Logf("converged %v after the partition", took)
}
