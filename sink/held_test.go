package sink

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/filter"
)

// An address whose link the sink does not know (its NEWLINK was lost) is
// held back until the link comes: counted as held back, not as filtered,
// and not in a dump's counts; without a filter nothing is filtered.
func TestHeldBackAddrNotFiltered(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newSink(t, srv.ClientURL())
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	next(t, ch, 1)

	s.Handle(addrEv(event.NewAddr, 3, "", "192.0.2.1/24"))
	s.Handle(addrEv(event.NewAddr, 3, "", "2001:db8::1/64"))
	quiet(t, ch)
	if st := s.Stats(); st.HeldBack != 2 || st.Filtered != 0 {
		t.Errorf("after 2 NEWADDRs of unknown link 3: stats %+v, want 2 held back, 0 filtered", st)
	}
	s.Handle(linkEv(event.NewLink, 3, "eth1", 1500))
	want := []string{"NEWLINK netlink.h.link.eth1.new", "NEWADDR netlink.h.addr.eth1.new", "NEWADDR netlink.h.addr.eth1.new"}
	if got := names(next(t, ch, 3)); !slices.Equal(got, want) {
		t.Errorf("NEWLINK eth1 published %v, want %v", got, want)
	}
	quiet(t, ch)

	// In a dump, an address of a link deleted between the dumps of links
	// and of addresses is held back, and not counted in the SYNC.
	sync := dump(s, event.ReasonRequest, "", linkEv(event.NewLink, 2, "eth0", 1500), linkEv(event.NewLink, 3, "eth1", 1500),
		addrEv(event.NewAddr, 3, "eth1", "192.0.2.1/24"), addrEv(event.NewAddr, 3, "eth1", "2001:db8::1/64"),
		addrEv(event.NewAddr, 4, "eth2", "198.51.100.1/24"))
	if sync.Sync.Links != 2 || sync.Sync.Addrs != 2 {
		t.Errorf("SYNC counts links %d addrs %d, want 2 and 2", sync.Sync.Links, sync.Sync.Addrs)
	}
	want = []string{"NEWLINK netlink.h.link.eth0.new", "NEWLINK netlink.h.link.eth1.new", "NEWADDR netlink.h.addr.eth1.new",
		"NEWADDR netlink.h.addr.eth1.new", "SYNC netlink.h.sync"}
	if got := names(next(t, ch, 5)); !slices.Equal(got, want) {
		t.Errorf("dump published %v, want %v", got, want)
	}
	quiet(t, ch)

	// The DELADDR of an address held back forgets it: it is neither held
	// back nor filtered.
	s.Handle(addrEv(event.NewAddr, 5, "", "203.0.113.1/24"))
	s.Handle(addrEv(event.DelAddr, 5, "", "203.0.113.1/24"))
	quiet(t, ch)
	if st := s.Stats(); st.HeldBack != 4 || st.Filtered != 0 || st.Published != 9 {
		t.Errorf("stats %+v, want 4 held back, 0 filtered, 9 published", st)
	}
}

// With a filter, an address of an unknown link is held back when its
// family is in scope and so is its name, or it has none (the link's name,
// when it comes, decides); otherwise the filter drops it.
func TestHeldBackAddrWithFilter(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newFilteredSink(t, srv.ClientURL(), filter.Config{Include: []string{"keep*"}, Families: []string{"inet"}})
	for _, tt := range []struct {
		ev             *event.Event
		held, filtered uint64
	}{
		{addrEv(event.NewAddr, 3, "", "192.0.2.1/24"), 1, 0},
		{addrEv(event.NewAddr, 3, "keep0", "192.0.2.2/24"), 2, 0},
		{addrEv(event.NewAddr, 4, "other0", "192.0.2.3/24"), 2, 1},
		{addrEv(event.NewAddr, 3, "", "2001:db8::1/64"), 2, 2},
		{addrEv(event.NewAddr, 3, "keep0", "2001:db8::2/64"), 2, 3},
	} {
		s.Handle(tt.ev)
		if st := s.Stats(); st.HeldBack != tt.held || st.Filtered != tt.filtered {
			t.Errorf("after NEWADDR %s %s: held back %d, filtered %d, want %d and %d",
				tt.ev.Addr.Ifname, tt.ev.Addr.Address, st.HeldBack, st.Filtered, tt.held, tt.filtered)
		}
	}
	quiet(t, ch)
	// The link comes in scope: the IPv4 addresses go out with it.
	s.Handle(linkEv(event.NewLink, 3, "keep0", 1500))
	want := []string{"NEWLINK netlink.h.link.keep0.new", "NEWADDR netlink.h.addr.keep0.new", "NEWADDR netlink.h.addr.keep0.new"}
	if got := names(next(t, ch, 3)); !slices.Equal(got, want) {
		t.Errorf("NEWLINK keep0 published %v, want %v", got, want)
	}
	quiet(t, ch)
}
