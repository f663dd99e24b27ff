package state

import "github.com/nlbridge/nlbridge/event"

// Redo records that consumers may not have received ev, a NEWLINK,
// DELLINK, NEWADDR or DELADDR that was published (the NATS client took it)
// on a connection that broke before the server confirmed it: it makes sure
// that Dirty returns what takes consumers to the object's current state,
// whether they got ev or not. Only ev's Type and identity matter (the
// link's index; the address's key), and for a deletion its value too.
//
//   - The object exists: it is marked unsynced, so Dirty returns its
//     current value (or its deletion, when it is out of scope), whatever
//     ev said.
//   - ev is a deletion and the object exists again (the index was given
//     to a new link, or the link came back into scope, or the address was
//     added again): consumers may still hold what ev deleted, so the
//     deletion comes first again, then the current value, and a link's
//     current addresses after it.
//   - ev is a deletion and the table has forgotten the object: a
//     tombstone holding ev's value is put back, so that Dirty returns the
//     deletion again.
//   - ev is a NEW and the object is gone: its deletion is a tombstone
//     already, or was published after ev (the caller redoes it too when
//     it is unconfirmed), or was never to be published: nothing to do.
//
// Redo is idempotent and the order of several calls does not matter.
func (t *Table) Redo(ev *event.Event) {
	switch ev.Type {
	case event.NewLink:
		t.RedoNew(ev.Type, AddrKey{Index: ev.Link.Index})
	case event.NewAddr:
		t.RedoNew(ev.Type, KeyOf(&ev.Addr))
	case event.DelLink:
		e := t.links[ev.Link.Index]
		switch {
		case e == nil:
			t.links[ev.Link.Index] = &linkEntry{entry: entry{held: true}, v: ev.Link}
		case e.exists:
			e.held, e.synced = true, false
			t.setHeld(e, &ev.Link)
			e.reborn = e.visible
			for _, a := range t.addrsOf(ev.Link.Index) {
				a.synced = false // after the DELLINK, consumers hold none of them
			}
		default:
			e.synced = false
		}
	case event.DelAddr:
		k := KeyOf(&ev.Addr)
		if e := t.addrs[k]; e == nil {
			e := &addrEntry{entry: entry{held: true}}
			e.v.set(&ev.Addr)
			t.putAddr(k, e)
		} else {
			e.held, e.synced = true, false
		}
	}
}

// RedoNew is Redo for a NEWLINK or NEWADDR, named by its type and key: a
// link's index alone (k.Index), or an address's key (KeyOf). Its value is
// not needed, so a caller can keep less than the event.
func (t *Table) RedoNew(typ event.Type, k AddrKey) {
	var e *entry
	switch typ {
	case event.NewLink:
		if l := t.links[k.Index]; l != nil {
			e = &l.entry
		}
	case event.NewAddr:
		if a := t.addrs[k]; a != nil {
			e = &a.entry
		}
	}
	if e != nil && e.exists {
		e.synced = false
	}
}
