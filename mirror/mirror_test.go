package mirror

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
)

// runServer runs an in-process NATS server until t ends.
func runServer(t testing.TB, jetStream bool) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Port = server.RANDOM_PORT
	if jetStream {
		opts.JetStream, opts.StoreDir = true, t.TempDir()
	}
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fakeBridge publishes a host's events as nlbridge does, and answers its
// dump requests, without a kernel. Tests lose messages on purpose.
type fakeBridge struct {
	t    testing.TB
	nc   *nats.Conn
	enc  encode.Encoder
	host string

	mu    sync.Mutex
	boot  string
	seq   uint64
	subj  sink.Subjects
	links map[uint32]event.Link
	addrs map[AddrKey]event.Addr
	dumps int
	fail  int // dump requests to answer 503 before serving one
}

func newFakeBridge(t testing.TB, nc *nats.Conn, host string, enc encode.Encoder) *fakeBridge {
	b := &fakeBridge{t: t, nc: nc, enc: enc, host: host, boot: "boot1",
		subj:  sink.NewSubjects("netlink", "nlbridge", host),
		links: map[uint32]event.Link{}, addrs: map[AddrKey]event.Addr{}}
	sub, err := nc.Subscribe(b.subj.HostDump(), b.serveDump)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	fleet, err := nc.Subscribe(b.subj.FleetDump(), b.serveDump)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return b
}

// emit applies ev to the bridge's state and publishes it, or only uses
// its seq when lose is set. Callers hold mu.
func (b *fakeBridge) emit(ev event.Event, lose bool) uint64 {
	switch ev.Type {
	case event.NewLink:
		b.links[ev.Link.Index] = ev.Link
	case event.DelLink:
		delete(b.links, ev.Link.Index)
		for k := range b.addrs {
			if k.Index == ev.Link.Index {
				delete(b.addrs, k)
			}
		}
	case event.NewAddr:
		b.addrs[AddrKey{ev.Addr.Index, ev.Addr.ID()}] = ev.Addr
	case event.DelAddr:
		delete(b.addrs, AddrKey{ev.Addr.Index, ev.Addr.ID()})
	}
	b.seq++
	if lose {
		return b.seq
	}
	b.publish(ev, b.seq)
	return b.seq
}

// publish sends ev with the given seq. Callers hold mu.
func (b *fakeBridge) publish(ev event.Event, seq uint64) {
	ev.Host, ev.Boot, ev.Seq, ev.Time = b.host, b.boot, seq, time.Unix(1, 0).UTC()
	data, err := b.enc.Append(nil, &ev)
	if err != nil {
		b.t.Error(err)
		return
	}
	m := &nats.Msg{Subject: string(b.subj.Append(nil, &ev)), Data: data,
		Header: nats.Header{"Content-Type": {b.enc.ContentType()}}}
	if err := b.nc.PublishMsg(m); err != nil {
		b.t.Error(err)
	}
}

func (b *fakeBridge) do(ev event.Event, lose bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.emit(ev, lose)
}

// restart starts a new boot: seqs restart and nothing is published.
func (b *fakeBridge) restart(boot string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boot, b.seq = boot, 0
}

// serveDump publishes every object, a SYNC, and the reply, as a requested
// dump does (without the deletions).
func (b *fakeBridge) serveDump(req *nats.Msg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dumps++
	if b.fail > 0 {
		b.fail--
		m := nats.NewMsg(req.Reply)
		m.Header.Set(micro.ErrorCodeHeader, "503")
		m.Header.Set(micro.ErrorHeader, "try again")
		_ = req.RespondMsg(m)
		return
	}
	first := b.seq + 1
	for _, i := range slices.Sorted(maps.Keys(b.links)) {
		b.emit(event.Event{Type: event.NewLink, Dump: true, Link: b.links[i]}, false)
	}
	for _, a := range b.addrs {
		b.emit(event.Event{Type: event.NewAddr, Dump: true, Addr: a}, false)
	}
	last := b.emit(event.Event{Type: event.Sync, Sync: event.SyncInfo{Reason: event.ReasonRequest, FirstSeq: first}}, false)
	data, _ := json.Marshal(sink.DumpReply{Host: b.host, Boot: b.boot, Links: len(b.links), Addrs: len(b.addrs), FirstSeq: first, LastSeq: last})
	_ = b.nc.Flush()
	_ = req.Respond(data)
}

func link(index uint32, name string, mtu uint32) event.Link {
	return event.Link{Index: index, Name: name, Kind: "veth", State: event.OperState(2), MTU: mtu}
}

func addr(index uint32, ifname, prefix string) event.Addr {
	p := netip.MustParsePrefix(prefix)
	f := event.Inet
	if p.Addr().Is6() {
		f = event.Inet6
	}
	return event.Addr{Index: index, Ifname: ifname, Family: f, Address: p.Addr(), PrefixLen: uint8(p.Bits()),
		ValidLft: event.Forever, PreferredLft: event.Forever}
}

// waitState waits until the mirror's view of host equals the bridge's.
func waitState(t *testing.T, m *Mirror, b *fakeBridge, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, _ := m.Host(b.host)
		b.mu.Lock()
		want := fmt.Sprint(b.links, b.addrs)
		b.mu.Unlock()
		got := fmt.Sprint(h.Links, h.Addrs)
		if got == want && h.Synced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the mirror holds\n%s (synced %v), want\n%s", what, got, h.Synced, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamRepair follows the repair recipe through a gap, a new boot
// (whose dump does not publish what vanished) and duplicates, in both
// encodings.
func TestStreamRepair(t *testing.T) {
	for _, enc := range []encode.Encoder{encode.JSON{}, encode.CBOR{}} {
		t.Run(enc.ContentType(), func(t *testing.T) {
			srv := runServer(t, false)
			b := newFakeBridge(t, connect(t, srv), "h1", enc)
			b.do(event.Event{Type: event.NewLink, Link: link(1, "lo", 65536)}, false)
			b.do(event.Event{Type: event.NewLink, Link: link(2, "eth0", 1500)}, false)
			b.do(event.Event{Type: event.NewAddr, Addr: addr(2, "eth0", "192.0.2.1/24")}, false)

			m, err := New(connect(t, srv), WithBucket(""), func(o *options) { o.fleetWait = 200 * time.Millisecond })
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			<-m.Ready()
			waitState(t, m, b, "after the fleet dump")

			// A lost DELLINK, then a message: the gap is repaired, and the
			// repair drops eth0, which its dump did not mention.
			b.do(event.Event{Type: event.DelLink, Link: link(2, "eth0", 1500)}, true)
			b.do(event.Event{Type: event.NewLink, Link: link(3, "eth1", 1500)}, false)
			waitState(t, m, b, "after a gap")

			// A restart with eth1 deleted meanwhile: the new boot's dump
			// lists what exists, and the mirror drops eth1.
			b.restart("boot2")
			delete(b.links, 3)
			b.do(event.Event{Type: event.NewAddr, Addr: addr(1, "lo", "2001:db8::1/64")}, false)
			waitState(t, m, b, "after a restart")

			// A duplicate (an old seq) is skipped.
			b.mu.Lock()
			b.publish(event.Event{Type: event.NewLink, Link: link(9, "old", 1500)}, 1)
			b.mu.Unlock()
			b.do(event.Event{Type: event.NewLink, Link: link(4, "eth2", 1500)}, false)
			waitState(t, m, b, "after a duplicate")
			if _, ok := m.Snapshot()["h1"].Links[9]; ok {
				t.Error("a duplicate was applied")
			}
		})
	}
}

// TestSlowCallback: a callback that blocks neither blocks the Mirror's
// state nor makes a queue grow: it then sees the current state, coalesced.
func TestSlowCallback(t *testing.T) {
	srv := runServer(t, false)
	b := newFakeBridge(t, connect(t, srv), "h1", encode.JSON{})
	b.do(event.Event{Type: event.NewLink, Link: link(2, "eth0", 1000)}, false)
	release := make(chan struct{})
	var mu sync.Mutex
	var got []Change
	m, err := New(connect(t, srv), WithBucket(""), WithChanges(func(c Change) {
		<-release
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}), func(o *options) { o.fleetWait = 100 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-m.Ready()
	for mtu := uint32(1001); mtu <= 3000; mtu++ {
		b.do(event.Event{Type: event.NewLink, Changed: 1 << 5, Link: link(2, "eth0", mtu)}, false)
	}
	// The callback is stuck on its first change; the state is current.
	waitState(t, m, b, "with the callback blocked")
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n, last := len(got), Change(nil)
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if c, ok := last.(LinkChanged); ok && c.Link.MTU == 3000 {
			if n > 5 {
				t.Errorf("the callback got %d changes for 2,000 MTU changes; want them coalesced", n)
			}
			if !slices.Equal(c.Changed, []string{"mtu"}) {
				t.Errorf("LinkChanged.Changed = %v, want [mtu]", c.Changed)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the callback's last change is %#v, want eth0 with MTU 3000", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOptions checks what New refuses.
func TestOptions(t *testing.T) {
	for _, opts := range [][]Option{
		{WithPrefix("")},
		{WithPrefix("a.*")},
		{WithControl("a..b")},
		{WithHosts("[")},
	} {
		o := options{prefix: "netlink", control: "nlbridge"}
		for _, opt := range opts {
			opt(&o)
		}
		if err := o.valid(); err == nil {
			t.Errorf("%+v is valid", o)
		}
	}
}

// TestRetry: failed dump requests are retried until one succeeds.
func TestRetry(t *testing.T) {
	srv := runServer(t, false)
	b := newFakeBridge(t, connect(t, srv), "h1", encode.JSON{})
	b.fail = 3 // the fleet request's, and two of the mirror's
	b.do(event.Event{Type: event.NewLink, Link: link(1, "lo", 65536)}, false)
	m, err := New(connect(t, srv), WithBucket(""), func(o *options) { o.fleetWait = 100 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b.do(event.Event{Type: event.NewLink, Link: link(2, "eth0", 1500)}, false)
	waitState(t, m, b, "after failed dump requests")
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dumps != 4 {
		t.Errorf("%d dump requests, want 4 (the fleet's, two failures, a success)", b.dumps)
	}
}

// TestReconnect: what the mirror's connection missed while the server was
// down is repaired once it is back, without waiting for a gap.
func TestReconnect(t *testing.T) {
	opts := natsserver.DefaultTestOptions
	opts.Port = server.RANDOM_PORT
	srv := natsserver.RunServer(&opts)
	t.Cleanup(func() { srv.Shutdown() })
	url := srv.ClientURL()
	dial := func() *nats.Conn {
		nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	bnc := dial()
	b := newFakeBridge(t, bnc, "h1", encode.CBOR{})
	b.do(event.Event{Type: event.NewLink, Link: link(1, "lo", 65536)}, false)
	b.do(event.Event{Type: event.NewLink, Link: link(2, "eth0", 1500)}, false)
	mnc := dial()
	m, err := New(mnc, WithBucket(""), func(o *options) { o.fleetWait = 100 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-m.Ready()
	waitState(t, m, b, "before the outage")

	opts.Port = srv.Addr().(*net.TCPAddr).Port
	srv.Shutdown()
	srv.WaitForShutdown()
	b.do(event.Event{Type: event.DelLink, Link: link(2, "eth0", 1500)}, true)
	b.do(event.Event{Type: event.NewLink, Link: link(3, "eth1", 1500)}, true)
	srv = natsserver.RunServer(&opts)
	waitState(t, m, b, "after the outage")
	if mnc.Stats().Reconnects == 0 {
		t.Error("the mirror's connection never reconnected: nothing was tested")
	}
}
