// Package state keeps what nlbridge knows of the kernel's links and
// addresses and whether consumers have been told. It lets the sink publish
// only what changed (repeated notifications that change nothing are
// dropped), publish deletions for objects that vanished while the kernel's
// messages were lost, and, after a NATS outage, publish one message per
// object that changed meanwhile rather than a backlog: an interface that
// flapped a thousand times costs one message.
package state

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// Table is the state. It is not safe for concurrent use.
type Table struct {
	links map[uint32]*linkEntry
	addrs map[AddrKey]*addrEntry
	gen   uint32 // the current dump's generation; entries seen in it carry it
}

// entry is what every object carries besides its value.
type entry struct {
	seen      uint32 // generation of the last dump or event that showed it
	published bool   // consumers hold the current value (or its deletion)
	deleted   bool   // a tombstone: the deletion is not published yet
}

type linkEntry struct {
	entry
	v event.Link
}

type addrEntry struct {
	entry
	v event.Addr
	// lft is the reading of the lifetimes that later ones are compared
	// with: that of the last value whose lifetimes changed in substance,
	// so that lifetimes counting down are no change and the kernel's
	// rounding cannot add up to one.
	lft lifetimes
}

// AddrKey identifies an address as the kernel does, and as event.Addr.ID
// names it within its interface: an IPv4 address by interface index, local
// address, prefix length and peer (one local address can be on an
// interface once per peer); an IPv6 address by interface index and address
// alone, with PrefixLen and Peer zero (the kernel refuses an IPv6 address
// twice whatever the prefix length, and can change the peer in place).
type AddrKey struct {
	Index     uint32
	Family    event.Family
	Addr      netip.Addr
	PrefixLen uint8
	Peer      netip.Addr // invalid when there is none
}

func keyOf(a *event.Addr) AddrKey {
	k := AddrKey{Index: a.Index, Family: a.Family, Addr: a.Address.WithZone("")}
	if a.Family != event.Inet6 {
		k.PrefixLen, k.Peer = a.PrefixLen, a.Peer.WithZone("")
	}
	return k
}

// compare orders keys by index, family, address, prefix length and peer.
func (k AddrKey) compare(o AddrKey) int {
	return cmp.Or(cmp.Compare(k.Index, o.Index), cmp.Compare(k.Family, o.Family), k.Addr.Compare(o.Addr),
		cmp.Compare(k.PrefixLen, o.PrefixLen), k.Peer.Compare(o.Peer))
}

// New returns an empty table.
func New() *Table {
	return &Table{links: make(map[uint32]*linkEntry), addrs: make(map[AddrKey]*addrEntry)}
}

// Update records a NEWLINK, DELLINK, NEWADDR or DELADDR. It reports whether
// the object was known, and for a NEW of a known object the fields that
// differ (bits of event.LinkFields or event.AddrFields) and whether
// consumers held the previous value. The caller decides whether to publish
// and then calls Published.
func (t *Table) Update(ev *event.Event) (known bool, changed uint32, wasPublished bool) {
	switch ev.Type {
	case event.NewLink:
		e, ok := t.links[ev.Link.Index]
		if !ok {
			e = &linkEntry{}
			t.links[ev.Link.Index] = e
		} else if !e.deleted {
			changed = linkChanges(&e.v, &ev.Link)
		}
		known, wasPublished = ok && !e.deleted, e.published
		e.v, e.seen, e.deleted = ev.Link, t.gen, false
		if !known || changed != 0 {
			e.published = false
		}
	case event.DelLink:
		e, ok := t.links[ev.Link.Index]
		if !ok {
			e = &linkEntry{v: ev.Link}
			t.links[ev.Link.Index] = e
		}
		known, wasPublished = ok && !e.deleted, e.published
		e.deleted, e.published = true, false
		// The link's addresses go with it. The kernel sends their DELADDR
		// too, before or after; a consumer applying either order ends the
		// same, and the table holds no orphans in the meantime.
		for k := range t.addrs {
			if k.Index == ev.Link.Index {
				delete(t.addrs, k)
			}
		}
	case event.NewAddr:
		k := keyOf(&ev.Addr)
		e, ok := t.addrs[k]
		if !ok {
			e = &addrEntry{}
			t.addrs[k] = e
		} else if !e.deleted {
			changed = addrChanges(e, ev)
		}
		if !ok || e.deleted {
			e.lft = lifetimesOf(ev)
		}
		known, wasPublished = ok && !e.deleted, e.published
		e.v, e.seen, e.deleted = ev.Addr, t.gen, false
		if !known || changed != 0 {
			e.published = false
		}
	case event.DelAddr:
		k := keyOf(&ev.Addr)
		e, ok := t.addrs[k]
		if !ok {
			e = &addrEntry{v: ev.Addr}
			t.addrs[k] = e
		}
		known, wasPublished = ok && !e.deleted, e.published
		e.deleted, e.published = true, false
	}
	return known, changed, wasPublished
}

// Published records whether ev, which Update has seen, reached NATS. A
// published deletion forgets the object; an unpublished change or deletion
// stays for Dirty.
func (t *Table) Published(ev *event.Event, ok bool) {
	switch ev.Type {
	case event.NewLink, event.DelLink:
		if e := t.links[ev.Link.Index]; e != nil {
			if ok && e.deleted {
				delete(t.links, ev.Link.Index)
			} else {
				e.published = ok
			}
		}
	case event.NewAddr, event.DelAddr:
		k := keyOf(&ev.Addr)
		if e := t.addrs[k]; e != nil {
			if ok && e.deleted {
				delete(t.addrs, k)
			} else {
				e.published = ok
			}
		}
	}
}

// BeginDump starts a dump: objects that neither the dump nor an event shows
// before EndDump have vanished.
func (t *Table) BeginDump() { t.gen++ }

// Vanished returns, as DELLINK and DELADDR events, the objects that the
// current dump did not show, restricted to the interface named iface when
// it is not empty: addresses first, then links, each by index. Their
// entries become tombstones until Published.
func (t *Table) Vanished(iface string) []event.Event {
	var out []event.Event
	for _, e := range sortedAddrs(t.addrs) {
		if !e.deleted && e.seen != t.gen && (iface == "" || e.v.Ifname == iface) {
			e.deleted, e.published = true, false
			out = append(out, event.Event{Type: event.DelAddr, Addr: e.v})
		}
	}
	for _, e := range sortedLinks(t.links) {
		if !e.deleted && e.seen != t.gen && (iface == "" || e.v.Name == iface) {
			e.deleted, e.published = true, false
			out = append(out, event.Event{Type: event.DelLink, Link: e.v})
		}
	}
	return out
}

// Dirty returns what consumers do not hold yet, as events that make them
// equal to the table: deletions of addresses, then of links, then links,
// then addresses, each by index.
func (t *Table) Dirty() []event.Event {
	var dels, news []event.Event
	addrs, links := sortedAddrs(t.addrs), sortedLinks(t.links)
	for _, e := range addrs {
		if !e.published && e.deleted {
			dels = append(dels, event.Event{Type: event.DelAddr, Addr: e.v})
		}
	}
	for _, e := range links {
		if e.published {
			continue
		}
		if e.deleted {
			dels = append(dels, event.Event{Type: event.DelLink, Link: e.v})
		} else {
			news = append(news, event.Event{Type: event.NewLink, Link: e.v})
		}
	}
	for _, e := range addrs {
		if !e.published && !e.deleted {
			news = append(news, event.Event{Type: event.NewAddr, Addr: e.v})
		}
	}
	return append(dels, news...)
}

// Len returns how many links and addresses exist (tombstones aside).
func (t *Table) Len() (links, addrs int) {
	for _, e := range t.links {
		if !e.deleted {
			links++
		}
	}
	for _, e := range t.addrs {
		if !e.deleted {
			addrs++
		}
	}
	return links, addrs
}

func sortedLinks(m map[uint32]*linkEntry) []*linkEntry {
	out := make([]*linkEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *linkEntry) int { return cmp.Compare(a.v.Index, b.v.Index) })
	return out
}

func sortedAddrs(m map[AddrKey]*addrEntry) []*addrEntry {
	out := make([]*addrEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *addrEntry) int { return keyOf(&a.v).compare(keyOf(&b.v)) })
	return out
}

// linkChanges returns the bits of event.LinkFields that differ.
func linkChanges(a, b *event.Link) uint32 {
	var c uint32
	set := func(bit int, differ bool) {
		if differ {
			c |= 1 << bit
		}
	}
	set(0, a.Name != b.Name)
	set(1, a.Kind != b.Kind)
	set(2, a.State != b.State)
	set(3, a.Enabled() != b.Enabled())
	set(4, a.Running() != b.Running())
	set(5, a.MTU != b.MTU)
	set(6, string(a.MAC) != string(b.MAC))
	set(7, a.Master != b.Master)
	set(8, a.Parent != b.Parent)
	set(9, a.Alias != b.Alias)
	set(10, a.Carrier != b.Carrier)
	set(11, a.Flags != b.Flags)
	return c
}

// addrChanges returns the bits of event.AddrFields in which ev's address
// differs from e's. Lifetimes count down, so they are compared by when they
// end; when that changes, ev's lifetimes become e's reference.
func addrChanges(e *addrEntry, ev *event.Event) uint32 {
	a, b := &e.v, &ev.Addr
	var c uint32
	set := func(bit int, differ bool) {
		if differ {
			c |= 1 << bit
		}
	}
	set(0, a.Ifname != b.Ifname)
	set(1, a.Peer != b.Peer)
	set(2, a.Broadcast != b.Broadcast)
	set(3, a.Scope != b.Scope)
	set(4, a.Label != b.Label)
	set(5, a.Flags != b.Flags)
	set(6, !sameEnd(e.lft.at, e.lft.valid, ev.Time, b.ValidLft))
	set(7, !sameEnd(e.lft.at, e.lft.preferred, ev.Time, b.PreferredLft))
	set(8, a.PrefixLen != b.PrefixLen)
	if c&(1<<6|1<<7) != 0 {
		e.lft = lifetimesOf(ev)
	}
	return c
}

// lifetimes is a reading of an address's lifetimes: the seconds left
// (event.Forever for none) and when nlbridge read them.
type lifetimes struct {
	at               time.Time
	valid, preferred uint32
}

func lifetimesOf(ev *event.Event) lifetimes {
	return lifetimes{ev.Time, ev.Addr.ValidLft, ev.Addr.PreferredLft}
}

// lifetimeSlack is how far apart two readings can put the end of one
// lifetime. The kernel reports the seconds left as the lifetime less the
// whole seconds elapsed, so an end computed from a reading is up to a
// second late; and nlbridge stamps a message when it reads it, a little
// after the kernel wrote it.
const lifetimeSlack = 2 * time.Second

// sameEnd reports whether a lifetime with lft seconds left at t ends when
// one with ref seconds left at refAt does: both forever, or within
// lifetimeSlack of each other.
func sameEnd(refAt time.Time, ref uint32, t time.Time, lft uint32) bool {
	if lft == event.Forever || ref == event.Forever {
		return lft == ref
	}
	refEnd := refAt.Add(time.Duration(ref) * time.Second)
	end := t.Add(time.Duration(lft) * time.Second)
	if lft == 0 {
		// Run out: the kernel reports 0 from then on, whenever it is read.
		return refEnd.Before(end.Add(lifetimeSlack))
	}
	d := end.Sub(refEnd)
	return d > -lifetimeSlack && d < lifetimeSlack
}
