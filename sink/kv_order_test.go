package sink

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// keyWatcher follows a bucket's keys the way a consumer does, by the
// objects their values hold, and records every object that the order of
// the writes made it remove: a key deleted while it still held its
// object, or a key given to another object before its object moved on.
type keyWatcher struct {
	obj     map[string]string // key → object ("link 5", "addr 5 192.0.2.1/24")
	key     map[string]string // object → its key
	removed []string          // objects removed, in order
}

func (m *keyWatcher) remove(obj, key string) {
	delete(m.key, obj)
	m.removed = append(m.removed, obj)
	index, ok := strings.CutPrefix(obj, "link ")
	if !ok {
		return
	}
	// A link's addresses filed under its key's name go with it.
	host, name, _ := strings.Cut(key, ".link.")
	prefix := host + ".addr." + name + "."
	for o, k := range m.key {
		if strings.HasPrefix(o, "addr "+index+" ") && strings.HasPrefix(k, prefix) {
			delete(m.key, o)
			m.removed = append(m.removed, o)
		}
	}
}

func (m *keyWatcher) apply(t *testing.T, e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		if obj, ok := m.obj[key]; ok {
			delete(m.obj, key)
			if m.key[obj] == key {
				m.remove(obj, key)
			}
		}
		return
	}
	ev, err := encode.Decode("application/json", e.Value())
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	obj := fmt.Sprintf("link %d", ev.Link.Index)
	if ev.Type == event.NewAddr {
		obj = fmt.Sprintf("addr %d %s", ev.Addr.Index, ev.Addr.ID())
	}
	if old, ok := m.key[obj]; ok && old != key {
		delete(m.obj, old)
	}
	if prev, ok := m.obj[key]; ok && prev != obj && m.key[prev] == key {
		m.remove(prev, key)
	}
	m.obj[key], m.key[obj] = obj, key
}

// The writer writes the keys in the order they were marked: a watcher
// following the bucket by objects sees links and their addresses renamed
// (in chains, swapped, renamed and changed, back and forth, in one batch
// or across batches), never removed; only what is deleted is removed.
func TestKVWriteOrder(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	// With history, no write is lost to a later one of the same key
	// before the watcher reads it: the watcher sees every write, in the
	// order the stream stored them.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "netlink", History: 64,
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	s := newKVSink(t, srv.ClientURL(), "h", nil)
	names, mtus := map[uint32]string{}, map[uint32]uint32{}
	addrs := map[uint32][]string{}
	var evs []*event.Event
	for i := uint32(2); i <= 9; i++ {
		names[i], mtus[i] = fmt.Sprintf("l%d", i), 1500
		evs = append(evs, linkEv(event.NewLink, i, names[i], 1500))
		for j := range 2 {
			a := fmt.Sprintf("10.0.%d.%d/24", i, j+1)
			addrs[i] = append(addrs[i], a)
			evs = append(evs, addrEv(event.NewAddr, i, names[i], a))
		}
	}
	dump(s, event.ReasonStartup, "", evs...)
	kv := bucket(t, srv.ClientURL())
	waitContents(t, kv, "h", want(names, mtus, addrs))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := kv.WatchFiltered(ctx, []string{"h.link.>", "h.addr.>"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	m := &keyWatcher{obj: map[string]string{}, key: map[string]string{}}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		m.apply(t, e)
	}
	// Read every update as it comes: a watcher that falls behind may be
	// reset, and miss some.
	var entries []jetstream.KeyValueEntry
	var mu sync.Mutex
	go func() {
		for e := range w.Updates() {
			mu.Lock()
			entries = append(entries, e)
			mu.Unlock()
		}
	}()

	mtu := uint32(1500)
	rename := func(index uint32, name string) {
		mtu++
		names[index], mtus[index] = name, mtu
		s.Handle(linkEv(event.NewLink, index, name, mtu))
	}
	gone := map[string]bool{}
	for round := range 6 {
		// A chain and back, with changes in between.
		rename(2, "x2")
		rename(2, "x2")
		rename(2, "y2")
		rename(2, "l2")
		// Names swapped through a third one, twice.
		for range 2 {
			a, b := names[3], names[4]
			rename(3, "tmp")
			rename(4, a)
			rename(3, b)
		}
		// A new name every round, and an address added after it.
		rename(6, fmt.Sprintf("n6-%d", round))
		a := fmt.Sprintf("10.6.%d.1/24", round)
		addrs[6] = append(addrs[6], a)
		s.Handle(addrEv(event.NewAddr, 6, names[6], a))
		// Two links exchange names through a name another one had.
		rename(8, "t8")
		rename(7, "l8-"+fmt.Sprint(round))
		rename(8, "l7-"+fmt.Sprint(round))
		if round == 0 {
			// Deleted, and its name taken by a new link.
			s.Handle(linkEv(event.DelLink, 5, "l5", 1500))
			gone["link 5"] = true
			for _, a := range addrs[5] {
				gone["addr 5 "+a] = true
			}
			delete(names, 5)
			delete(mtus, 5)
			mtus[10] = 1500
			delete(addrs, 5)
			names[10] = "l5"
			s.Handle(linkEv(event.NewLink, 10, "l5", 1500))
			addrs[10] = []string{"10.0.10.1/24"}
			s.Handle(addrEv(event.NewAddr, 10, "l5", "10.0.10.1/24"))
		}
		if round%2 == 1 {
			time.Sleep(3 * kvLinger) // the next round in another batch
		}
	}
	waitContents(t, kv, "h", want(names, mtus, addrs))

	// Every write is in: the watcher has seen them all once it has been
	// quiet for a while.
	for n := -1; ; time.Sleep(500 * time.Millisecond) {
		mu.Lock()
		m := len(entries)
		mu.Unlock()
		if m == n {
			break
		}
		n = m
	}
	mu.Lock()
	for i, e := range entries {
		if i > 0 && e.Revision() != entries[i-1].Revision()+1 {
			t.Fatalf("the watcher missed revisions %d to %d", entries[i-1].Revision()+1, e.Revision()-1)
		}
		m.apply(t, e)
	}
	mu.Unlock()
	var wrong []string
	for _, obj := range m.removed {
		if !gone[obj] {
			wrong = append(wrong, obj)
		}
	}
	if len(wrong) > 0 {
		t.Errorf("the watcher removed %d objects that were renamed, not deleted: %q", len(wrong), wrong)
	}
	for obj := range gone {
		if !slices.Contains(m.removed, obj) {
			t.Errorf("the watcher did not remove %s, which was deleted", obj)
		}
	}
	for i, name := range names {
		obj := fmt.Sprintf("link %d", i)
		if got, want := m.key[obj], "h.link."+EscapeToken(name); got != want {
			t.Errorf("the watcher holds %s at %q, want %q", obj, got, want)
		}
	}
	if got, want := len(m.key), len(names)+len(slices.Concat(slices.Collect(maps.Values(addrs))...)); got != want {
		t.Errorf("the watcher holds %d objects, want %d", got, want)
	}
}

// want returns what waitContents should find for links names and mtus (by
// index) and their addresses.
func want(names map[uint32]string, mtus map[uint32]uint32, addrs map[uint32][]string) []string {
	var out []string
	for i, name := range names {
		out = append(out, fmt.Sprintf("h.link.%s=NEWLINK %d %s mtu %d", EscapeToken(name), i, name, mtus[i]))
		for _, a := range addrs[i] {
			ev := addrEv(event.NewAddr, i, name, a)
			out = append(out, fmt.Sprintf("h.addr.%s.%s=NEWADDR %d %s %s", EscapeToken(name), EscapeToken(ev.Addr.ID()), i, name, ev.Addr.ID()))
		}
	}
	return out
}

// Marks that pile up while the bucket is unreachable stay bounded by the
// keys they name: a link renamed back and forth, and one deleted and
// created again, leave one mark per key, the values before the deletions,
// and a purge keeps what was marked after it.
func TestKVCompact(t *testing.T) {
	w := newKVWriter(KVConfig{Bucket: "b"}, "h", discard())
	for i := range 3 * kvCompactMin {
		from, to := "a", "b"
		if i%2 == 1 {
			from, to = to, from
		}
		w.put("h.link."+to, 5, []byte(to))
		w.put("h.addr."+to+".x", 5, []byte(to))
		w.del("h.addr." + from + ".x")
		w.del("h.link." + from)
		w.purge("h.addr.c.")
		w.del("h.link.c")
		w.put("h.link.c", 6, []byte(fmt.Sprint(i)))
		w.put("h.addr.c.y", 6, []byte(fmt.Sprint(i)))
	}
	if max := 2*len(w.last) + kvCompactMin; len(w.ops) > max {
		t.Fatalf("%d marks for %d keys, want at most %d", len(w.ops), len(w.last), max)
	}
	w.compact()
	var got []string
	for _, op := range w.ops {
		switch {
		case op.purge:
			got = append(got, "purge "+op.key)
		case op.del:
			got = append(got, "del "+op.key)
		default:
			got = append(got, fmt.Sprintf("put %s %s", op.key, op.data))
		}
	}
	last := fmt.Sprint(3*kvCompactMin - 1)
	want := []string{"put h.link.a a", "put h.addr.a.x a", "put h.link.c " + last, "put h.addr.c.y " + last,
		"del h.addr.b.x", "del h.link.b", "purge h.addr.c."}
	if !slices.Equal(got, want) {
		t.Errorf("compacted marks:\n got %q\nwant %q", got, want)
	}
}
