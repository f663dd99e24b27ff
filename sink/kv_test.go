package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// runJetStream runs a server with JetStream, its store in dir.
func runJetStream(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", port
	opts.JetStream, opts.StoreDir = true, dir
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

func portOf(s *server.Server) int {
	return int(s.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
}

// kvTestTTL is the presence TTL of the tests' sinks.
const kvTestTTL = 3 * time.Second

func newKVSink(t *testing.T, url, host string, log *syncBuffer) *NATS {
	t.Helper()
	return newKVSinkLog(t, url, host, log, nil)
}

// newKVSinkConfig is newKVSink with a change to the bucket's configuration.
func newKVSinkConfig(t *testing.T, url, host string, change func(*KVConfig)) *NATS {
	t.Helper()
	return newKVSinkLog(t, url, host, nil, change)
}

func newKVSinkLog(t *testing.T, url, host string, log *syncBuffer, change func(*KVConfig)) *NATS {
	t.Helper()
	logger := discard()
	if log != nil {
		logger = slog.New(slog.NewTextHandler(log, nil))
	}
	kvc := KVConfig{Bucket: "netlink", Replicas: 1, Memory: false, PresenceTTL: kvTestTTL, Version: "1.2.3"}
	if change != nil {
		change(&kvc)
	}
	s, err := Connect(Config{Servers: []string{url}, Name: "test", Host: host,
		Subjects: NewSubjects("netlink", "nlbridge", host), Encoder: encode.JSON{}, Logger: logger, KV: kvc})
	if err != nil {
		t.Fatal(err)
	}
	closeAtCleanup(t, s)
	return s
}

// bucket connects to url's bucket "netlink".
func bucket(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		kv, err := js.KeyValue(ctx, "netlink")
		if err == nil {
			return kv
		}
		if ctx.Err() != nil {
			t.Fatalf("bucket netlink: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// contents returns host's link and address keys, each as "key=summary"
// of its decoded value, sorted; or an error.
func contents(kv jetstream.KeyValue, host string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := kv.WatchFiltered(ctx, []string{host + ".link.>", host + ".addr.>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []string
	for e := range w.Updates() {
		if e == nil {
			break
		}
		ev, err := encode.Decode("application/json", e.Value())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key(), err)
		}
		out = append(out, e.Key()+"="+summary(&ev))
	}
	slices.Sort(out)
	return out, nil
}

// summary is what the tests compare of a stored value.
func summary(ev *event.Event) string {
	if ev.Type.IsLink() {
		return fmt.Sprintf("%s %d %s mtu %d", ev.Type, ev.Link.Index, ev.Link.Name, ev.Link.MTU)
	}
	return fmt.Sprintf("%s %d %s %s", ev.Type, ev.Addr.Index, ev.Addr.Ifname, ev.Addr.ID())
}

// waitContents waits until host's keys are want.
func waitContents(t *testing.T, kv jetstream.KeyValue, host string, want []string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = contents(kv, host); err == nil && slices.Equal(got, want) {
			return
		}
	}
	t.Fatalf("bucket for %s:\n got %q (%v)\nwant %q", host, got, err, want)
}

// The bucket holds what consumers hold after churn: updates, addresses
// added and deleted, a rename (which moves the link's addresses), a
// DELLINK (which takes its addresses), and escaped names.
func TestKVMirrorsChurn(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	s := newKVSink(t, srv.ClientURL(), "h.1", nil)
	dump(s, event.ReasonStartup, "",
		linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0.100", 1500),
		linkEv(event.NewLink, 3, "eth1", 1500), linkEv(event.NewLink, 4, "eth2", 1500),
		addrEv(event.NewAddr, 2, "eth0.100", "10.0.0.1/24"), addrEv(event.NewAddr, 3, "eth1", "fe80::1/64"),
		addrEv(event.NewAddr, 3, "eth1", "192.0.2.1/24"), addrEv(event.NewAddr, 4, "eth2", "198.51.100.1/24"))
	kv := bucket(t, srv.ClientURL())
	waitContents(t, kv, "h=2E1", []string{
		"h=2E1.link.lo=NEWLINK 1 lo mtu 65536",
		"h=2E1.link.eth0=2E100=NEWLINK 2 eth0.100 mtu 1500",
		"h=2E1.link.eth1=NEWLINK 3 eth1 mtu 1500",
		"h=2E1.link.eth2=NEWLINK 4 eth2 mtu 1500",
		"h=2E1.addr.eth0=2E100.10=2E0=2E0=2E1=2F24=NEWADDR 2 eth0.100 10.0.0.1/24",
		"h=2E1.addr.eth1.fe80=3A=3A1=NEWADDR 3 eth1 fe80::1",
		"h=2E1.addr.eth1.192=2E0=2E2=2E1=2F24=NEWADDR 3 eth1 192.0.2.1/24",
		"h=2E1.addr.eth2.198=2E51=2E100=2E1=2F24=NEWADDR 4 eth2 198.51.100.1/24",
	})

	for i := range 100 {
		s.Handle(linkEv(event.NewLink, 1, "lo", 1000+uint32(i)))
	}
	s.Handle(addrEv(event.DelAddr, 2, "eth0.100", "10.0.0.1/24"))
	s.Handle(addrEv(event.NewAddr, 2, "eth0.100", "10.0.0.2/24"))
	s.Handle(linkEv(event.NewLink, 3, "wan", 1500))  // rename: eth1's addresses move
	s.Handle(linkEv(event.DelLink, 4, "eth2", 1500)) // its address goes with it
	s.Handle(linkEv(event.NewLink, 5, "eth2", 9000)) // a new link with the name
	s.Handle(addrEv(event.NewAddr, 3, "wan", "192.0.2.9/24"))
	waitContents(t, kv, "h=2E1", []string{
		"h=2E1.link.lo=NEWLINK 1 lo mtu 1099",
		"h=2E1.link.eth0=2E100=NEWLINK 2 eth0.100 mtu 1500",
		"h=2E1.link.wan=NEWLINK 3 wan mtu 1500",
		"h=2E1.link.eth2=NEWLINK 5 eth2 mtu 9000",
		"h=2E1.addr.eth0=2E100.10=2E0=2E0=2E2=2F24=NEWADDR 2 eth0.100 10.0.0.2/24",
		"h=2E1.addr.wan.fe80=3A=3A1=NEWADDR 3 wan fe80::1",
		"h=2E1.addr.wan.192=2E0=2E2=2E1=2F24=NEWADDR 3 wan 192.0.2.1/24",
		"h=2E1.addr.wan.192=2E0=2E2=2E9=2F24=NEWADDR 3 wan 192.0.2.9/24",
	})

	// A value is the payload published: its seq and boot are the
	// message's.
	e, err := kv.Get(context.Background(), "h=2E1.link.lo")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := encode.Decode("application/json", e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Boot != s.Boot() || ev.Host != "h.1" || ev.Seq < 100 {
		t.Errorf("stored NEWLINK: boot %s host %s seq %d, want boot %s, host h.1 and a seq of the updates",
			ev.Boot, ev.Host, ev.Seq, s.Boot())
	}
	if st := s.KVStats(); !st.Enabled || !st.Reachable || st.Writes == 0 || st.Pending != 0 {
		t.Errorf("KVStats = %+v", st)
	}
}

// While JetStream is down, the changes are kept, one per key, and written
// with their current values once it is back.
func TestKVOutage(t *testing.T) {
	dir := t.TempDir()
	srv := runJetStream(t, server.RANDOM_PORT, dir)
	port := portOf(srv)
	logs := new(syncBuffer)
	s := newKVSink(t, srv.ClientURL(), "h", logs)
	dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 2, "eth0", 1500), linkEv(event.NewLink, 3, "eth1", 1500),
		addrEv(event.NewAddr, 3, "eth1", "192.0.2.1/24"))
	kv := bucket(t, srv.ClientURL())
	waitContents(t, kv, "h", []string{"h.link.eth0=NEWLINK 2 eth0 mtu 1500", "h.link.eth1=NEWLINK 3 eth1 mtu 1500",
		"h.addr.eth1.192=2E0=2E2=2E1=2F24=NEWADDR 3 eth1 192.0.2.1/24"})

	srv.Shutdown()
	srv.WaitForShutdown()
	for deadline := time.Now().Add(5 * time.Second); s.Conn().IsConnected() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 500 {
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1000+uint32(i)))
	}
	s.Handle(linkEv(event.DelLink, 3, "eth1", 1500))
	s.Handle(linkEv(event.NewLink, 4, "eth2", 1500))
	// Nothing reached NATS: nothing is marked. After reconnecting, the
	// reconcile publishes one message per object, and one mark each.
	if st := s.KVStats(); st.Pending != 0 {
		t.Errorf("KVStats = %+v while disconnected, want nothing pending", st)
	}

	srv = runJetStream(t, port, dir)
	kv = bucket(t, srv.ClientURL())
	waitContents(t, kv, "h", []string{"h.link.eth0=NEWLINK 2 eth0 mtu 1499", "h.link.eth2=NEWLINK 4 eth2 mtu 1500"})
	for deadline := time.Now().Add(5 * time.Second); !s.KVStats().Reachable && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.KVStats(); !st.Reachable || st.Pending != 0 {
		t.Errorf("KVStats = %+v, want reachable with nothing pending", st)
	}
}

// A server without JetStream: one warning, and events keep flowing.
func TestKVNoJetStream(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	logs := new(syncBuffer)
	s := newKVSink(t, srv.ClientURL(), "h", logs)
	for i := range 5 {
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1000+uint32(i)))
		time.Sleep(100 * time.Millisecond)
	}
	next(t, ch, 5)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "no JetStream") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
	next(t, ch, 1)
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(logs.String(), "no JetStream"); n != 1 {
		t.Errorf("logged %d warnings about JetStream, want 1:\n%s", n, logs)
	}
	// Six changes of one link wait as one key, with the latest value.
	if st := s.KVStats(); st.Reachable || st.Pending != 1 {
		t.Errorf("KVStats = %+v, want unreachable with 1 key pending", st)
	}
}

// A new boot removes the keys of what the kernel lost while nlbridge was
// down, publishing their deletions within the startup dump; a link whose
// index or name was reused is deleted and published again.
func TestKVStartupStale(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	first := newKVSink(t, url, "h", nil)
	kv := bucket(t, url)
	dump(first, event.ReasonStartup, "",
		linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "gone", 1500),
		linkEv(event.NewLink, 3, "reused", 1500), linkEv(event.NewLink, 4, "moved", 1500),
		addrEv(event.NewAddr, 1, "lo", "127.0.0.1/8"), addrEv(event.NewAddr, 1, "lo", "127.0.0.2/8"),
		addrEv(event.NewAddr, 2, "gone", "192.0.2.1/24"), addrEv(event.NewAddr, 4, "moved", "192.0.2.4/24"))
	waitContents(t, kv, "h", []string{
		"h.link.lo=NEWLINK 1 lo mtu 65536", "h.link.gone=NEWLINK 2 gone mtu 1500",
		"h.link.reused=NEWLINK 3 reused mtu 1500", "h.link.moved=NEWLINK 4 moved mtu 1500",
		"h.addr.lo.127=2E0=2E0=2E1=2F8=NEWADDR 1 lo 127.0.0.1/8", "h.addr.lo.127=2E0=2E0=2E2=2F8=NEWADDR 1 lo 127.0.0.2/8",
		"h.addr.gone.192=2E0=2E2=2E1=2F24=NEWADDR 2 gone 192.0.2.1/24",
		"h.addr.moved.192=2E0=2E2=2E4=2F24=NEWADDR 4 moved 192.0.2.4/24",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// While nlbridge was down: "gone" went with its address, lo lost
	// 127.0.0.2, index 3 went to "other", and "moved" was created again
	// with index 7.
	ch := listen(t, url)
	second := newKVSink(t, url, "h", nil)
	sync := dump(second, event.ReasonStartup, "",
		linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 3, "other", 1500),
		linkEv(event.NewLink, 7, "moved", 1500), addrEv(event.NewAddr, 1, "lo", "127.0.0.1/8"))
	if sync.Seq == 0 {
		t.Fatal("the startup dump was not published")
	}
	got := next(t, ch, int(sync.Seq))
	var dels []string
	for _, r := range got[4:] {
		dels = append(dels, r.String())
	}
	want := []string{
		"DELADDR netlink.h.addr.lo.del", "DELLINK netlink.h.link.gone.del", "DELLINK netlink.h.link.reused.del",
		"DELLINK netlink.h.link.moved.del", "NEWLINK netlink.h.link.other.new", "SYNC netlink.h.sync",
	}
	if !slices.Equal(dels, want) {
		t.Errorf("after the dump's objects: %v, want %v", dels, want)
	}
	if r := got[len(got)-1]; r.First != 1 || r.Reason != "startup" {
		t.Errorf("SYNC %+v, want the dump's range from seq 1", r)
	}
	for _, r := range got[4 : len(got)-1] {
		if !r.Dump {
			t.Errorf("%s is not marked as a dump message", r)
		}
	}
	waitContents(t, kv, "h", []string{
		"h.link.lo=NEWLINK 1 lo mtu 65536", "h.link.other=NEWLINK 3 other mtu 1500",
		"h.link.moved=NEWLINK 7 moved mtu 1500", "h.addr.lo.127=2E0=2E0=2E1=2F8=NEWADDR 1 lo 127.0.0.1/8",
	})
	quiet(t, ch)
	// The keys the reconciliation marked are let go, map and all: a map
	// cleared keeps its size.
	second.mu.Lock()
	marked := second.kv.quiet
	second.mu.Unlock()
	if marked != nil {
		t.Errorf("after the startup, %d stale keys (and their map) are still held", len(marked))
	}
}

// The bucket is unreachable at startup: the stale keys are removed, and
// their deletions published with a SYNC of their own, once it is.
func TestKVStartupLate(t *testing.T) {
	dir := t.TempDir()
	srv := runJetStream(t, server.RANDOM_PORT, dir)
	url := srv.ClientURL()
	first := newKVSink(t, url, "h", nil)
	kv := bucket(t, url)
	dump(first, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "gone", 1500))
	waitContents(t, kv, "h", []string{"h.link.lo=NEWLINK 1 lo mtu 65536", "h.link.gone=NEWLINK 2 gone mtu 1500"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	port := portOf(srv)
	srv.Shutdown()
	srv.WaitForShutdown()

	second := newKVSink(t, url, "h", nil)
	dump(second, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536))
	srv = runJetStream(t, port, dir)
	ch := listen(t, url)
	kv = bucket(t, url)
	waitContents(t, kv, "h", []string{"h.link.lo=NEWLINK 1 lo mtu 65536"})
	var names []string
	for _, r := range next(t, ch, 3) {
		names = append(names, r.String())
	}
	// The dump, lost with the server, comes again first.
	if want := []string{"NEWLINK netlink.h.link.lo.new", "SYNC netlink.h.sync", "DELLINK netlink.h.link.gone.del"}; !slices.Equal(names, want) &&
		!slices.Equal(names[:2], []string{"DELLINK netlink.h.link.gone.del", "SYNC netlink.h.sync"}) {
		t.Errorf("published %v", names)
	}
}

// Presence: written with the boot at start, gone at a clean shutdown;
// another process claiming the host is an error in the log.
func TestKVPresence(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	s := newKVSink(t, url, "h", nil)
	kv := bucket(t, url)
	p := waitPresence(t, kv, "h")
	if p.Boot != s.Boot() || p.Host != "h" || p.Version != "1.2.3" || p.Started.IsZero() {
		t.Errorf("presence %+v, want boot %s", p, s.Boot())
	}
	logs := new(syncBuffer)
	other := newKVSink(t, url, "h", logs)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "another nlbridge claims this host") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "other_boot="+s.Boot()) {
		t.Errorf("second process: log %s, want an error naming the first's boot", logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other.Close(ctx)
	s.Close(ctx)
	if _, err := kv.Get(ctx, "h.presence"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("presence after Close: %v, want it deleted", err)
	}
}

// A sink that stops refreshing its presence (its connection gone, as
// when it is killed) loses it within the TTL, and watchers see it go.
func TestKVPresenceExpires(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	s := newKVSink(t, url, "h", nil)
	kv := bucket(t, url)
	waitPresence(t, kv, "h")
	w, err := kv.Watch(context.Background(), "h.presence", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	s.Conn().Close()
	select {
	case e := <-w.Updates():
		if e.Operation() == jetstream.KeyValuePut {
			t.Fatalf("presence updated after the connection closed: %s", e.Value())
		}
		if d := time.Since(start); d > kvTestTTL+2*time.Second {
			t.Errorf("presence went after %v, want within the TTL %v", d, kvTestTTL)
		}
	case <-time.After(kvTestTTL + 5*time.Second):
		t.Fatal("presence did not expire")
	}
}

func waitPresence(t *testing.T, kv jetstream.KeyValue, host string) presenceValue {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		e, err := kv.Get(context.Background(), host+".presence")
		if err == nil {
			var p presenceValue
			if err := json.Unmarshal(e.Value(), &p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("no presence for %s: %v", host, err)
		}
	}
}

// Keys are escaped tokens, reversible, and an address token is the
// address's ID escaped.
func TestKVKeys(t *testing.T) {
	w := newKVWriter(KVConfig{Bucket: "b"}, "web 1", discard())
	a := addrEv(event.NewAddr, 7, "", "10.1.2.3/24").Addr
	a.Peer = netip.MustParseAddr("10.1.2.4")
	for _, tt := range []struct{ got, want string }{
		{w.linkKey("eth0.100", 2), "web=201.link.eth0=2E100"},
		{w.linkKey("", 9), "web=201.link._9"},
		{w.addrKey("_x", &a), "web=201.addr.=5Fx.10=2E1=2E2=2E3=20peer=2010=2E1=2E2=2E4=2F24"},
		{w.addrKey("", &a), "web=201.addr._7.10=2E1=2E2=2E3=20peer=2010=2E1=2E2=2E4=2F24"},
		{w.addrPrefixOf("web=201.addr.eth0.10=2E1"), "web=201.addr.eth0."},
		{w.addrPrefixOf("web=201.link.eth0"), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	id, err := UnescapeToken("10=2E1=2E2=2E3=20peer=2010=2E1=2E2=2E4=2F24")
	if err != nil || id != a.ID() {
		t.Errorf("address token unescapes to %q, %v; want %q", id, err, a.ID())
	}
}
