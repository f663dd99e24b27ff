package state

import "github.com/nlbridge/nlbridge/event"

// Redo records that consumers may not have received ev, a NEWLINK,
// DELLINK, NEWADDR or DELADDR that was published (the NATS client took it)
// on a connection that broke before the server confirmed it: it makes sure
// that Dirty returns the object's current state again. Only ev's Type and
// identity matter (Link.Index; Addr.Index, Address and PrefixLen), and for
// a deletion its value too.
//
//   - The object exists: it is marked unpublished, so Dirty returns its
//     current value, whatever ev said.
//   - The object is a tombstone (its deletion is not published yet):
//     nothing to do, Dirty returns the deletion already.
//   - ev is a deletion and the table has forgotten the object (the
//     deletion was published): a tombstone holding ev's value is put back,
//     so that Dirty returns the deletion again.
//   - ev is a NEW and the table has forgotten the object: the object is
//     gone and its deletion was published later than ev (the caller redoes
//     that deletion too, if it is unconfirmed), or was never to be
//     published (filtered, or an address that went with its link's
//     DELLINK): nothing to do.
//
// Redo is idempotent and the order of several calls does not matter.
func (t *Table) Redo(ev *event.Event) {
	switch ev.Type {
	case event.NewLink, event.DelLink:
		if e := t.links[ev.Link.Index]; e != nil {
			if !e.deleted {
				e.published = false
			}
		} else if ev.Type == event.DelLink {
			t.links[ev.Link.Index] = &linkEntry{entry: entry{deleted: true}, v: ev.Link}
		}
	case event.NewAddr, event.DelAddr:
		k := keyOf(&ev.Addr)
		if e := t.addrs[k]; e != nil {
			if !e.deleted {
				e.published = false
			}
		} else if ev.Type == event.DelAddr {
			t.addrs[k] = &addrEntry{entry: entry{deleted: true}, v: ev.Addr}
		}
	}
}
