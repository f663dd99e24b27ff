package state

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/nlbridge/nlbridge/event"
)

// checkIndex fails unless t.byLink lists exactly t.addrs's entries, each
// under its link's index, in lists whose prev and next agree.
func checkIndex(t *testing.T, tb *Table, step string) {
	t.Helper()
	n := 0
	for index, head := range tb.byLink {
		if head == nil || head.prev != nil {
			t.Fatalf("%s: byLink[%d] = %p, want the first of a list", step, index, head)
		}
		for a := head; a != nil; a = a.next {
			k := a.v.key()
			if k.Index != index || tb.addrs[k] != a {
				t.Fatalf("%s: byLink[%d] lists %v at %p, addrs holds %p", step, index, k, a, tb.addrs[k])
			}
			if a.next != nil && a.next.prev != a {
				t.Fatalf("%s: byLink[%d]: %v's next does not point back to it", step, index, k)
			}
			n++
			if n > len(tb.addrs) {
				t.Fatalf("%s: byLink lists more addresses than addrs holds (%d): a cycle", step, len(tb.addrs))
			}
		}
	}
	if n != len(tb.addrs) {
		t.Fatalf("%s: byLink holds %d addresses, addrs %d", step, n, len(tb.addrs))
	}
}

// TestAddrIndexRandom runs random sequences of what the sink does to a
// table (notifications, dumps with and without losses, publishes that
// fail, reconciling, redoing) on two tables: one finding a link's
// addresses through its index, one scanning every address as before the
// index. After every step the index must match the addresses, and the two
// tables must have said and must hold the same.
func TestAddrIndexRandom(t *testing.T) {
	names := []string{"eth0", "eth1", "xeth", "veth0"} // "x…" is out of scope
	addrs := []string{"192.0.2.1/24", "192.0.2.1/25", "198.51.100.7/32", "2001:db8::1/64", "2001:db8::2/64", "fe80::1/64"}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		var scope Scope
		if seed%2 == 1 {
			scope = prefixes{"eth", "veth"}
		}
		idx, scan := New(scope), New(scope)
		scan.scan = true
		randomLink := func(typ event.Type) *event.Event {
			return link(typ, 1+r.Uint32N(5), names[r.IntN(len(names))], 1500+r.Uint32N(2))
		}
		randomAddr := func(typ event.Type) *event.Event {
			i := 1 + r.Uint32N(5)
			return addr(typ, i, names[r.IntN(len(names))], addrs[r.IntN(len(addrs))])
		}
		var evs []event.Event // published, for Redo
		for step := range 300 {
			where := fmt.Sprintf("seed %d step %d", seed, step)
			var got [2][]event.Event
			do := func(f func(tb *Table) []event.Event) {
				got[0], got[1] = f(idx), f(scan)
			}
			ok := r.IntN(4) != 0
			switch op := r.IntN(12); {
			case op < 3:
				ev := randomLink(event.NewLink)
				do(func(tb *Table) []event.Event { e := *ev; return publish(tb, &e, ok) })
			case op < 5:
				ev := randomLink(event.DelLink)
				do(func(tb *Table) []event.Event { e := *ev; return publish(tb, &e, ok) })
			case op < 8:
				ev := randomAddr(event.NewAddr)
				do(func(tb *Table) []event.Event { e := *ev; return publish(tb, &e, ok) })
			case op < 9:
				ev := randomAddr(event.DelAddr)
				do(func(tb *Table) []event.Event { e := *ev; return publish(tb, &e, ok) })
			case op < 10:
				// A dump showing some of the links and addresses, full or
				// narrowed to one name.
				iface := ""
				if r.IntN(2) == 0 {
					iface = names[r.IntN(len(names))]
				}
				var shown []*event.Event
				for range r.IntN(6) {
					if r.IntN(2) == 0 {
						shown = append(shown, randomLink(event.NewLink))
					} else {
						shown = append(shown, randomAddr(event.NewAddr))
					}
				}
				force := r.IntN(2) == 0
				do(func(tb *Table) []event.Event {
					var all []event.Event
					tb.BeginDump()
					for _, ev := range shown {
						e := *ev
						e.Dump = true
						out, _ := tb.Apply(&e, force, nil)
						for i := range out {
							tb.Published(&out[i], ok)
						}
						all = append(all, out...)
					}
					out := tb.Vanished(iface, nil)
					for i := range out {
						tb.Published(&out[i], ok)
					}
					return append(all, out...)
				})
			case op < 11:
				do(func(tb *Table) []event.Event {
					d := tb.Dirty()
					for i := range d {
						tb.Published(&d[i], ok)
					}
					return d
				})
			default:
				if len(evs) == 0 {
					continue
				}
				ev := evs[r.IntN(len(evs))]
				do(func(tb *Table) []event.Event { tb.Redo(&ev); return nil })
			}
			for _, ev := range got[0] {
				if ok && (ev.Type.IsLink() || ev.Type.IsAddr()) {
					evs = append(evs, ev)
				}
			}
			checkIndex(t, idx, where)
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Fatalf("%s: with the index %v, scanning %v", where, summary(got[0]), summary(got[1]))
			}
			if d0, d1 := idx.Dirty(), scan.Dirty(); !reflect.DeepEqual(d0, d1) {
				t.Fatalf("%s: Dirty with the index %v, scanning %v", where, summary(d0), summary(d1))
			}
			if !reflect.DeepEqual(idx.links, scan.links) || !reflect.DeepEqual(idx.addrs, scan.addrs) {
				t.Fatalf("%s: the tables differ", where)
			}
		}
	}
}

// A narrowed dump vanishes the addresses of the link it was narrowed to,
// not those of another link that held its name when they were added.
func TestVanishedNarrowedByIndex(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 5, "a", 1500), true)
	publish(tb, addr(event.NewAddr, 5, "a", "192.0.2.1/24"), true)
	publish(tb, link(event.NewLink, 5, "b", 1500), true) // renamed; the kernel sends no NEWADDR
	publish(tb, link(event.NewLink, 7, "a", 1500), true)
	publish(tb, addr(event.NewAddr, 7, "a", "198.51.100.1/24"), true)
	tb.BeginDump()
	publish(tb, link(event.NewLink, 7, "a", 1500), true)
	if got := summary(tb.Vanished("a", nil)); !reflect.DeepEqual(got, []string{"DELADDR a 198.51.100.1"}) {
		t.Errorf("Vanished(a) = %v, want [DELADDR a 198.51.100.1] alone: 192.0.2.1 is on link 5 (b)", got)
	}
}

// BenchmarkDelLinks deletes 1,000 links from a table that holds them with
// 10,000 addresses (ten each), the DELLINKs arriving without the kernel's
// DELADDRs first (as when they were lost): "index" finds each link's
// addresses through the table's index, "scan" scans every address as the
// table did before it. One op is the 1,000 deletions.
func BenchmarkDelLinks(b *testing.B) {
	const links, perLink = 1000, 10
	var fill []*event.Event
	for i := range uint32(links) {
		name := fmt.Sprintf("veth%d", i)
		fill = append(fill, link(event.NewLink, i+1, name, 1500))
		for j := range uint32(perLink) {
			fill = append(fill, addr(event.NewAddr, i+1, name, fmt.Sprintf("10.%d.%d.%d/8", i>>8, i&0xff, j+1)))
		}
	}
	var dels []*event.Event
	for i := range uint32(links) {
		dels = append(dels, link(event.DelLink, i+1, fmt.Sprintf("veth%d", i), 1500))
	}
	for _, mode := range []struct {
		name string
		scan bool
	}{{"index", false}, {"scan", true}} {
		b.Run(mode.name, func(b *testing.B) {
			var out []event.Event
			for range b.N {
				b.StopTimer()
				tb := New(nil)
				tb.scan = mode.scan
				for _, ev := range fill {
					out, _ = tb.Apply(ev, false, out[:0])
					for i := range out {
						tb.Published(&out[i], true)
					}
				}
				b.StartTimer()
				for _, ev := range dels {
					out, _ = tb.Apply(ev, false, out[:0])
					for i := range out {
						tb.Published(&out[i], true)
					}
				}
				if tb.Size() != 0 {
					b.Fatalf("%d entries left", tb.Size())
				}
			}
		})
	}
}
