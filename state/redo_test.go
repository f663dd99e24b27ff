package state

import (
	"fmt"
	"slices"
	"testing"

	"github.com/nlbridge/nlbridge/event"
)

// TestRedo publishes some history, then redoes the messages the server did
// not confirm: Dirty must return the current state of each object they
// named, and nothing else.
func TestRedo(t *testing.T) {
	for _, tc := range []struct {
		name string
		// history is published in order, with ok as the publish result.
		history []*event.Event
		// failed is published after history, and fails.
		failed []*event.Event
		redo   []*event.Event
		want   []string
	}{{
		name:    "an existing link is published again with its current value",
		history: []*event.Event{link(event.NewLink, 2, "eth0", 1500), link(event.NewLink, 2, "eth0", 9000)},
		redo:    []*event.Event{link(event.NewLink, 2, "eth0", 1500)},
		want:    []string{"NEWLINK eth0 9000"},
	}, {
		name:    "an unconfirmed deletion of a link whose index is used again publishes the deletion, then the link",
		history: []*event.Event{link(event.NewLink, 2, "eth0", 1500), link(event.DelLink, 2, "eth0", 1500), link(event.NewLink, 2, "eth0", 1400)},
		redo:    []*event.Event{link(event.DelLink, 2, "eth0", 1500), link(event.NewLink, 2, "eth0", 1400)},
		want:    []string{"DELLINK eth0 1500", "NEWLINK eth0 1400"},
	}, {
		name: "after such a deletion, the new link's addresses are published again",
		history: []*event.Event{link(event.NewLink, 2, "old", 1500), link(event.DelLink, 2, "old", 1500),
			link(event.NewLink, 2, "new", 1400), addr(event.NewAddr, 2, "new", "10.0.0.1/24")},
		redo: []*event.Event{link(event.DelLink, 2, "old", 1500)},
		want: []string{"DELLINK old 1500", "NEWLINK new 1400", "NEWADDR new 10.0.0.1"},
	}, {
		name:    "a forgotten deletion is put back as a tombstone",
		history: []*event.Event{link(event.NewLink, 3, "eth1", 1500), link(event.DelLink, 3, "eth1", 1500)},
		redo:    []*event.Event{link(event.NewLink, 3, "eth1", 1500), link(event.DelLink, 3, "eth1", 1500)},
		want:    []string{"DELLINK eth1 1500"},
	}, {
		name:    "a NEW of an object whose deletion was confirmed is not redone",
		history: []*event.Event{link(event.NewLink, 3, "eth1", 1500), link(event.DelLink, 3, "eth1", 1500)},
		redo:    []*event.Event{link(event.NewLink, 3, "eth1", 1500)},
		want:    nil,
	}, {
		name: "addresses: a changed one, a deleted one, one that went with its link",
		history: []*event.Event{
			link(event.NewLink, 2, "eth0", 1500), link(event.NewLink, 3, "eth1", 1500),
			addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), addr(event.NewAddr, 2, "eth0", "192.0.2.2/24"),
			addr(event.NewAddr, 3, "eth1", "2001:db8::1/64"),
			addr(event.DelAddr, 2, "eth0", "192.0.2.2/24"), link(event.DelLink, 3, "eth1", 1500),
		},
		redo: []*event.Event{
			addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), addr(event.NewAddr, 3, "eth1", "2001:db8::1/64"),
			addr(event.DelAddr, 2, "eth0", "192.0.2.2/24"), link(event.DelLink, 3, "eth1", 1500),
		},
		want: []string{"DELADDR eth0 192.0.2.2", "DELLINK eth1 1500", "NEWADDR eth0 192.0.2.1"},
	}, {
		name:    "a tombstone not yet published stays one",
		history: []*event.Event{link(event.NewLink, 2, "eth0", 1500)},
		failed:  []*event.Event{link(event.DelLink, 2, "eth0", 1500)},
		redo:    []*event.Event{link(event.NewLink, 2, "eth0", 1500), link(event.DelLink, 2, "eth0", 1500)},
		want:    []string{"DELLINK eth0 1500"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(nil)
			for _, ev := range tc.history {
				publish(tb, ev, true)
			}
			if d := tb.Dirty(); len(d) != 0 {
				t.Fatalf("dirty before Redo: %v", summary(d))
			}
			for _, ev := range tc.failed {
				publish(tb, ev, false)
			}
			for range 2 { // idempotent
				for _, ev := range tc.redo {
					tb.Redo(ev)
				}
			}
			var got []string
			for _, ev := range tb.Dirty() {
				s := summary([]event.Event{ev})[0]
				if ev.Type.IsLink() {
					s += fmt.Sprint(" ", ev.Link.MTU)
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Dirty after Redo = %q, want %q", got, tc.want)
			}
			// Publishing what Dirty returned settles the table.
			for _, ev := range tb.Dirty() {
				tb.Published(&ev, true)
			}
			if d := tb.Dirty(); len(d) != 0 {
				t.Errorf("dirty after publishing: %v", summary(d))
			}
		})
	}
}
