package mirror

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// entry is one write to the bucket: a key's new value, or its deletion.
type entry struct {
	key   string
	value []byte // CBOR, which decodes faster than JSON; nil: deleted
}

func putEvent(key string, ev *event.Event) entry {
	ev.Host, ev.Boot, ev.Seq = "h", "b", 1
	value, err := (encode.CBOR{}).Append(nil, ev)
	if err != nil {
		panic(err)
	}
	return entry{key, value}
}

func putLink(key string, l event.Link) entry {
	return putEvent(key, &event.Event{Type: event.NewLink, Link: l})
}

func putAddr(key string, a event.Addr) entry {
	return putEvent(key, &event.Event{Type: event.NewAddr, Addr: a})
}

func delKey(key string) entry { return entry{key: key} }

// permutations returns every order of es.
func permutations(es []entry) [][]entry {
	if len(es) <= 1 {
		return [][]entry{append([]entry(nil), es...)}
	}
	var out [][]entry
	for i := range es {
		rest := append(append([]entry(nil), es[:i]...), es[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]entry{es[i]}, p...))
		}
	}
	return out
}

// TestBucketOrder: nlbridge's bucket orders the writes of each key, but
// not those of different keys, which its writer sends in any order. A
// Mirror must end with the same state whatever the order: after a rename
// (the link's and its address's keys move), a deletion, and a deletion
// whose index a new link takes.
func TestBucketOrder(t *testing.T) {
	a0, wan := link(5, "a0", 1500), link(5, "wan.0", 1500)
	x, xMoved := addr(5, "a0", "192.0.2.1/24"), addr(5, "wan.0", "192.0.2.1/24")
	b0, y := link(5, "b0", 1500), addr(5, "b0", "198.51.100.1/24")
	tmp, xTmp := link(5, "tmp", 1500), addr(5, "tmp", "192.0.2.1/24")
	b06, b0a0 := link(6, "b0", 1500), link(6, "a0", 1500)
	z, zA0 := addr(6, "b0", "198.51.100.2/24"), addr(6, "a0", "198.51.100.2/24")
	before := []entry{putLink("h.link.a0", a0), putAddr("h.addr.a0.192=2E0=2E2=2E1=2F24", x)}
	tests := []struct {
		name   string
		writes []entry // in every order
		before []entry // more writes before them
		links  map[uint32]event.Link
		addrs  map[AddrKey]event.Addr
	}{{
		name: "rename",
		writes: []entry{delKey("h.link.a0"), putLink("h.link.wan=2E0", wan),
			delKey("h.addr.a0.192=2E0=2E2=2E1=2F24"), putAddr("h.addr.wan=2E0.192=2E0=2E2=2E1=2F24", xMoved)},
		links: map[uint32]event.Link{5: wan},
		addrs: map[AddrKey]event.Addr{{5, "192.0.2.1/24"}: xMoved},
	}, {
		name:   "deletion",
		writes: []entry{delKey("h.link.a0"), delKey("h.addr.a0.192=2E0=2E2=2E1=2F24")},
		links:  map[uint32]event.Link{},
		addrs:  map[AddrKey]event.Addr{},
	}, {
		name: "index reused",
		writes: []entry{delKey("h.link.a0"), delKey("h.addr.a0.192=2E0=2E2=2E1=2F24"),
			putLink("h.link.b0", b0), putAddr("h.addr.b0.198=2E51=2E100=2E1=2F24", y)},
		links: map[uint32]event.Link{5: b0},
		addrs: map[AddrKey]event.Addr{{5, "198.51.100.1/24"}: y},
	}, {
		// In one batch, a0 (5) becomes tmp and b0 (6) becomes a0: the
		// writes of the key h.link.a0 coalesce into b0's value.
		name: "names swapped",
		writes: []entry{putLink("h.link.tmp", tmp), putAddr("h.addr.tmp.192=2E0=2E2=2E1=2F24", xTmp),
			delKey("h.addr.a0.192=2E0=2E2=2E1=2F24"), putLink("h.link.a0", b0a0), delKey("h.link.b0"),
			putAddr("h.addr.a0.198=2E51=2E100=2E2=2F24", zA0), delKey("h.addr.b0.198=2E51=2E100=2E2=2F24")},
		before: []entry{putLink("h.link.b0", b06), putAddr("h.addr.b0.198=2E51=2E100=2E2=2F24", z)},
		links:  map[uint32]event.Link{5: tmp, 6: b0a0},
		addrs:  map[AddrKey]event.Addr{{5, "192.0.2.1/24"}: xTmp, {6, "198.51.100.2/24"}: zA0},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range permutations(tt.writes) {
				m := newMirror(options{})
				for _, e := range slices.Concat(before, tt.before, order) {
					op := jetstream.KeyValuePut
					if e.value == nil {
						op = jetstream.KeyValueDelete
					}
					m.applyEntry(e.key, e.value, op, time.Unix(1, 0))
				}
				h, _ := m.Host("h")
				got, want := fmt.Sprint(h.Links, h.Addrs), fmt.Sprint(tt.links, tt.addrs)
				if got != want {
					var keys []string
					for _, e := range order {
						keys = append(keys, fmt.Sprintf("%s %v", e.key, e.value != nil))
					}
					t.Errorf("after %q:\n got %s\nwant %s", keys, got, want)
				}
			}
		})
	}
}
