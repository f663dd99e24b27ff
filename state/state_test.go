package state

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

func link(typ event.Type, index uint32, name string, mtu uint32) *event.Event {
	return &event.Event{Type: typ, Link: event.Link{Index: index, Name: name, MTU: mtu, Flags: event.IFFUp}}
}

func addr(typ event.Type, index uint32, ifname, a string) *event.Event {
	p := netip.MustParsePrefix(a)
	return &event.Event{Type: typ, Addr: event.Addr{Index: index, Ifname: ifname, Family: event.Inet,
		Address: p.Addr(), PrefixLen: uint8(p.Bits()), ValidLft: event.Forever, PreferredLft: event.Forever}}
}

// publish runs an event through the table as the sink does, with ok as the
// publish result, and returns what Update said.
func publish(t *Table, ev *event.Event, ok bool) (bool, uint32, bool) {
	known, changed, was := t.Update(ev)
	t.Published(ev, ok)
	return known, changed, was
}

// summary lists events as "TYPE name/address".
func summary(evs []event.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type.IsLink() {
			out = append(out, fmt.Sprintf("%v %s", ev.Type, ev.Link.Name))
		} else {
			out = append(out, fmt.Sprintf("%v %s", ev.Type, ev.Addr.Address))
		}
	}
	return out
}

func TestUpdateChanges(t *testing.T) {
	tb := New()
	if known, _, _ := publish(tb, link(event.NewLink, 2, "eth0", 1500), true); known {
		t.Error("a new link is known")
	}
	known, changed, was := publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	if !known || changed != 0 || !was {
		t.Errorf("repeated NEWLINK: known %v changed %b published %v, want true 0 true", known, changed, was)
	}
	ev := link(event.NewLink, 2, "eth0", 9000)
	ev.Link.Flags = 0
	_, changed, _ = publish(tb, ev, true)
	var names []string
	for i, n := range event.LinkFields {
		if changed&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if want := []string{"enabled", "mtu", "flags"}; !slices.Equal(names, want) {
		t.Errorf("changed = %v, want %v", names, want)
	}
	a := addr(event.NewAddr, 2, "eth0", "192.0.2.1/24")
	publish(tb, a, true)
	a2 := addr(event.NewAddr, 2, "eth0", "192.0.2.1/24")
	a2.Addr.Flags = 0x40
	if _, changed, _ := publish(tb, a2, true); changed != 1<<5 {
		t.Errorf("address flags change: changed = %b, want flags (bit 5)", changed)
	}
	if l, n := tb.Len(); l != 1 || n != 1 {
		t.Errorf("Len = %d, %d, want 1, 1", l, n)
	}
}

// While publishing fails, the table keeps one pending change per object,
// however often it changed, and the deletions of what consumers held.
func TestDirty(t *testing.T) {
	tb := New()
	publish(tb, link(event.NewLink, 1, "lo", 65536), true)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, link(event.NewLink, 3, "gone", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.2/24"), true)
	if d := tb.Dirty(); len(d) != 0 {
		t.Fatalf("Dirty after successful publishes = %v", summary(d))
	}
	// An outage: nothing reaches NATS.
	for mtu := uint32(1000); mtu < 2000; mtu++ {
		publish(tb, link(event.NewLink, 2, "eth0", mtu), false)
	}
	publish(tb, link(event.DelLink, 3, "gone", 1500), false)
	publish(tb, addr(event.DelAddr, 2, "eth0", "192.0.2.2/24"), false)
	publish(tb, link(event.NewLink, 4, "new0", 1500), false)
	publish(tb, link(event.NewLink, 5, "brief", 1500), false)
	publish(tb, link(event.DelLink, 5, "brief", 1500), false)
	got := summary(tb.Dirty())
	want := []string{"DELADDR 192.0.2.2", "DELLINK gone", "DELLINK brief", "NEWLINK eth0", "NEWLINK new0"}
	if !slices.Equal(got, want) {
		t.Errorf("Dirty = %v\nwant  %v", got, want)
	}
	if d := tb.Dirty(); d[3].Link.MTU != 1999 {
		t.Errorf("pending eth0 has mtu %d, want the last, 1999", d[3].Link.MTU)
	}
	// Reconciled: all published.
	for _, ev := range tb.Dirty() {
		tb.Published(&ev, true)
	}
	if d := tb.Dirty(); len(d) != 0 {
		t.Errorf("Dirty after reconciling = %v", summary(d))
	}
	if l, a := tb.Len(); l != 3 || a != 1 {
		t.Errorf("Len = %d, %d, want 3 links (lo eth0 new0), 1 address", l, a)
	}
}

func TestVanished(t *testing.T) {
	tb := New()
	for _, ev := range []*event.Event{
		link(event.NewLink, 1, "lo", 65536), link(event.NewLink, 2, "eth0", 1500), link(event.NewLink, 3, "eth1", 1500),
		addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), addr(event.NewAddr, 3, "eth1", "198.51.100.1/24"),
		addr(event.NewAddr, 3, "eth1", "198.51.100.2/24"),
	} {
		publish(tb, ev, true)
	}
	// A dump shows lo, eth1 and one of its addresses; an event during the
	// dump shows a new link, which must not count as vanished.
	tb.BeginDump()
	for _, ev := range []*event.Event{
		link(event.NewLink, 1, "lo", 65536), link(event.NewLink, 3, "eth1", 1500),
		addr(event.NewAddr, 3, "eth1", "198.51.100.1/24"), link(event.NewLink, 9, "late", 1500),
	} {
		publish(tb, ev, true)
	}
	got := summary(tb.Vanished(""))
	want := []string{"DELADDR 192.0.2.1", "DELADDR 198.51.100.2", "DELLINK eth0"}
	if !slices.Equal(got, want) {
		t.Errorf("Vanished = %v, want %v", got, want)
	}
	// A narrowed dump only vanishes objects of its interface.
	tb.BeginDump()
	publish(tb, link(event.NewLink, 1, "lo", 65536), true)
	if got := summary(tb.Vanished("late")); !slices.Equal(got, []string{"DELLINK late"}) {
		t.Errorf("Vanished(late) = %v, want [DELLINK late]", got)
	}
}

// A DELLINK takes the link's addresses with it.
func TestDelLinkDropsAddresses(t *testing.T) {
	tb := New()
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	publish(tb, link(event.DelLink, 2, "eth0", 1500), true)
	if l, a := tb.Len(); l != 0 || a != 0 {
		t.Errorf("Len after DELLINK = %d, %d, want 0, 0", l, a)
	}
	// The kernel's own DELADDR may follow: it is not known any more.
	if known, _, _ := publish(tb, addr(event.DelAddr, 2, "eth0", "192.0.2.1/24"), true); known {
		t.Error("address of a deleted link still known")
	}
}

func BenchmarkUpdate(b *testing.B) {
	tb := New()
	evs := make([]*event.Event, 0, 2000)
	for i := range uint32(1000) {
		evs = append(evs, link(event.NewLink, i+1, fmt.Sprintf("veth%d", i), 1500),
			addr(event.NewAddr, i+1, fmt.Sprintf("veth%d", i), fmt.Sprintf("10.%d.%d.1/24", i>>8, i&0xff)))
	}
	for _, ev := range evs {
		publish(tb, ev, true)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		i++
		ev.Link.MTU++
		publish(tb, ev, true)
	}
}

// fieldNames lists the names of the event.AddrFields bits set in changed.
func fieldNames(changed uint32) []string {
	var names []string
	for i, n := range event.AddrFields {
		if changed&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return names
}

// peerAddr returns an IPv4 address with a peer, as "ip addr add local peer
// peer/bits" makes it.
func peerAddr(typ event.Type, index uint32, local, peer string) *event.Event {
	p := netip.MustParsePrefix(peer)
	ev := addr(typ, index, "ppp0", local+"/32")
	ev.Addr.Peer, ev.Addr.PrefixLen = p.Addr(), uint8(p.Bits())
	return ev
}

func addr6(typ event.Type, index uint32, a string) *event.Event {
	ev := addr(typ, index, "eth0", a)
	ev.Addr.Family = event.Inet6
	return ev
}

// Addresses are told apart as the kernel tells them apart: IPv4 ones by
// local address, prefix length and peer, IPv6 ones by address alone.
func TestAddrIdentity(t *testing.T) {
	tb := New()
	for _, ev := range []*event.Event{
		peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.3/32"),
		peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.2/32"),
		addr(event.NewAddr, 2, "ppp0", "10.9.0.1/32"),
		addr(event.NewAddr, 2, "ppp0", "10.9.0.1/24"),
		addr6(event.NewAddr, 2, "2001:db8::1/64"),
	} {
		if known, _, _ := publish(tb, ev, true); known {
			t.Errorf("NEWADDR %s: known, want a new address", ev.Addr.ID())
		}
	}
	if _, n := tb.Len(); n != 5 {
		t.Errorf("Len: %d addresses, want 5", n)
	}
	// An IPv6 address seen again with another prefix length (deleted and
	// added again while the messages were lost) is the same address.
	known, changed, _ := publish(tb, addr6(event.NewAddr, 2, "2001:db8::1/56"), true)
	if got := fieldNames(changed); !known || !slices.Equal(got, []string{"prefix_len"}) {
		t.Errorf("IPv6 prefix length change: known %v, changed %v, want true [prefix_len]", known, got)
	}
	// A resync that shows all but one of the peers deletes that one, not
	// its namesake. The order is the keys', every time.
	for range 20 {
		tb := New()
		for _, p := range []string{"10.9.0.4/32", "10.9.0.2/32", "10.9.0.3/32", "10.9.0.3/31"} {
			publish(tb, peerAddr(event.NewAddr, 2, "10.9.0.1", p), true)
		}
		tb.BeginDump()
		known, changed, _ := publish(tb, peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.3/32"), true)
		if !known || changed != 0 {
			t.Fatalf("dumped again: known %v, changed %v, want true []", known, fieldNames(changed))
		}
		var got []string
		for _, ev := range tb.Vanished("") {
			got = append(got, ev.Type.String()+" "+ev.Addr.ID())
		}
		want := []string{"DELADDR 10.9.0.1 peer 10.9.0.3/31", "DELADDR 10.9.0.1 peer 10.9.0.2/32", "DELADDR 10.9.0.1 peer 10.9.0.4/32"}
		if !slices.Equal(got, want) {
			t.Fatalf("Vanished = %q\nwant       %q", got, want)
		}
	}
}

// Lifetimes count down; only a change of when they end is a change.
func TestLifetimes(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration, valid, preferred uint32) *event.Event {
		ev := addr(event.NewAddr, 2, "eth0", "192.0.2.9/24")
		ev.Time, ev.Addr.ValidLft, ev.Addr.PreferredLft = t0.Add(d), valid, preferred
		return ev
	}
	const s = time.Second
	for _, tt := range []struct {
		name     string
		readings []*event.Event // the first is the address as added
		want     [][]string     // changed fields of each later reading
	}{
		{"counting down", []*event.Event{at(0, 1000, 500), at(5*s, 995, 495), at(100*s, 900, 400)},
			[][]string{nil, nil}},
		{"whole seconds", []*event.Event{at(0, 1000, 500), at(5999*time.Millisecond, 995, 495), at(6*s+time.Millisecond, 994, 494)},
			[][]string{nil, nil}},
		{"late reading", []*event.Event{at(0, 1000, 500), at(10*s+1500*time.Millisecond, 990, 490)},
			[][]string{nil}},
		{"preferred run out", []*event.Event{at(0, 1000, 500), at(600*s, 400, 0), at(700*s, 300, 0)},
			[][]string{nil, nil}},
		{"valid changed", []*event.Event{at(0, 1000, 500), at(5*s, 2000, 495), at(10*s, 1995, 490)},
			[][]string{{"valid_lft"}, nil}},
		{"renewed", []*event.Event{at(0, 1000, 500), at(300*s, 1000, 500)},
			[][]string{{"valid_lft", "preferred_lft"}}},
		{"preferred cut short", []*event.Event{at(0, 1000, 500), at(5*s, 995, 0)},
			[][]string{{"preferred_lft"}}},
		{"to forever", []*event.Event{at(0, 1000, 500), at(5*s, event.Forever, event.Forever)},
			[][]string{{"valid_lft", "preferred_lft"}}},
		{"from forever", []*event.Event{at(0, event.Forever, event.Forever), at(5*s, 1000, event.Forever), at(5*s, 1000, event.Forever)},
			[][]string{{"valid_lft"}, nil}},
		{"forever", []*event.Event{at(0, event.Forever, event.Forever), at(5*s, event.Forever, event.Forever)},
			[][]string{nil}},
		// Each reading is within the slack of the one before, but the
		// third is not within it of the first: the reference stays the
		// first, so the error cannot add up unseen.
		{"no drift", []*event.Event{at(0, 1000, 500), at(1500*time.Millisecond, 1000, 500), at(3*s, 1000, 500), at(4*s, 999, 499)},
			[][]string{nil, {"valid_lft", "preferred_lft"}, nil}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := New()
			publish(tb, tt.readings[0], true)
			for i, ev := range tt.readings[1:] {
				_, changed, _ := publish(tb, ev, true)
				if got := fieldNames(changed); !slices.Equal(got, tt.want[i]) {
					t.Errorf("reading %d (%v later, valid %d, preferred %d): changed %v, want %v",
						i+1, ev.Time.Sub(t0), ev.Addr.ValidLft, ev.Addr.PreferredLft, got, tt.want[i])
				}
			}
		})
	}
	// A deleted address that comes back is measured from its return.
	tb := New()
	publish(tb, at(0, 1000, 500), true)
	publish(tb, &event.Event{Type: event.DelAddr, Time: t0.Add(10 * time.Second), Addr: at(0, 990, 490).Addr}, false)
	publish(tb, at(20*time.Second, 1000, 500), true)
	if _, changed, _ := publish(tb, at(30*time.Second, 990, 490), true); changed != 0 {
		t.Errorf("address added again, then counting down: changed %v, want none", fieldNames(changed))
	}
}
