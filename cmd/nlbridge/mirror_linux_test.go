//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/internal/proxytest"
	"github.com/nlbridge/nlbridge/mirror"
)

// view is what the tests compare between a Mirror and the kernel: each
// link by index with the fields a request changes at once (name, MTU,
// master, administrative state), and each address by index and id with
// the name of its interface. Fields that the kernel changes on its own
// later (operational state, carrier) are left out.
type view struct {
	links map[uint32]string
	addrs map[string]string
}

func linkView(name string, mtu, master uint32, up bool) string {
	return fmt.Sprintf("%s mtu %d master %d up %v", name, mtu, master, up)
}

func (v view) equal(o view) bool { return reflect.DeepEqual(v, o) }

func (v view) String() string {
	var b strings.Builder
	for _, i := range slices.Sorted(maps.Keys(v.links)) {
		fmt.Fprintf(&b, "\n    link %d: %s", i, v.links[i])
	}
	for _, k := range slices.Sorted(maps.Keys(v.addrs)) {
		fmt.Fprintf(&b, "\n    addr %s on %s", k, v.addrs[k])
	}
	return b.String()
}

// kernelView reads the namespace's links and addresses as a view.
func kernelView(t *testing.T, ns *nstest.NS) view {
	t.Helper()
	links, err := ns.Conn().Link.List()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	v := view{links: map[uint32]string{}, addrs: map[string]string{}}
	names := map[uint32]string{}
	for _, l := range links {
		names[l.Index] = l.Attributes.Name
		var master uint32
		if l.Attributes.Master != nil {
			master = *l.Attributes.Master
		}
		v.links[l.Index] = linkView(l.Attributes.Name, l.Attributes.MTU, master, l.Flags&unix.IFF_UP != 0)
	}
	for _, a := range addrs {
		v.addrs[kernelAddrKey(a)] = names[a.Index]
	}
	return v
}

// hostView is the view of a host's links and addresses in a Mirror.
func hostView(links map[uint32]event.Link, addrs map[mirror.AddrKey]event.Addr) view {
	v := view{links: map[uint32]string{}, addrs: map[string]string{}}
	for i, l := range links {
		v.links[i] = linkView(l.Name, l.MTU, l.Master, l.Enabled())
	}
	for k, a := range addrs {
		v.addrs[fmt.Sprintf("%d %s", k.Index, k.ID)] = a.Ifname
	}
	return v
}

// changeLog applies the changes a Mirror delivers, in order, as an
// application would, so that tests can check that they add up to the
// Mirror's state. It also checks each change against what it was told
// before: a link or address is added only when unknown, changed or
// removed only when known, a change names exactly the fields that differ
// (of those it checks), a removal carries the state last told, and a host
// appears and goes in turn. What breaks these rules fails the test.
type changeLog struct {
	t     testing.TB
	mu    sync.Mutex
	hosts map[string]*toldHost
	seen  map[string]int // change type → count
	gone  map[string]bool
	bad   []string
}

// toldHost is what the callback was told of a host.
type toldHost struct {
	present bool
	links   map[uint32]event.Link
	addrs   map[mirror.AddrKey]event.Addr
}

func newChangeLog(t testing.TB) *changeLog {
	c := &changeLog{t: t, hosts: map[string]*toldHost{}, seen: map[string]int{}, gone: map[string]bool{}}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, b := range c.bad {
			t.Error(b)
		}
	})
	return c
}

// fieldsDiffer checks that the field name is listed in changed exactly
// when old and new differ in it.
func (c *changeLog) fieldsDiffer(what string, changed []string, name string, differ bool) {
	if slices.Contains(changed, name) != differ {
		c.bad = append(c.bad, fmt.Sprintf("%s: changed %v, but %s differs: %v", what, changed, name, differ))
	}
}

func (c *changeLog) apply(ch mirror.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.hosts[ch.HostName()]
	if h == nil {
		h = &toldHost{links: map[uint32]event.Link{}, addrs: map[mirror.AddrKey]event.Addr{}}
		c.hosts[ch.HostName()] = h
	}
	c.seen[fmt.Sprintf("%T", ch)]++
	what := fmt.Sprintf("%s %T %+v", ch.HostName(), ch, ch)
	bad := func(why string) { c.bad = append(c.bad, what+": "+why) }
	switch ch := ch.(type) {
	case mirror.LinkAdded:
		if _, ok := h.links[ch.Link.Index]; ok {
			bad("the link was known")
		}
		h.links[ch.Link.Index] = ch.Link
	case mirror.LinkChanged:
		old, ok := h.links[ch.Link.Index]
		if !ok {
			bad("the link was not known")
		}
		if len(ch.Changed) == 0 {
			bad("no field changed")
		}
		c.fieldsDiffer(what, ch.Changed, "name", old.Name != ch.Link.Name)
		c.fieldsDiffer(what, ch.Changed, "mtu", old.MTU != ch.Link.MTU)
		c.fieldsDiffer(what, ch.Changed, "master", old.Master != ch.Link.Master)
		c.fieldsDiffer(what, ch.Changed, "enabled", old.Enabled() != ch.Link.Enabled())
		h.links[ch.Link.Index] = ch.Link
	case mirror.LinkRemoved:
		if old, ok := h.links[ch.Link.Index]; !ok {
			bad("the link was not known")
		} else if !reflect.DeepEqual(old, ch.Link) {
			bad(fmt.Sprintf("the last state told was %+v", old))
		}
		delete(h.links, ch.Link.Index)
	case mirror.AddrAdded:
		k := mirror.AddrKey{Index: ch.Addr.Index, ID: ch.Addr.ID()}
		if _, ok := h.addrs[k]; ok {
			bad("the address was known")
		}
		h.addrs[k] = ch.Addr
	case mirror.AddrChanged:
		k := mirror.AddrKey{Index: ch.Addr.Index, ID: ch.Addr.ID()}
		old, ok := h.addrs[k]
		if !ok {
			bad("the address was not known")
		}
		if len(ch.Changed) == 0 {
			bad("no field changed")
		}
		c.fieldsDiffer(what, ch.Changed, "ifname", old.Ifname != ch.Addr.Ifname)
		c.fieldsDiffer(what, ch.Changed, "flags", old.Flags != ch.Addr.Flags)
		h.addrs[k] = ch.Addr
	case mirror.AddrRemoved:
		k := mirror.AddrKey{Index: ch.Addr.Index, ID: ch.Addr.ID()}
		if old, ok := h.addrs[k]; !ok {
			bad("the address was not known")
		} else if !reflect.DeepEqual(old, ch.Addr) {
			bad(fmt.Sprintf("the last state told was %+v", old))
		}
		delete(h.addrs, k)
	case mirror.HostAppeared:
		if h.present {
			bad("the host was present")
		}
		h.present = true
		c.gone[ch.Host] = false
	case mirror.HostGone:
		if !h.present {
			bad("the host was not present")
		}
		h.present = false
		c.gone[ch.Host] = true
	default:
		bad("unknown change")
	}
}

// told returns whether the callback's view of host holds exactly the
// links and addresses of h, every field, and says how it differs if not.
func (c *changeLog) told(host string, h mirror.Host) (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	th := c.hosts[host]
	if th == nil {
		th = &toldHost{}
	}
	links := reflect.DeepEqual(th.links, h.Links) || len(th.links) == 0 && len(h.Links) == 0
	addrs := reflect.DeepEqual(th.addrs, h.Addrs) || len(th.addrs) == 0 && len(h.Addrs) == 0
	if links && addrs {
		return true, ""
	}
	return false, hostView(th.links, th.addrs).String()
}

// count returns how many changes of type typ (such as
// "mirror.HostAppeared") were delivered.
func (c *changeLog) count(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[typ]
}

// startMirror runs a Mirror on its own connection until the test ends. The
// connection pings every second, so that it finds a silent break within
// seconds.
func startMirror(t *testing.T, url string, opts ...mirror.Option) (*mirror.Mirror, *changeLog) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	changes := newChangeLog(t)
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

// waitMirror waits until the Mirror's state of host equals the kernel's,
// the host is synced, and the changes delivered add up to the Mirror's
// state, field for field; it returns how long that took.
func waitMirror(t *testing.T, ns *nstest.NS, m *mirror.Mirror, changes *changeLog, host string, timeout time.Duration) time.Duration {
	t.Helper()
	return waitMirrorView(t, func() view { return kernelView(t, ns) }, m, changes, host, timeout)
}

// waitMirrorView is waitMirror against the view that want returns.
func waitMirrorView(t *testing.T, want func() view, m *mirror.Mirror, changes *changeLog, host string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		w := want()
		h, _ := m.Host(host)
		got := hostView(h.Links, h.Addrs)
		told, toldView := changes.told(host, h)
		if got.equal(w) && told && h.Synced {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			if told {
				toldView = "the same as the mirror"
			}
			t.Fatalf("the mirror of %s did not converge within %v (synced %v)\n  mirror:%v\ncallback:%v\n  kernel:%v",
				host, timeout, h.Synced, got, toldView, w)
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
	// The churn's changes to its new links may reach the callback
	// coalesced into their additions; a change to a link it was told of
	// before is a LinkChanged.
	ns.SetMTU(t, v0, 1400)
	waitMirror(t, ns, m, changes, "mstream", 10*time.Second)

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

// TestIntegrationMirrorStorm: in both modes, a Mirror started while
// hundreds of veth pairs come and go holds the kernel's state once the
// storm is over, with no help from the application.
func TestIntegrationMirrorStorm(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns := nstest.New(t)
		srv := md.server(t)
		host := "storm-" + md.name
		runBridge(t, context.Background(), md.config(host, ns, srv.ClientURL()))
		waitStartup(t, srv, host)

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
		if m.FromBucket() != md.bucket {
			t.Fatalf("the mirror reads the bucket: %v, want %v", m.FromBucket(), md.bucket)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		took := waitMirror(t, ns, m, changes, host, 20*time.Second)
		t.Logf("converged %v after the storm", took)
	})
}

// TestIntegrationMirrorOutage: in both modes, nlbridge's connection is
// silently broken while links and addresses change; once it reconnects and
// repairs, the Mirror (whose own connection never broke) holds the
// kernel's state.
func TestIntegrationMirrorOutage(t *testing.T) {
	forModes(t, func(t *testing.T, md mirrorMode) {
		ns := nstest.New(t)
		v0, _ := ns.AddVeth(t, "p0", "p1")
		ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		gone, _ := ns.AddVeth(t, "p2", "p3")
		ns.AddAddr(t, gone, netip.MustParsePrefix("203.0.113.1/24"))
		srv := md.server(t)
		proxy := proxytest.New(t, srv.Addr().String())
		host := "outage-" + md.name
		runBridge(t, context.Background(), md.config(host, ns, "nats://"+proxy.Addr()))
		m, changes := md.mirror(t, srv.ClientURL())
		waitMirror(t, ns, m, changes, host, 10*time.Second)
		time.Sleep(500 * time.Millisecond) // let the server confirm what it has

		proxy.Blackhole()
		for mtu := uint32(1400); mtu < 1410; mtu++ {
			ns.SetMTU(t, v0, mtu)
		}
		ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
		ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
		ns.AddVeth(t, "p4", "p5")
		ns.DelLink(t, gone)
		took := waitMirror(t, ns, m, changes, host, 25*time.Second)
		t.Logf("converged %v after the partition", took)
		if proxy.Accepted() < 2 {
			t.Errorf("nlbridge connected %d times through the proxy: it never reconnected, and the test tested nothing", proxy.Accepted())
		}
	})
}

// TestIntegrationMirrorBucket: two bridges (JSON and CBOR) on two
// namespaces share a server and its bucket; a Mirror of "mb-*" holds each
// host's kernel state separately, ignores other hosts, follows changes,
// and keeps a host's last state when it goes: stopped (its presence is
// deleted) or silent (its presence expires).
func TestIntegrationMirrorBucket(t *testing.T) {
	nsA, nsB := nstest.New(t), nstest.New(t)
	a0, _ := nsA.AddVeth(t, "a0", "a1")
	nsA.AddAddr(t, a0, netip.MustParsePrefix("192.0.2.1/24"))
	b0, _ := nsB.AddVeth(t, "b0", "b1")
	nsB.AddAddr(t, b0, netip.MustParsePrefix("2001:db8::b/64"))
	srv := jetStreamServer(t, 0, t.TempDir())
	cfgA := testConfig("mb-a", nsA, srv.ClientURL())
	cfgA.KV.PresenceTTL = 3 * time.Second
	cfgB := testConfig("mb-b", nsB, srv.ClientURL())
	cfgB.KV.PresenceTTL = 3 * time.Second
	cfgB.Encoding = config.EncodingCBOR
	runBridge(t, context.Background(), cfgA)
	stopB := runBridge(t, context.Background(), cfgB)
	kv := kvBucket(t, srv.ClientURL())
	waitBucket(t, nsA, kv, "mb-a", 10*time.Second)
	// bucketState reads JSON only: wait for mb-b's presence, written
	// after its startup dump.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := kv.Get(context.Background(), "mb-b.presence"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("mb-b.presence: %v", err)
		}
	}
	// A host the filter leaves out, and one whose presence will expire.
	ctx := context.Background()
	if _, err := kv.Put(ctx, "other.presence", []byte(`{"host":"other","boot":"1","version":"x","started":"2026-01-01T00:00:00Z","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "mb-c.presence", []byte(`{"host":"mb-c","boot":"c","version":"x","started":"2026-01-01T00:00:00Z","seq":1}`), jetstream.KeyTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}

	m, changes := startMirror(t, srv.ClientURL(), mirror.WithHosts("mb-*"))
	if !m.FromBucket() {
		t.Fatal("the mirror does not read the bucket")
	}
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror is not ready 10 s after it started")
	}
	waitMirror(t, nsA, m, changes, "mb-a", 5*time.Second)
	waitMirror(t, nsB, m, changes, "mb-b", 5*time.Second)
	if _, ok := m.Host("other"); ok {
		t.Error("the mirror holds host other, which mb-* does not match")
	}
	if h, _ := m.Host("mb-a"); h.Gone || h.Boot == "" || h.Version == "" || h.Started.IsZero() || h.LastSeen.IsZero() {
		t.Errorf("mb-a's presence: gone %v boot %q version %q started %v last seen %v", h.Gone, h.Boot, h.Version, h.Started, h.LastSeen)
	}

	churn(t, nsA, "c")
	took := waitMirror(t, nsA, m, changes, "mb-a", 10*time.Second)
	t.Logf("mb-a converged %v after the churn", took)
	waitMirror(t, nsB, m, changes, "mb-b", time.Second)

	// mb-c's presence expires: gone, as the callback is told.
	waitGone(t, m, changes, "mb-c", 15*time.Second)

	// mb-b stops: its presence is deleted, its last state stays.
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, m, changes, "mb-b", 10*time.Second)
	waitMirror(t, nsB, m, changes, "mb-b", time.Second)
	if h, _ := m.Host("mb-a"); h.Gone {
		t.Error("mb-a is gone too")
	}
	if got := m.Snapshot(); len(got) != 3 {
		t.Errorf("snapshot holds %d hosts, want mb-a, mb-b and mb-c", len(got))
	}
}

// waitGone waits until the mirror says host is gone, and the callback was
// told.
func waitGone(t *testing.T, m *mirror.Mirror, changes *changeLog, host string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		h, _ := m.Host(host)
		changes.mu.Lock()
		told := changes.gone[host]
		changes.mu.Unlock()
		if h.Gone && told {
			t.Logf("%s gone after %v", host, time.Since(start))
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s not gone within %v (mirror says %v, callback told %v)", host, timeout, h.Gone, told)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
