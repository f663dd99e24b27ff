package state

import (
	"iter"
	"maps"

	"github.com/nlbridge/nlbridge/event"
)

// The state bucket (sink/kv.go) mirrors what consumers hold, and reads it
// here rather than keeping a copy.

// PublishedLink returns the link consumers hold at index, if they hold
// one: the value of the last NEWLINK published for it.
func (t *Table) PublishedLink(index uint32) (event.Link, bool) {
	if e := t.links[index]; e != nil && e.held {
		return *e.heldValue(), true
	}
	return event.Link{}, false
}

// HeldLinks yields the links consumers hold, as published, in no order.
// The table must not change during the iteration.
func (t *Table) HeldLinks() iter.Seq[*event.Link] {
	return func(yield func(*event.Link) bool) {
		for _, e := range t.links {
			if e.held && !yield(e.heldValue()) {
				return
			}
		}
	}
}

// HeldAddrs yields the addresses consumers hold, of the link at index
// only unless all, in no order: their current values, which are the ones
// published unless a change is yet to be (see Dirty). The table must not
// change during the iteration, and each address yielded is valid only until
// the next.
func (t *Table) HeldAddrs(index uint32, all bool) iter.Seq[*event.Addr] {
	return func(yield func(*event.Addr) bool) {
		var a event.Addr
		entries := t.addrsOf(index) // one link's, without a scan of all
		if all {
			entries = maps.All(t.addrs)
		}
		for _, e := range entries {
			if !e.held {
				continue
			}
			if a = e.v.get(); !yield(&a) {
				return
			}
		}
	}
}
