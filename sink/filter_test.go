package sink

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/filter"
)

func newFilteredSink(t *testing.T, url string, c filter.Config) *NATS {
	t.Helper()
	f, err := filter.New(c)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Connect(Config{Servers: []string{url}, Name: "test", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard(), Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func addrEv(typ event.Type, index uint32, ifname, prefix string) *event.Event {
	p := netip.MustParsePrefix(prefix)
	fam := event.Inet
	if p.Addr().Is6() {
		fam = event.Inet6
	}
	return &event.Event{Type: typ, Time: time.Now(), Addr: event.Addr{Index: index, Ifname: ifname, Family: fam,
		Address: p.Addr(), PrefixLen: uint8(p.Bits()), ValidLft: event.Forever, PreferredLft: event.Forever}}
}

// dump hands the sink a dump of evs for reason and interface iface, and
// returns its SYNC as the sink stamped it.
func dump(s *NATS, reason event.Reason, iface string, evs ...*event.Event) *event.Event {
	info := event.SyncInfo{Reason: reason, Interface: iface}
	s.Handle(&event.Event{Type: event.Begin, Time: time.Now(), Sync: info})
	for _, ev := range evs {
		ev.Dump = true
		s.Handle(ev)
	}
	sync := &event.Event{Type: event.Sync, Time: time.Now(), Sync: info}
	s.Handle(sync)
	return sync
}

func names(rs []received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// An excluded interface is never published: not in dumps, not in their
// SYNC counts, not as a change, and no DELLINK for it when a dump ends.
func TestFilterExcludedInterface(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newFilteredSink(t, srv.ClientURL(), filter.Config{Exclude: []string{"veth*"}})
	objects := func() []*event.Event {
		return []*event.Event{
			linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 1500), linkEv(event.NewLink, 3, "veth0", 1500),
			addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"), addrEv(event.NewAddr, 3, "veth0", "198.51.100.1/24"),
			addrEv(event.NewAddr, 3, "veth0", "2001:db8::1/64"),
		}
	}
	want := []string{"NEWLINK netlink.h.link.lo.new", "NEWLINK netlink.h.link.eth0.new",
		"NEWADDR netlink.h.addr.eth0.new", "SYNC netlink.h.sync"}

	for _, reason := range []event.Reason{event.ReasonStartup, event.ReasonRequest, event.ReasonResync} {
		sync := dump(s, reason, "", objects()...)
		if sync.Sync.Links != 2 || sync.Sync.Addrs != 1 {
			t.Errorf("%s: SYNC counts links %d addrs %d, want 2 and 1", reason, sync.Sync.Links, sync.Sync.Addrs)
		}
		if reason == event.ReasonResync {
			want = want[len(want)-1:] // nothing changed: only the SYNC
		}
		got := next(t, ch, len(want))
		if !slices.Equal(names(got), want) {
			t.Errorf("%s dump published %v, want %v", reason, names(got), want)
		}
		if last := got[len(got)-1]; last.Links != 2 || last.Addrs != 1 || last.Reason != string(reason) {
			t.Errorf("%s: published SYNC %+v, want links 2 addrs 1", reason, last)
		}
		quiet(t, ch) // in particular, no DELLINK or DELADDR for veth0
	}

	// A dump narrowed to the excluded interface holds nothing.
	if sync := dump(s, event.ReasonRequest, "veth0", linkEv(event.NewLink, 3, "veth0", 1500),
		addrEv(event.NewAddr, 3, "veth0", "198.51.100.1/24")); sync.Sync.Links != 0 || sync.Sync.Addrs != 0 {
		t.Errorf("dump of veth0: SYNC counts links %d addrs %d, want 0", sync.Sync.Links, sync.Sync.Addrs)
	}
	if got := next(t, ch, 1); got[0].String() != "SYNC netlink.h.sync" {
		t.Errorf("dump of veth0 published %v, want only a SYNC", names(got))
	}

	// Changes and deletions of veth0 are not published either; eth0's are.
	s.Handle(linkEv(event.NewLink, 3, "veth0", 9000))
	s.Handle(addrEv(event.DelAddr, 3, "veth0", "198.51.100.1/24"))
	s.Handle(linkEv(event.DelLink, 3, "veth0", 9000))
	s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
	if got := next(t, ch, 1); got[0].String() != "NEWLINK netlink.h.link.eth0.new" || got[0].Link.MTU != 9000 {
		t.Errorf("after changes published %v, want eth0's new MTU", got)
	}
	quiet(t, ch)

	// 4 dumps with 4 veth0 objects (3, then 2 in the narrowed one), and 3 changes.
	if st := s.Stats(); st.Filtered != 3*3+2+3 {
		t.Errorf("stats = %+v, want %d filtered", st, 3*3+2+3)
	}
}

// Addresses of a family left out are not published, in dumps or as
// changes, and are not counted in SYNC.
func TestFilterFamily(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newFilteredSink(t, srv.ClientURL(), filter.Config{Families: []string{"inet"}})
	sync := dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 2, "eth0", 1500),
		addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"), addrEv(event.NewAddr, 2, "eth0", "fe80::1/64"),
		addrEv(event.NewAddr, 2, "eth0", "2001:db8::1/64"))
	if sync.Sync.Links != 1 || sync.Sync.Addrs != 1 {
		t.Errorf("SYNC counts links %d addrs %d, want 1 and 1", sync.Sync.Links, sync.Sync.Addrs)
	}
	got := next(t, ch, 3)
	want := []string{"NEWLINK netlink.h.link.eth0.new", "NEWADDR netlink.h.addr.eth0.new", "SYNC netlink.h.sync"}
	if !slices.Equal(names(got), want) || got[2].Addrs != 1 {
		t.Errorf("dump published %+v, want %v with addrs 1", got, want)
	}

	s.Handle(addrEv(event.NewAddr, 2, "eth0", "2001:db8::2/64"))
	s.Handle(addrEv(event.DelAddr, 2, "eth0", "2001:db8::1/64"))
	s.Handle(addrEv(event.DelAddr, 2, "eth0", "192.0.2.1/24"))
	if got := next(t, ch, 1); got[0].String() != "DELADDR netlink.h.addr.eth0.del" {
		t.Errorf("after changes published %v, want the IPv4 DELADDR only", names(got))
	}
	quiet(t, ch)
	if st := s.Stats(); st.Filtered != 4 {
		t.Errorf("stats = %+v, want 4 filtered", st)
	}
}

// Without a filter nothing is counted as filtered.
func TestFilterNil(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newSink(t, srv.ClientURL())
	s.Handle(linkEv(event.NewLink, 3, "veth0", 1500))
	if got := next(t, ch, 1); !strings.HasSuffix(got[0].subject, ".veth0.new") {
		t.Errorf("published %v, want veth0", names(got))
	}
	if st := s.Stats(); st.Filtered != 0 || st.Published != 1 {
		t.Errorf("stats = %+v, want 1 published, 0 filtered", st)
	}
}

// With deletions filtered out, a deleted object is forgotten quietly: no
// later dump publishes its deletion.
func TestFilterDeletionsQuiet(t *testing.T) {
	f, err := filter.New(filter.Config{Events: []string{"NEWLINK", "NEWADDR"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s, err := Connect(Config{Servers: []string{srv.ClientURL()}, Name: "test", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard(), Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn().Close()
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	s.Handle(linkEv(event.DelLink, 2, "eth0", 1500))
	for _, ev := range []*event.Event{
		{Type: event.Begin, Sync: event.SyncInfo{Reason: event.ReasonRequest}},
		{Type: event.Sync, Time: time.Now(), Sync: event.SyncInfo{Reason: event.ReasonRequest}},
	} {
		s.Handle(ev)
	}
	got := next(t, ch, 2)
	if got[0].String() != "NEWLINK netlink.h.link.eth0.new" || got[1].Type != "SYNC" {
		t.Errorf("published %v, want the NEWLINK and the SYNC only", got)
	}
	quiet(t, ch)
}

// A link renamed out of the filter's scope is published as deleted (its
// addresses go with it); renamed into it, it is published with its
// addresses, which the sink kept while they were out of scope.
func TestFilterRenameOutAndIn(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newFilteredSink(t, srv.ClientURL(), filter.Config{Include: []string{"keep*"}})
	s.Handle(linkEv(event.NewLink, 2, "keep1", 1500))
	s.Handle(addrEv(event.NewAddr, 2, "keep1", "192.0.2.1/24"))
	next(t, ch, 2)
	s.Handle(linkEv(event.NewLink, 2, "other1", 1500))
	if got := names(next(t, ch, 1)); !slices.Equal(got, []string{"DELLINK netlink.h.link.keep1.del"}) {
		t.Errorf("renamed out: %v, want the DELLINK of keep1", got)
	}
	s.Handle(addrEv(event.NewAddr, 2, "other1", "2001:db8::1/64"))
	quiet(t, ch)
	s.Handle(linkEv(event.NewLink, 2, "keep2", 1500))
	want := []string{"NEWLINK netlink.h.link.keep2.new", "NEWADDR netlink.h.addr.keep2.new", "NEWADDR netlink.h.addr.keep2.new"}
	if got := names(next(t, ch, 3)); !slices.Equal(got, want) {
		t.Errorf("renamed in: %v, want %v", got, want)
	}
	quiet(t, ch)
	// A resync finds nothing to correct.
	if sync := dump(s, event.ReasonResync, "", linkEv(event.NewLink, 2, "keep2", 1500),
		addrEv(event.NewAddr, 2, "keep2", "192.0.2.1/24"), addrEv(event.NewAddr, 2, "keep2", "2001:db8::1/64")); sync.Sync.Links != 1 || sync.Sync.Addrs != 2 {
		t.Errorf("resync SYNC %+v", sync.Sync)
	}
	if got := names(next(t, ch, 1)); !slices.Equal(got, []string{"SYNC netlink.h.sync"}) {
		t.Errorf("resync published %v, want only its SYNC", got)
	}
}

// closeAtCleanup closes s when the test ends, waiting 5 s at most.
func closeAtCleanup(tb testing.TB, s *NATS) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
}
