// Package state keeps what nlbridge knows of the kernel's links and
// addresses and what consumers hold of them. It decides what the sink
// publishes: nothing for a notification that changes nothing consumers
// hold, a deletion for an object that vanished while the kernel's messages
// were lost or that left the filter, and, after a NATS outage, exactly the
// messages that take consumers from what they hold to the kernel's state:
// an interface that flapped a thousand times costs one message, and a link
// deleted and created again with the same index costs its DELLINK and its
// NEWLINK.
package state

import (
	"cmp"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// Scope decides which objects consumers see: a link by its name, an
// address by its family and its link's name. *filter.Filter is a Scope.
type Scope interface {
	AllowName(name string) bool
	AllowFamily(f event.Family) bool
}

// Table is the state. It is not safe for concurrent use.
//
// It holds every link and address of the kernel, in the scope or not, so
// that a link renamed into the scope can be published with its addresses;
// and a tombstone for each deleted object that consumers still hold.
// Memory is bounded by the number of objects the kernel has, plus the
// deletions not yet published: objects created and deleted while nothing
// could be published leave nothing behind.
type Table struct {
	links map[uint32]*linkEntry
	addrs map[AddrKey]*addrEntry
	// byLink holds the entries of addrs by their link's index (k.Index),
	// so that a link's addresses are found without a scan of every
	// address: a DELLINK on a host with many addresses must not cost them
	// all. putAddr and dropAddr keep it in step with addrs; a link with
	// no address has no set.
	byLink map[uint32]map[AddrKey]*addrEntry
	scope  Scope  // nil: everything is in scope
	gen    uint32 // the current dump's generation; entries seen in it carry it
	// scan makes addrsOf scan every address instead of using byLink, as
	// the table did before it had the index: tests compare the two and
	// benchmarks measure the difference.
	scan bool
}

// entry is what every object carries besides its value.
type entry struct {
	seen    uint32 // generation of the last dump or event that showed it
	exists  bool   // the kernel has the object; false: a tombstone
	visible bool   // in scope: consumers are to hold it while it exists
	held    bool   // consumers hold it: a NEW was published, and no DEL since
	// synced is true when consumers hold what they should: the current
	// value when the object exists and is visible, nothing otherwise.
	synced bool
}

// want reports whether consumers are to hold the object.
func (e *entry) want() bool { return e.exists && e.visible }

type linkEntry struct {
	entry
	v   event.Link
	pub event.Link // what consumers hold, while held
	// reborn: consumers hold an earlier link with this index, deleted
	// while nothing could be published, whose index the kernel gave to a
	// new link (ip link add ... index N, SR-IOV, namespace moves). Its
	// DELLINK must come before the new link's NEWLINK, or consumers would
	// keep the earlier link's addresses.
	reborn bool
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

// KeyOf returns a's key.
func KeyOf(a *event.Addr) AddrKey {
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

// New returns an empty table that publishes the objects scope allows (all
// of them when scope is nil).
func New(scope Scope) *Table {
	return &Table{links: make(map[uint32]*linkEntry), addrs: make(map[AddrKey]*addrEntry),
		byLink: make(map[uint32]map[AddrKey]*addrEntry), scope: scope}
}

// putAddr stores e as the address with key k.
func (t *Table) putAddr(k AddrKey, e *addrEntry) {
	t.addrs[k] = e
	set := t.byLink[k.Index]
	if set == nil {
		set = make(map[AddrKey]*addrEntry)
		t.byLink[k.Index] = set
	}
	set[k] = e
}

// dropAddr forgets the address with key k.
func (t *Table) dropAddr(k AddrKey) {
	delete(t.addrs, k)
	if set := t.byLink[k.Index]; set != nil {
		delete(set, k)
		if len(set) == 0 {
			delete(t.byLink, k.Index)
		}
	}
}

// addrsOf yields the addresses of the link at index, tombstones included,
// in no order. The loop may drop the address it is given (dropAddr).
func (t *Table) addrsOf(index uint32) iter.Seq2[AddrKey, *addrEntry] {
	return func(yield func(AddrKey, *addrEntry) bool) {
		if t.scan {
			for k, a := range t.addrs {
				if k.Index == index && !yield(k, a) {
					return
				}
			}
			return
		}
		for k, a := range t.byLink[index] {
			if !yield(k, a) {
				return
			}
		}
	}
}

func (t *Table) allowName(name string) bool { return t.scope == nil || t.scope.AllowName(name) }

// addrVisible reports whether a is in scope: its family is, and so is its
// link (by the link's current name when the table knows the link).
func (t *Table) addrVisible(a *event.Addr) bool {
	if t.scope != nil && !t.scope.AllowFamily(a.Family) {
		return false
	}
	if l := t.links[a.Index]; l != nil && l.exists {
		return l.visible
	}
	return t.allowName(a.Ifname)
}

// Apply records ev, a NEWLINK, DELLINK, NEWADDR or DELADDR from a
// notification or a dump, and appends to out the messages that take
// consumers from what they hold to the new state, in the order to publish
// them. The caller publishes them in that order, reports each with
// Published, and stops at the first that fails (reporting the rest as not
// published). With force, an object that exists and is in scope is
// published even when consumers hold it already, as a full dump does.
// Apply reports whether ev's object is in scope.
//
// What it appends: for a notification, usually ev itself (with Changed
// set on an update of an object consumers hold), or nothing when
// consumers hold it already; a DELLINK of the link consumers hold before
// the NEWLINK of a new link with the same index; a DELLINK for a link
// renamed out of the scope; a NEWLINK and the link's addresses for one
// renamed into it.
func (t *Table) Apply(ev *event.Event, force bool, out []event.Event) ([]event.Event, bool) {
	switch ev.Type {
	case event.NewLink:
		return t.newLink(ev, force, out)
	case event.DelLink:
		return t.delLink(ev, out)
	case event.NewAddr:
		return t.newAddr(ev, force, out)
	case event.DelAddr:
		return t.delAddr(ev, out)
	}
	return out, true
}

func (t *Table) newLink(ev *event.Event, force bool, out []event.Event) ([]event.Event, bool) {
	l := &ev.Link
	e := t.links[l.Index]
	if e == nil {
		e = &linkEntry{}
		t.links[l.Index] = e
	}
	existed, wasVisible := e.exists, e.exists && e.visible
	if !e.exists && e.held {
		e.reborn = true
	}
	e.v, e.exists, e.seen = *l, true, t.gen
	e.visible = t.allowName(l.Name)
	var changed uint32
	if e.held && !e.reborn {
		changed = linkChanges(&e.pub, l)
	}
	if changed != 0 || !e.held || e.reborn || !e.visible {
		e.synced = e.held == e.visible && !e.reborn && changed == 0
	}
	entering := existed && !wasVisible && e.visible
	if existed && e.visible != wasVisible {
		t.rescope(l.Index, e) // renamed into or out of the scope
	}
	if e.held && (e.reborn || !e.visible) {
		out = append(out, linkMsg(event.DelLink, ev, &e.pub))
	}
	if !e.visible {
		return out, false
	}
	if !e.synced || force {
		m := *ev
		m.Changed = 0
		if e.held && !e.reborn && !ev.Dump {
			m.Changed = changed
		}
		out = append(out, m)
	}
	if entering {
		// The link's addresses, known while it was out of scope, enter
		// with it.
		out = t.appendAddrsOf(l.Index, ev, out)
	}
	return out, true
}

// rescope sets the visibility of the addresses of the link at index,
// whose own visibility changed, and gives them the link's current name.
func (t *Table) rescope(index uint32, l *linkEntry) {
	for _, a := range t.addrsOf(index) {
		if !a.exists {
			continue
		}
		a.v.Ifname = l.v.Name
		a.visible = (t.scope == nil || t.scope.AllowFamily(a.v.Family)) && l.visible
		a.synced = a.held == a.visible && a.synced
	}
}

// appendAddrsOf appends a NEWADDR for every address of the link at index
// that is in scope and that consumers do not hold, in key order.
func (t *Table) appendAddrsOf(index uint32, ev *event.Event, out []event.Event) []event.Event {
	var found []*addrEntry
	for _, a := range t.addrsOf(index) {
		if a.want() && !a.held {
			found = append(found, a)
		}
	}
	slices.SortFunc(found, compareAddrs)
	for _, a := range found {
		out = append(out, event.Event{Type: event.NewAddr, Time: ev.Time, Dump: ev.Dump, Addr: a.v})
	}
	return out
}

// linkMsg returns a message of type typ about l, timed and framed as ev.
func linkMsg(typ event.Type, ev *event.Event, l *event.Link) event.Event {
	return event.Event{Type: typ, Time: ev.Time, Dump: ev.Dump, Link: *l}
}

func (t *Table) delLink(ev *event.Event, out []event.Event) ([]event.Event, bool) {
	l := &ev.Link
	e := t.links[l.Index]
	if e == nil {
		// Unknown: the kernel's word is passed on, and nothing is kept.
		t.dropAddrs(l.Index, true)
		if !t.allowName(l.Name) {
			return out, false
		}
		return append(out, *ev), true
	}
	visible := e.visible
	t.dropAddrs(l.Index, e.held)
	if !e.held {
		// Consumers never held it (out of scope, or created while nothing
		// could be published): nothing to tell them, nothing to keep.
		delete(t.links, l.Index)
		return out, visible
	}
	e.exists, e.synced, e.seen = false, false, t.gen
	if e.reborn || !e.visible {
		// Consumers hold the earlier link, or the link as it was when it
		// left the scope.
		e.reborn = false
		return append(out, linkMsg(event.DelLink, ev, &e.pub)), visible
	}
	e.v = *l
	return append(out, *ev), true
}

// dropAddrs forgets the addresses of the deleted link at index. When
// consumers hold the link, its DELLINK takes the addresses they hold with
// it; otherwise those they hold become tombstones, for their DELADDR.
func (t *Table) dropAddrs(index uint32, linkHeld bool) {
	for k, a := range t.addrsOf(index) {
		if linkHeld || !a.held {
			t.dropAddr(k)
		} else {
			a.exists, a.synced = false, false
		}
	}
}

func (t *Table) newAddr(ev *event.Event, force bool, out []event.Event) ([]event.Event, bool) {
	a := &ev.Addr
	k := KeyOf(a)
	e := t.addrs[k]
	if e == nil {
		e = &addrEntry{}
		t.putAddr(k, e)
	}
	var changed uint32
	if e.held && e.exists {
		changed = addrChanges(e, ev)
	} else {
		e.lft = lifetimesOf(ev) // consumers hold no value to compare with
	}
	if !e.exists || changed != 0 {
		e.synced = false
	}
	e.v, e.exists, e.seen = *a, true, t.gen
	e.visible = t.addrVisible(a)
	if e.held != e.visible {
		e.synced = false
	} else if !e.held {
		e.synced = true // out of scope, and consumers hold nothing
	}
	if !e.visible {
		if e.held {
			out = append(out, event.Event{Type: event.DelAddr, Time: ev.Time, Dump: ev.Dump, Addr: *a})
		}
		return out, false
	}
	if !e.synced || force {
		m := *ev
		m.Changed = 0
		if e.held && !ev.Dump {
			m.Changed = changed
		}
		out = append(out, m)
	}
	return out, true
}

func (t *Table) delAddr(ev *event.Event, out []event.Event) ([]event.Event, bool) {
	a := &ev.Addr
	k := KeyOf(a)
	e := t.addrs[k]
	if e == nil {
		if !t.addrVisible(a) {
			return out, false
		}
		return append(out, *ev), true // unknown: the kernel's word
	}
	visible := e.visible
	if !e.held {
		t.dropAddr(k)
		return out, visible
	}
	e.exists, e.synced, e.seen = false, false, t.gen
	return append(out, *ev), true
}

// Published records whether m, a message that Apply, Vanished or Dirty
// returned, reached NATS. A published deletion of an object that no longer
// exists forgets it; what was not published is returned by Dirty.
func (t *Table) Published(m *event.Event, ok bool) {
	switch m.Type {
	case event.NewLink:
		if e := t.links[m.Link.Index]; e != nil {
			if ok {
				e.held, e.reborn, e.pub = true, false, m.Link
				e.synced = e.want() && linkChanges(&e.pub, &e.v) == 0
			} else {
				e.synced = false
			}
		}
	case event.DelLink:
		e := t.links[m.Link.Index]
		switch {
		case e == nil:
		case !ok:
			e.synced = false
		case !e.exists:
			delete(t.links, m.Link.Index)
		default:
			// The link lives on (out of scope, or a new incarnation):
			// consumers dropped it and every address they held of it.
			e.held, e.reborn, e.synced = false, false, !e.want()
			for k, a := range t.addrsOf(m.Link.Index) {
				if a.held {
					a.held, a.synced = false, !a.want()
					if !a.exists {
						t.dropAddr(k)
					}
				}
			}
		}
	case event.NewAddr, event.DelAddr:
		k := KeyOf(&m.Addr)
		e := t.addrs[k]
		switch {
		case e == nil:
		case !ok:
			e.synced = false
		case m.Type == event.DelAddr && !e.exists:
			t.dropAddr(k)
		default:
			e.held = m.Type == event.NewAddr
			e.synced = e.held == e.want()
		}
	}
}

// BeginDump starts a dump: objects that neither the dump nor an event shows
// before Vanished have vanished.
func (t *Table) BeginDump() { t.gen++ }

// Vanished records as deleted the objects that the current dump did not
// show, restricted to the interface named iface when it is not empty (the
// link of that name and its addresses, as the kernel's narrowed dump
// reads them: by the link's index), and appends to out the deletions
// consumers need, as dump messages: addresses first, then links, each in
// key order.
func (t *Table) Vanished(iface string, out []event.Event) []event.Event {
	addrs := t.addrs
	if iface != "" {
		addrs = make(map[AddrKey]*addrEntry)
		for i, e := range t.links {
			if e.v.Name == iface {
				maps.Insert(addrs, t.addrsOf(i))
			}
		}
	}
	for _, e := range sortedAddrs(addrs) {
		if e.exists && e.seen != t.gen {
			del := event.Event{Type: event.DelAddr, Dump: true, Addr: e.v}
			out, _ = t.delAddr(&del, out)
		}
	}
	for _, e := range sortedLinks(t.links) {
		if e.exists && e.seen != t.gen && (iface == "" || e.v.Name == iface) {
			del := event.Event{Type: event.DelLink, Dump: true, Link: e.v}
			out, _ = t.delLink(&del, out)
		}
	}
	return out
}

// Dirty returns the messages that take consumers from what they hold to
// the table's state: deletions of addresses, then of links, then links,
// then addresses, each in key order. They are marked as dump messages.
func (t *Table) Dirty() []event.Event {
	var dels, news []event.Event
	addrs, links := sortedAddrs(t.addrs), sortedLinks(t.links)
	for _, e := range addrs {
		if !e.synced && e.held && !e.want() {
			dels = append(dels, event.Event{Type: event.DelAddr, Dump: true, Addr: e.v})
		}
	}
	for _, e := range links {
		if e.synced {
			continue
		}
		if e.held && (e.reborn || !e.want()) {
			dels = append(dels, event.Event{Type: event.DelLink, Dump: true, Link: e.pub})
		}
		if e.want() {
			news = append(news, event.Event{Type: event.NewLink, Dump: true, Link: e.v})
		}
	}
	for _, e := range addrs {
		if !e.synced && e.want() {
			news = append(news, event.Event{Type: event.NewAddr, Dump: true, Addr: e.v})
		}
	}
	return append(dels, news...)
}

// Len returns how many links and addresses consumers are to hold: those
// that exist and are in scope.
func (t *Table) Len() (links, addrs int) {
	for _, e := range t.links {
		if e.want() {
			links++
		}
	}
	for _, e := range t.addrs {
		if e.want() {
			addrs++
		}
	}
	return links, addrs
}

// Size returns how many entries the table holds, tombstones and objects
// out of scope included: what its memory grows with.
func (t *Table) Size() int { return len(t.links) + len(t.addrs) }

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
	slices.SortFunc(out, compareAddrs)
	return out
}

func compareAddrs(a, b *addrEntry) int { return KeyOf(&a.v).compare(KeyOf(&b.v)) }

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
