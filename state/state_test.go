package state

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

func link(typ event.Type, index uint32, name string, mtu uint32) *event.Event {
	return &event.Event{Type: typ, Link: event.Link{Index: index, Name: name, MTU: mtu, Flags: event.IFFUp}}
}

func addr(typ event.Type, index uint32, ifname, a string) *event.Event {
	p := netip.MustParsePrefix(a)
	fam := event.Inet
	if p.Addr().Is6() {
		fam = event.Inet6
	}
	return &event.Event{Type: typ, Addr: event.Addr{Index: index, Ifname: ifname, Family: fam,
		Address: p.Addr(), PrefixLen: uint8(p.Bits()), ValidLft: event.Forever, PreferredLft: event.Forever}}
}

// publish runs an event through the table as the sink does, with ok as the
// result of every publish, and returns the messages the table asked for.
func publish(t *Table, ev *event.Event, ok bool) []event.Event {
	out, _ := t.Apply(ev, false, nil)
	for i := range out {
		t.Published(&out[i], ok)
	}
	return out
}

// summary lists events as "TYPE name/address".
func summary(evs []event.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type.IsLink() {
			out = append(out, fmt.Sprintf("%v %s", ev.Type, ev.Link.Name))
		} else {
			out = append(out, fmt.Sprintf("%v %s %s", ev.Type, ev.Addr.Ifname, ev.Addr.Address))
		}
	}
	return out
}

// reconcile publishes what Dirty returns, as the sink does after a
// reconnection, and returns its summary.
func reconcile(tb *Table) []string {
	d := tb.Dirty()
	for i := range d {
		tb.Published(&d[i], true)
	}
	return summary(d)
}

func TestApplyChanges(t *testing.T) {
	tb := New(nil)
	if out := publish(tb, link(event.NewLink, 2, "eth0", 1500), true); len(out) != 1 || out[0].Changed != 0 {
		t.Errorf("a new link: %v", out)
	}
	if out := publish(tb, link(event.NewLink, 2, "eth0", 1500), true); len(out) != 0 {
		t.Errorf("repeated NEWLINK published %v, want nothing", summary(out))
	}
	ev := link(event.NewLink, 2, "eth0", 9000)
	ev.Link.Flags = 0
	out := publish(tb, ev, true)
	var names []string
	for i, n := range event.LinkFields {
		if len(out) == 1 && out[0].Changed&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if want := []string{"enabled", "mtu", "flags"}; !slices.Equal(names, want) {
		t.Errorf("changed = %v, want %v", names, want)
	}
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	a2 := addr(event.NewAddr, 2, "eth0", "192.0.2.1/24")
	a2.Addr.Flags = 0x40
	if out := publish(tb, a2, true); len(out) != 1 || out[0].Changed != 1<<5 {
		t.Errorf("address flags change: %v, want one message with changed flags (bit 5)", out)
	}
	// A full dump publishes what consumers hold already; a change in it
	// carries no changed list.
	if out, _ := tb.Apply(link(event.NewLink, 2, "eth0", 9000), true, nil); len(out) != 1 {
		t.Errorf("forced: %v, want the link", summary(out))
	}
	if l, n := tb.Len(); l != 1 || n != 1 {
		t.Errorf("Len = %d, %d, want 1, 1", l, n)
	}
}

// While publishing fails, the table keeps one pending change per object,
// however often it changed, and the deletions of what consumers held; what
// was created and deleted meanwhile leaves nothing behind.
func TestDirty(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 1, "lo", 65536), true)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, link(event.NewLink, 3, "gone", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.2/24"), true)
	if d := tb.Dirty(); len(d) != 0 {
		t.Fatalf("Dirty after successful publishes = %v", summary(d))
	}
	size := tb.Size()
	// An outage: nothing reaches NATS.
	for mtu := uint32(1000); mtu < 2000; mtu++ {
		publish(tb, link(event.NewLink, 2, "eth0", mtu), false)
	}
	publish(tb, link(event.DelLink, 3, "gone", 1500), false)
	publish(tb, addr(event.DelAddr, 2, "eth0", "192.0.2.2/24"), false)
	publish(tb, link(event.NewLink, 4, "new0", 1500), false)
	for i := range uint32(1000) {
		publish(tb, link(event.NewLink, 100+i, "brief", 1500), false)
		publish(tb, addr(event.NewAddr, 100+i, "brief", "198.51.100.1/24"), false)
		publish(tb, link(event.DelLink, 100+i, "brief", 1500), false)
	}
	if got := tb.Size(); got != size+1 {
		t.Errorf("after the outage the table holds %d entries, want %d (new0 added): briefly lived objects leave nothing", got, size+1)
	}
	d := tb.Dirty()
	want := []string{"DELADDR eth0 192.0.2.2", "DELLINK gone", "NEWLINK eth0", "NEWLINK new0"}
	if got := summary(d); !slices.Equal(got, want) {
		t.Errorf("Dirty = %v\nwant  %v", got, want)
	}
	if len(d) == len(want) && d[2].Link.MTU != 1999 {
		t.Errorf("pending eth0 has mtu %d, want the last, 1999", d[2].Link.MTU)
	}
	reconcile(tb)
	if d := tb.Dirty(); len(d) != 0 {
		t.Errorf("Dirty after reconciling = %v", summary(d))
	}
	if l, a := tb.Len(); l != 3 || a != 1 {
		t.Errorf("Len = %d, %d, want 3 links (lo eth0 new0), 1 address", l, a)
	}
	if got := tb.Size(); got != 4 {
		t.Errorf("Size = %d after reconciling, want 4: published deletions are forgotten", got)
	}
}

// A link deleted while nothing could be published, whose index the kernel
// gives to a new link, is deleted before the new one is announced, so that
// consumers drop its addresses.
func TestIndexReused(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 5, "old", 1500), true)
	publish(tb, addr(event.NewAddr, 5, "old", "192.0.2.1/24"), true)
	publish(tb, addr(event.NewAddr, 5, "old", "2001:db8::1/64"), true)
	// The outage.
	publish(tb, addr(event.DelAddr, 5, "old", "192.0.2.1/24"), false)
	publish(tb, link(event.DelLink, 5, "old", 1500), false)
	publish(tb, link(event.NewLink, 5, "new", 1500), false)
	publish(tb, addr(event.NewAddr, 5, "new", "198.51.100.1/24"), false)
	want := []string{"DELLINK old", "NEWLINK new", "NEWADDR new 198.51.100.1"}
	if got := reconcile(tb); !slices.Equal(got, want) {
		t.Errorf("after the outage: %v\nwant %v", got, want)
	}
	if d := tb.Dirty(); len(d) != 0 {
		t.Errorf("Dirty after reconciling = %v", summary(d))
	}

	// The same live, when the DELLINK was refused and the connection is
	// back before the new link appears: the DELLINK comes first.
	publish(tb, link(event.DelLink, 5, "new", 1500), false)
	out := publish(tb, link(event.NewLink, 5, "third", 1500), true)
	if got := summary(out); !slices.Equal(got, []string{"DELLINK new", "NEWLINK third"}) {
		t.Errorf("live: %v, want the DELLINK of new, then the NEWLINK", got)
	}
	// When the DELLINK fails, the NEWLINK is not published before it.
	publish(tb, link(event.DelLink, 5, "third", 1500), false)
	out, _ = tb.Apply(link(event.NewLink, 5, "fourth", 1500), false, nil)
	tb.Published(&out[0], false)
	tb.Published(&out[1], false)
	if got := reconcile(tb); !slices.Equal(got, []string{"DELLINK third", "NEWLINK fourth"}) {
		t.Errorf("after both failed: %v", got)
	}
	// A new incarnation that is itself deleted before anything could be
	// published: only the deletion of what consumers hold.
	publish(tb, link(event.DelLink, 5, "fourth", 1500), false)
	publish(tb, link(event.NewLink, 5, "fifth", 1500), false)
	publish(tb, link(event.DelLink, 5, "fifth", 1500), false)
	if got := reconcile(tb); !slices.Equal(got, []string{"DELLINK fourth"}) {
		t.Errorf("reborn and deleted: %v, want [DELLINK fourth]", got)
	}
	if tb.Size() != 0 {
		t.Errorf("Size = %d, want 0", tb.Size())
	}
}

// prefixes is a Scope: names with one of its prefixes, both families.
type prefixes []string

func (p prefixes) AllowName(name string) bool {
	return slices.ContainsFunc(p, func(pre string) bool { return strings.HasPrefix(name, pre) })
}
func (p prefixes) AllowFamily(event.Family) bool { return true }

// A link renamed out of the scope is deleted for consumers; renamed into
// it, it is announced with its addresses.
func TestScopeExitAndEntry(t *testing.T) {
	tb := New(prefixes{"keep"})
	publish(tb, link(event.NewLink, 2, "keep1", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "keep1", "192.0.2.1/24"), true)
	if out := publish(tb, link(event.NewLink, 3, "other0", 1500), true); len(out) != 0 {
		t.Errorf("out of scope: %v", summary(out))
	}
	out := publish(tb, link(event.NewLink, 2, "other1", 1500), true)
	if got := summary(out); !slices.Equal(got, []string{"DELLINK keep1"}) {
		t.Errorf("renamed out: %v, want [DELLINK keep1]", got)
	}
	if l, a := tb.Len(); l != 0 || a != 0 {
		t.Errorf("Len = %d, %d after leaving, want 0, 0", l, a)
	}
	// Changes out of scope are kept, not published.
	if out := publish(tb, addr(event.NewAddr, 2, "other1", "192.0.2.2/24"), true); len(out) != 0 {
		t.Errorf("address out of scope: %v", summary(out))
	}
	publish(tb, addr(event.DelAddr, 2, "other1", "192.0.2.1/24"), true)
	out = publish(tb, link(event.NewLink, 2, "keep2", 1500), true)
	if got := summary(out); !slices.Equal(got, []string{"NEWLINK keep2", "NEWADDR keep2 192.0.2.2"}) {
		t.Errorf("renamed in: %v, want the link and its address", got)
	}
	if l, a := tb.Len(); l != 1 || a != 1 {
		t.Errorf("Len = %d, %d after entering, want 1, 1", l, a)
	}
	// While disconnected: out and back in costs the deletion and the
	// link with its addresses again... or nothing, when it ends as it was.
	publish(tb, link(event.NewLink, 2, "other2", 1500), false)
	if got := reconcile(tb); !slices.Equal(got, []string{"DELADDR other2 192.0.2.2", "DELLINK keep2"}) {
		t.Errorf("left while disconnected: %v", got)
	}
	publish(tb, link(event.NewLink, 2, "keep3", 1500), false)
	if got := reconcile(tb); !slices.Equal(got, []string{"NEWLINK keep3", "NEWADDR keep3 192.0.2.2"}) {
		t.Errorf("entered while disconnected: %v", got)
	}
	// Deleted out of scope: nothing to say.
	publish(tb, link(event.NewLink, 2, "other3", 1500), true)
	if out := publish(tb, link(event.DelLink, 2, "other3", 1500), true); len(out) != 0 {
		t.Errorf("deleted out of scope: %v", summary(out))
	}
	if tb.Size() != 1 { // other0
		t.Errorf("Size = %d, want 1", tb.Size())
	}
}

func TestVanished(t *testing.T) {
	tb := New(nil)
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
	got := tb.Vanished("", nil)
	want := []string{"DELADDR eth0 192.0.2.1", "DELADDR eth1 198.51.100.2", "DELLINK eth0"}
	if !slices.Equal(summary(got), want) {
		t.Errorf("Vanished = %v, want %v", summary(got), want)
	}
	for i := range got {
		tb.Published(&got[i], true)
	}
	// A narrowed dump only vanishes objects of its interface.
	tb.BeginDump()
	publish(tb, link(event.NewLink, 1, "lo", 65536), true)
	if got := summary(tb.Vanished("late", nil)); !slices.Equal(got, []string{"DELLINK late"}) {
		t.Errorf("Vanished(late) = %v, want [DELLINK late]", got)
	}
}

// A DELLINK takes the link's addresses with it.
func TestDelLinkDropsAddresses(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	publish(tb, link(event.DelLink, 2, "eth0", 1500), true)
	if l, a := tb.Len(); l != 0 || a != 0 || tb.Size() != 0 {
		t.Errorf("Len after DELLINK = %d, %d (size %d), want 0, 0 (0)", l, a, tb.Size())
	}
	// The kernel's own DELADDR may follow: it is passed on, and not kept.
	if out := publish(tb, addr(event.DelAddr, 2, "eth0", "192.0.2.1/24"), false); len(out) != 1 || tb.Size() != 0 {
		t.Errorf("late DELADDR: %v, size %d", summary(out), tb.Size())
	}
}

func BenchmarkApply(b *testing.B) {
	tb := New(nil)
	evs := make([]*event.Event, 0, 2000)
	for i := range uint32(1000) {
		evs = append(evs, link(event.NewLink, i+1, fmt.Sprintf("veth%d", i), 1500),
			addr(event.NewAddr, i+1, fmt.Sprintf("veth%d", i), fmt.Sprintf("10.%d.%d.1/24", i>>8, i&0xff)))
	}
	var out []event.Event
	for _, ev := range evs {
		out, _ = tb.Apply(ev, false, out[:0])
		for i := range out {
			tb.Published(&out[i], true)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		i++
		ev.Link.MTU++
		out, _ = tb.Apply(ev, false, out[:0])
		for i := range out {
			tb.Published(&out[i], true)
		}
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
	tb := New(nil)
	publish(tb, link(event.NewLink, 2, "ppp0", 1500), true)
	for _, ev := range []*event.Event{
		peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.3/32"),
		peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.2/32"),
		addr(event.NewAddr, 2, "ppp0", "10.9.0.1/32"),
		addr(event.NewAddr, 2, "ppp0", "10.9.0.1/24"),
		addr6(event.NewAddr, 2, "2001:db8::1/64"),
	} {
		_, before := tb.Len()
		out := publish(tb, ev, true)
		if _, after := tb.Len(); len(out) != 1 || after != before+1 {
			t.Errorf("NEWADDR %s: known, want a new address", ev.Addr.ID())
		}
	}
	if _, n := tb.Len(); n != 5 {
		t.Errorf("Len: %d addresses, want 5", n)
	}
	// An IPv6 address seen again with another prefix length (deleted and
	// added again while the messages were lost) is the same address.
	out := publish(tb, addr6(event.NewAddr, 2, "2001:db8::1/56"), true)
	if _, n := tb.Len(); len(out) != 1 || n != 5 || !slices.Equal(fieldNames(out[0].Changed), []string{"prefix_len"}) {
		t.Errorf("IPv6 prefix length change: %d addresses, published %+v, want 5 and changed [prefix_len]", n, out)
	}
	// A resync that shows all but one of the peers deletes that one, not
	// its namesake. The order is the keys', every time.
	for range 20 {
		tb := New(nil)
		publish(tb, link(event.NewLink, 2, "ppp0", 1500), true)
		for _, p := range []string{"10.9.0.4/32", "10.9.0.2/32", "10.9.0.3/32", "10.9.0.3/31"} {
			publish(tb, peerAddr(event.NewAddr, 2, "10.9.0.1", p), true)
		}
		tb.BeginDump()
		publish(tb, link(event.NewLink, 2, "ppp0", 1500), true)
		if out := publish(tb, peerAddr(event.NewAddr, 2, "10.9.0.1", "10.9.0.3/32"), true); len(out) != 0 {
			t.Fatalf("dumped again: published %+v, want nothing", out)
		}
		var got []string
		for _, ev := range tb.Vanished("", nil) {
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
			tb := New(nil)
			publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
			publish(tb, tt.readings[0], true)
			for i, ev := range tt.readings[1:] {
				out := publish(tb, ev, true)
				var got []string
				if len(out) > 0 {
					got = fieldNames(out[0].Changed)
				}
				if (len(out) > 0) != (tt.want[i] != nil) || !slices.Equal(got, tt.want[i]) {
					t.Errorf("reading %d (%v later, valid %d, preferred %d): changed %v, want %v",
						i+1, ev.Time.Sub(t0), ev.Addr.ValidLft, ev.Addr.PreferredLft, got, tt.want[i])
				}
			}
		})
	}
	// A deleted address that comes back is measured from its return.
	tb := New(nil)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, at(0, 1000, 500), true)
	publish(tb, &event.Event{Type: event.DelAddr, Time: t0.Add(10 * time.Second), Addr: at(0, 990, 490).Addr}, false)
	publish(tb, at(20*time.Second, 1000, 500), true)
	if out := publish(tb, at(30*time.Second, 990, 490), true); len(out) != 0 {
		t.Errorf("address added again, then counting down: published %+v, want nothing", out)
	}
}

// An address of a link the table does not know (its NEWLINK was lost)
// waits for the link: it is published after the link's NEWLINK, with the
// link's name, and forgotten by a dump that does not show it. Consumers
// never hold an address of a link they do not hold.
func TestAddrBeforeLink(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	for _, a := range []string{"192.0.2.1/24", "2001:db8::1/64"} {
		if out := publish(tb, addr(event.NewAddr, 3, "", a), true); len(out) != 0 {
			t.Errorf("NEWADDR %s of unknown link 3: published %v, want nothing", a, summary(out))
		}
	}
	if l, a := tb.Len(); l != 1 || a != 0 {
		t.Errorf("Len = %d, %d, want 1, 0: consumers are to hold no address of a link they do not hold", l, a)
	}
	if got := reconcile(tb); len(got) != 0 {
		t.Errorf("Dirty = %v, want nothing", got)
	}
	// The link arrives, as a notification: its addresses follow it, named.
	out := publish(tb, link(event.NewLink, 3, "e0", 1500), true)
	want := []string{"NEWLINK e0", "NEWADDR e0 192.0.2.1", "NEWADDR e0 2001:db8::1"}
	if got := summary(out); !slices.Equal(got, want) {
		t.Errorf("NEWLINK e0: published %q, want %q", got, want)
	}
	for _, m := range out {
		if m.Dump || m.Changed != 0 {
			t.Errorf("%v: dump %v, changed %v, want a new object's notification", summary([]event.Event{m}), m.Dump, m.Changed)
		}
	}
	// The resync's dump shows them as consumers hold them.
	tb.BeginDump()
	for _, ev := range []*event.Event{link(event.NewLink, 2, "eth0", 1500), link(event.NewLink, 3, "e0", 1500),
		addr(event.NewAddr, 3, "e0", "192.0.2.1/24"), addr(event.NewAddr, 3, "e0", "2001:db8::1/64")} {
		ev.Dump = true
		if out := publish(tb, ev, true); len(out) != 0 {
			t.Errorf("resync: published %v, want nothing", summary(out))
		}
	}
	if out := tb.Vanished("", nil); len(out) != 0 {
		t.Errorf("Vanished = %v, want nothing", summary(out))
	}

	// An address waiting for a link that the resync's dump does not show
	// is forgotten; so is one of a link deleted before it was read.
	publish(tb, addr(event.NewAddr, 4, "", "198.51.100.1/24"), true)
	publish(tb, link(event.DelLink, 3, "e0", 1500), true)
	publish(tb, addr(event.NewAddr, 3, "e0", "2001:db8::2/64"), true)
	size := tb.Size()
	tb.BeginDump()
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	if out := tb.Vanished("", nil); len(out) != 0 {
		t.Errorf("Vanished = %v, want nothing: consumers never held the waiting addresses", summary(out))
	}
	if got := tb.Size(); got != 1 || size != 3 {
		t.Errorf("table size %d before the dump, %d after, want 3 and 1 (eth0)", size, got)
	}

	// Published while NATS is unreachable, the link and its address are
	// caught up in that order.
	publish(tb, addr(event.NewAddr, 5, "", "203.0.113.1/24"), false)
	publish(tb, link(event.NewLink, 5, "e1", 1500), false)
	if got, want := reconcile(tb), []string{"NEWLINK e1", "NEWADDR e1 203.0.113.1"}; !slices.Equal(got, want) {
		t.Errorf("Dirty = %q, want %q", got, want)
	}
}

// families is a Scope: every name, the families it holds.
type families []event.Family

func (families) AllowName(string) bool               { return true }
func (f families) AllowFamily(fam event.Family) bool { return slices.Contains(f, fam) }

// both is a Scope: a name passes names and a family passes fams.
type both struct {
	names prefixes
	fams  families
}

func (b both) AllowName(name string) bool        { return b.names.AllowName(name) }
func (b both) AllowFamily(fam event.Family) bool { return b.fams.AllowFamily(fam) }

// An address that Apply reports as not in scope waits for its link when
// the link is not known to exist and the address is in scope by family
// and, when it has one, by name; not once its link arrives, nor when the
// scope leaves it out.
func TestAddrWaits(t *testing.T) {
	ipv4 := families{event.Inet}
	for _, tt := range []struct {
		name  string
		scope Scope
		ev    *event.Event
		want  bool // before the link arrives
	}{
		{"no scope", nil, addr(event.NewAddr, 3, "", "192.0.2.1/24"), true},
		{"no scope, named", nil, addr(event.NewAddr, 3, "keep0", "2001:db8::1/64"), true},
		{"name in scope", prefixes{"keep"}, addr(event.NewAddr, 3, "keep0", "192.0.2.1/24"), true},
		{"name unknown", prefixes{"keep"}, addr(event.NewAddr, 3, "", "192.0.2.1/24"), true},
		{"name out of scope", prefixes{"keep"}, addr(event.NewAddr, 3, "other0", "192.0.2.1/24"), false},
		{"family in scope", ipv4, addr(event.NewAddr, 3, "", "192.0.2.1/24"), true},
		{"family out of scope", ipv4, addr(event.NewAddr, 3, "", "2001:db8::1/64"), false},
		{"family out, name in", both{prefixes{"keep"}, ipv4}, addr(event.NewAddr, 3, "keep0", "2001:db8::1/64"), false},
		{"family in, name out", both{prefixes{"keep"}, ipv4}, addr(event.NewAddr, 3, "other0", "192.0.2.1/24"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(tt.scope)
			publish(tb, link(event.NewLink, 2, "keep-eth0", 1500), true)
			out, visible := tb.Apply(tt.ev, false, nil)
			if visible || len(out) != 0 {
				t.Fatalf("NEWADDR before its link: visible %v, out %v, want not visible and nothing", visible, summary(out))
			}
			if got := tb.AddrWaits(&tt.ev.Addr); got != tt.want {
				t.Errorf("before the link: AddrWaits = %v, want %v", got, tt.want)
			}
			// An address of a link the table knows never waits, even one
			// out of scope.
			other := addr(event.NewAddr, 2, "keep-eth0", "198.51.100.1/24")
			other.Addr.Family, other.Addr.Address = tt.ev.Addr.Family, tt.ev.Addr.Address
			if tb.AddrWaits(&other.Addr) {
				t.Errorf("an address of link 2, which exists: AddrWaits = true, want false")
			}

			// The link arrives, named as the address says (keep0 when it
			// says nothing): the address no longer waits, and went out
			// with the link when it waited.
			name := cmp.Or(tt.ev.Addr.Ifname, "keep0")
			out = publish(tb, link(event.NewLink, 3, name, 1500), true)
			if got := tb.AddrWaits(&tt.ev.Addr); got {
				t.Errorf("after the link: AddrWaits = true, want false (published %v)", summary(out))
			}
			published := slices.Contains(summary(out), fmt.Sprintf("NEWADDR %s %s", name, tt.ev.Addr.Address))
			if published != tt.want {
				t.Errorf("NEWLINK %s: published %v, address with it %v, want %v", name, summary(out), published, tt.want)
			}

			// Deleted while NATS is unreachable, the link is kept as a
			// tombstone for its DELLINK: it does not exist, and its next
			// addresses wait again.
			publish(tb, link(event.DelLink, 3, name, 1500), false)
			if _, visible := tb.Apply(tt.ev, false, nil); visible {
				t.Fatal("NEWADDR of a deleted link: visible, want held back")
			}
			if got := tb.AddrWaits(&tt.ev.Addr); got != tt.want {
				t.Errorf("after DELLINK: AddrWaits = %v, want %v", got, tt.want)
			}
		})
	}
}
