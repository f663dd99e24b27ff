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
	"bytes"
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
	// byLink holds the first entry of addrs of each link index (k.Index);
	// the others follow it through next. A link's addresses are found
	// without a scan of every address (a DELLINK on a host with many
	// addresses must not cost them all), for two pointers per address: a
	// map of them per link cost ten times that. putAddr and dropAddr keep
	// it in step with addrs; a link with no address has no entry.
	byLink map[uint32]*addrEntry
	scope  Scope  // nil: everything is in scope
	gen    uint32 // the current dump's generation; entries seen in it carry it
	// epoch is when the table was made: lifetimes readings are kept as
	// the time since, which is monotonic when the readings' times are.
	epoch time.Time
	// spare holds link values no longer needed as linkEntry.pub, for the
	// next one: a change to a link consumers hold then allocates nothing.
	spare []*event.Link
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

// heldValue returns what consumers hold of the link, while they hold it.
func (e *linkEntry) heldValue() *event.Link {
	if e.pub != nil {
		return e.pub
	}
	return &e.v
}

// setValue makes l the link's value, keeping apart what consumers hold
// when it differs.
func (t *Table) setValue(e *linkEntry, l *event.Link) {
	if e.held && e.pub == nil && linkChanges(&e.v, l) != 0 {
		e.pub = t.linkCopy(&e.v)
	}
	e.v = *l
	if e.pub != nil && linkChanges(e.pub, &e.v) == 0 {
		t.release(e)
	}
}

// setHeld records that consumers hold l of the link.
func (t *Table) setHeld(e *linkEntry, l *event.Link) {
	switch {
	case linkChanges(l, &e.v) == 0:
		t.release(e)
	case e.pub == nil:
		e.pub = t.linkCopy(l)
	default:
		*e.pub = *l
	}
}

// linkCopy returns a copy of l, in a spare if there is one.
func (t *Table) linkCopy(l *event.Link) *event.Link {
	if n := len(t.spare); n > 0 {
		p := t.spare[n-1]
		t.spare = t.spare[:n-1]
		*p = *l
		return p
	}
	p := new(event.Link)
	*p = *l
	return p
}

// maxSpare bounds the spare link values: enough for the changes between
// two publications.
const maxSpare = 16

// release drops e.pub: consumers hold e.v, or nothing.
func (t *Table) release(e *linkEntry) {
	if e.pub != nil && len(t.spare) < maxSpare {
		*e.pub = event.Link{} // let the strings go
		t.spare = append(t.spare, e.pub)
	}
	e.pub = nil
}

type linkEntry struct {
	entry
	v event.Link
	// pub is what consumers hold, while held, when it is not v; nil when
	// they hold v, as they do once a change is published: a second copy
	// of every link would cost as much as the first. See heldValue.
	pub *event.Link
	// reborn: consumers hold an earlier link with this index, deleted
	// while nothing could be published, whose index the kernel gave to a
	// new link (ip link add ... index N, SR-IOV, namespace moves). Its
	// DELLINK must come before the new link's NEWLINK, or consumers would
	// keep the earlier link's addresses.
	reborn bool
}

// addrEntry is 128 bytes: a host can have tens of thousands of addresses.
type addrEntry struct {
	entry
	// prev and next link the addresses of one link index, from byLink.
	prev, next *addrEntry
	v          addrValue
	// lft is the reading of the lifetimes that later ones are compared
	// with: that of the last value whose lifetimes changed in substance,
	// so that lifetimes counting down are no change and the kernel's
	// rounding cannot add up to one.
	lft lifetimes
}

// addrValue is an event.Addr as the table keeps it: 88 bytes rather than
// 152, the addresses as 16 bytes each and their forms apart (a zone, which
// no encoding carries, is not kept), and the broadcast address, which is
// IPv4 only, as 4 (another is dropped). The label shares the name's bytes
// when it is the name, as the kernel's IPv4 labels are.
type addrValue struct {
	ifname, label                  string
	addr, peer                     [16]byte
	brd                            [4]byte
	index, flags, valid, preferred uint32
	family                         event.Family
	prefixLen, scope               uint8
	// forms holds the form of addr (bits 0-1) and peer (bits 2-3), and
	// brdSet.
	forms uint8
}

// The forms of a netip.Addr kept as 16 bytes.
const (
	formNone uint8 = iota // the zero netip.Addr
	form4                 // IPv4
	form6                 // IPv6, IPv4-mapped ones included
	brdSet   uint8 = 1 << 4
)

func formOf(a netip.Addr) uint8 {
	switch {
	case a.Is4():
		return form4
	case a.Is6():
		return form6
	}
	return formNone
}

func addrOf(b [16]byte, form uint8) netip.Addr {
	switch form {
	case form4:
		return netip.AddrFrom16(b).Unmap()
	case form6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// set makes v hold a.
func (v *addrValue) set(a *event.Addr) {
	*v = addrValue{ifname: a.Ifname, label: a.Label, addr: a.Address.As16(), peer: a.Peer.As16(),
		index: a.Index, flags: a.Flags, valid: a.ValidLft, preferred: a.PreferredLft,
		family: a.Family, prefixLen: a.PrefixLen, scope: a.Scope,
		forms: formOf(a.Address) | formOf(a.Peer)<<2}
	if v.label == v.ifname {
		v.label = v.ifname // one copy of the bytes
	}
	if b := a.Broadcast.Unmap(); b.Is4() {
		v.brd, v.forms = b.As4(), v.forms|brdSet
	}
}

// get returns the address v holds.
func (v *addrValue) get() event.Addr {
	a := event.Addr{Index: v.index, Ifname: v.ifname, Family: v.family, Address: addrOf(v.addr, v.forms&3),
		Peer: addrOf(v.peer, v.forms>>2&3), PrefixLen: v.prefixLen, Scope: v.scope, Label: v.label,
		Flags: v.flags, ValidLft: v.valid, PreferredLft: v.preferred}
	if v.forms&brdSet != 0 {
		a.Broadcast = netip.AddrFrom4(v.brd)
	}
	return a
}

// key returns the key of the address v holds, as KeyOf does.
func (v *addrValue) key() AddrKey {
	k := AddrKey{Index: v.index, Family: v.family, addr: v.addr}
	if k.Family != event.Inet6 {
		k.prefixLen, k.hasPeer, k.peer = v.prefixLen, v.forms>>2&3 != formNone, v.peer
	}
	return k
}

// AddrKey identifies an address as the kernel does, and as event.Addr.ID
// names it within its interface: an IPv4 address by interface index, local
// address, prefix length and peer (one local address can be on an
// interface once per peer); an IPv6 address by interface index and address
// alone, with PrefixLen and Peer zero (the kernel refuses an IPv6 address
// twice whatever the prefix length, and can change the peer in place).
//
// It is 40 bytes, the addresses as 16 each without their zones: the table
// keeps one per address.
type AddrKey struct {
	Index     uint32
	Family    event.Family
	prefixLen uint8    // IPv4 only
	hasPeer   bool     // IPv4 only: peer is set
	addr      [16]byte // the local address, IPv4 as IPv4-mapped
	peer      [16]byte // IPv4 only
}

// KeyOf returns a's key.
func KeyOf(a *event.Addr) AddrKey {
	k := AddrKey{Index: a.Index, Family: a.Family, addr: a.Address.As16()}
	if a.Family != event.Inet6 {
		k.prefixLen, k.hasPeer, k.peer = a.PrefixLen, a.Peer.IsValid(), a.Peer.As16()
	}
	return k
}

// compare orders keys by index, family, address, prefix length and peer
// (none first).
func (k AddrKey) compare(o AddrKey) int {
	return cmp.Or(cmp.Compare(k.Index, o.Index), cmp.Compare(k.Family, o.Family), bytes.Compare(k.addr[:], o.addr[:]),
		cmp.Compare(k.prefixLen, o.prefixLen), cmp.Compare(b2i(k.hasPeer), b2i(o.hasPeer)), bytes.Compare(k.peer[:], o.peer[:]))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// New returns an empty table that publishes the objects scope allows (all
// of them when scope is nil).
func New(scope Scope) *Table {
	return &Table{links: make(map[uint32]*linkEntry), addrs: make(map[AddrKey]*addrEntry),
		byLink: make(map[uint32]*addrEntry), scope: scope, epoch: time.Now()}
}

// putAddr stores e, new, as the address with key k.
func (t *Table) putAddr(k AddrKey, e *addrEntry) {
	t.addrs[k] = e
	e.prev, e.next = nil, t.byLink[k.Index]
	if e.next != nil {
		e.next.prev = e
	}
	t.byLink[k.Index] = e
}

// dropAddr forgets the address with key k. It leaves the entry's next as
// it is, for addrsOf.
func (t *Table) dropAddr(k AddrKey) {
	e := t.addrs[k]
	if e == nil {
		return
	}
	delete(t.addrs, k)
	switch {
	case e.prev != nil:
		e.prev.next = e.next
	case e.next != nil:
		t.byLink[k.Index] = e.next
	default:
		delete(t.byLink, k.Index)
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.prev = nil
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
		for a := t.byLink[index]; a != nil; {
			next := a.next
			if !yield(a.v.key(), a) {
				return
			}
			a = next
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
// Apply reports whether ev's object is in scope: an address held back
// for its link is not (see AddrWaits).
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
	wasVisible := e.exists && e.visible
	if !e.exists && e.held {
		e.reborn = true
	}
	t.setValue(e, l)
	e.exists, e.seen = true, t.gen
	e.visible = t.allowName(l.Name)
	var changed uint32
	if e.held && !e.reborn {
		changed = linkChanges(e.heldValue(), l)
	}
	if changed != 0 || !e.held || e.reborn || !e.visible {
		e.synced = e.held == e.visible && !e.reborn && changed == 0
	}
	// A link renamed into the scope, or one that is new to the table:
	// its addresses known meanwhile enter with it (see newAddr).
	entering := !wasVisible && e.visible
	if e.visible != wasVisible {
		t.rescope(l.Index, e) // renamed into or out of the scope, or new
	}
	if e.held && (e.reborn || !e.visible) {
		out = append(out, linkMsg(event.DelLink, ev, e.heldValue()))
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
		// The link's addresses, known while it was out of scope or
		// unknown, enter with it.
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
		a.v.ifname = l.v.Name
		a.visible = (t.scope == nil || t.scope.AllowFamily(a.v.family)) && l.visible
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
		out = append(out, event.Event{Type: event.NewAddr, Time: ev.Time, Dump: ev.Dump, Addr: a.v.get()})
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
		return append(out, linkMsg(event.DelLink, ev, e.heldValue())), visible
	}
	t.setValue(e, l)
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
	var v addrValue
	v.set(a)
	var changed uint32
	if e.held && e.exists {
		changed = t.addrChanges(e, &v, ev.Time)
	} else {
		e.lft = t.lifetimesOf(&v, ev.Time) // consumers hold no value to compare with
	}
	if !e.exists || changed != 0 {
		e.synced = false
	}
	e.v, e.exists, e.seen = v, true, t.gen
	e.visible = t.addrVisible(a)
	if l := t.links[a.Index]; l == nil || !l.exists {
		// The link's NEWLINK was lost (the resync that follows the loss
		// brings it), or it is gone: the address waits for the link, so
		// that consumers never hold an address of a link they do not
		// hold, or under a name they do not know. newLink publishes it
		// with the link, named as the link; a dump that does not show it
		// forgets it.
		e.visible = false
	}
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

// AddrWaits reports whether a, an address Apply has just reported as not
// in scope, is rather held back for its link: its link is not known to
// exist (its NEWLINK was lost, or the link is gone), while its family is
// in scope, and so is its name when it has one (an address read before
// its link has none, and its link's name, when it comes, decides).
// Apply's callers tell the two apart with it on that path only, so that
// Apply itself does no more work for it.
func (t *Table) AddrWaits(a *event.Addr) bool {
	if l := t.links[a.Index]; l != nil && l.exists {
		return false
	}
	if t.scope != nil && !t.scope.AllowFamily(a.Family) {
		return false
	}
	return a.Ifname == "" || t.allowName(a.Ifname)
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
				e.held, e.reborn = true, false
				t.setHeld(e, &m.Link)
				e.synced = e.want() && e.pub == nil
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
			t.release(e)
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
			del := event.Event{Type: event.DelAddr, Dump: true, Addr: e.v.get()}
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
			dels = append(dels, event.Event{Type: event.DelAddr, Dump: true, Addr: e.v.get()})
		}
	}
	for _, e := range links {
		if e.synced {
			continue
		}
		if e.held && (e.reborn || !e.want()) {
			dels = append(dels, event.Event{Type: event.DelLink, Dump: true, Link: *e.heldValue()})
		}
		if e.want() {
			news = append(news, event.Event{Type: event.NewLink, Dump: true, Link: e.v})
		}
	}
	for _, e := range addrs {
		if !e.synced && e.want() {
			news = append(news, event.Event{Type: event.NewAddr, Dump: true, Addr: e.v.get()})
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

func compareAddrs(a, b *addrEntry) int { return a.v.key().compare(b.v.key()) }

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

// addrChanges returns the bits of event.AddrFields in which b, read at at,
// differs from e's address. Lifetimes count down, so they are compared by
// when they end; when that changes, b's lifetimes become e's reference.
func (t *Table) addrChanges(e *addrEntry, b *addrValue, at time.Time) uint32 {
	a := &e.v
	var c uint32
	set := func(bit int, differ bool) {
		if differ {
			c |= 1 << bit
		}
	}
	now := at.Sub(t.epoch)
	set(0, a.ifname != b.ifname)
	set(1, a.peer != b.peer || a.forms>>2&3 != b.forms>>2&3)
	set(2, a.brd != b.brd || a.forms&brdSet != b.forms&brdSet)
	set(3, a.scope != b.scope)
	set(4, a.label != b.label)
	set(5, a.flags != b.flags)
	set(6, !sameEnd(e.lft.at, e.lft.valid, now, b.valid))
	set(7, !sameEnd(e.lft.at, e.lft.preferred, now, b.preferred))
	set(8, a.prefixLen != b.prefixLen)
	if c&(1<<6|1<<7) != 0 {
		e.lft = lifetimes{now, b.valid, b.preferred}
	}
	return c
}

// lifetimes is a reading of an address's lifetimes: the seconds left
// (event.Forever for none) and when nlbridge read them, as the time since
// the table's epoch.
type lifetimes struct {
	at               time.Duration
	valid, preferred uint32
}

func (t *Table) lifetimesOf(v *addrValue, at time.Time) lifetimes {
	return lifetimes{at.Sub(t.epoch), v.valid, v.preferred}
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
func sameEnd(refAt time.Duration, ref uint32, t time.Duration, lft uint32) bool {
	if lft == event.Forever || ref == event.Forever {
		return lft == ref
	}
	refEnd := refAt + time.Duration(ref)*time.Second
	end := t + time.Duration(lft)*time.Second
	if lft == 0 {
		// Run out: the kernel reports 0 from then on, whenever it is read.
		return refEnd < end+lifetimeSlack
	}
	d := end - refEnd
	return d > -lifetimeSlack && d < lifetimeSlack
}
