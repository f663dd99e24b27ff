package mirror

import (
	"context"
	"errors"
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

// TestGoneSince: a host's presence key deleted or purged (a clean stop, or
// the TTL's expiry marker) dates its going; a new presence clears it.
func TestGoneSince(t *testing.T) {
	m := newMirror(options{})
	up := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	presence := []byte(`{"host":"h","boot":"b1","version":"1.0.0","started":"2026-12-02T05:59:00Z","seq":3}`)
	steps := []struct {
		op       jetstream.KeyValueOp
		at       time.Time
		wantGone bool
		wantAt   time.Time
	}{
		{jetstream.KeyValuePut, up, false, time.Time{}},
		{jetstream.KeyValueDelete, up.Add(time.Minute), true, up.Add(time.Minute)},
		// A second marker does not move the time the host went.
		{jetstream.KeyValuePurge, up.Add(2 * time.Minute), true, up.Add(time.Minute)},
		{jetstream.KeyValuePut, up.Add(3 * time.Minute), false, time.Time{}},
		{jetstream.KeyValuePurge, up.Add(4 * time.Minute), true, up.Add(4 * time.Minute)},
	}
	for i, s := range steps {
		var value []byte
		if s.op == jetstream.KeyValuePut {
			value = presence
		}
		m.mu.Lock()
		m.applyEntry("h.presence", value, s.op, s.at)
		m.mu.Unlock()
		h, ok := m.Host("h")
		if !ok {
			t.Fatalf("step %d: no host h", i)
		}
		if h.Gone != s.wantGone || !h.GoneSince.Equal(s.wantAt) {
			t.Errorf("step %d (%v at %v): gone %v since %v, want %v since %v", i, s.op, s.at, h.Gone, h.GoneSince, s.wantGone, s.wantAt)
		}
	}

	// A host whose presence was gone before the Mirror started: its first
	// entry is the deletion marker.
	m.mu.Lock()
	m.applyEntry("old.presence", nil, jetstream.KeyValueDelete, up)
	m.mu.Unlock()
	if h, _ := m.Host("old"); !h.Gone || !h.GoneSince.Equal(up) {
		t.Errorf("host old: gone %v since %v, want true since %v", h.Gone, h.GoneSince, up)
	}
}

// TestBootFromValues: a host whose presence the Mirror never saw takes
// its boot from its values; a presence, when there is one, decides.
func TestBootFromValues(t *testing.T) {
	m := newMirror(options{})
	value := func(boot string) []byte {
		ev := event.Event{Type: event.NewLink, Host: "h", Boot: boot, Seq: 1, Link: link(2, "eth0", 1500)}
		b, err := encode.JSON{}.Append(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	steps := []struct {
		key   string
		value []byte
		op    jetstream.KeyValueOp
		want  string
	}{
		{"h.presence", nil, jetstream.KeyValueDelete, ""},
		{"h.link.eth0", value("b0"), jetstream.KeyValuePut, "b0"},
		{"h.presence", []byte(`{"host":"h","boot":"b1","version":"1.0.0","started":"2026-12-02T05:59:00Z","seq":3}`), jetstream.KeyValuePut, "b1"},
		{"h.link.eth0", value("b0"), jetstream.KeyValuePut, "b1"},
	}
	for i, s := range steps {
		m.mu.Lock()
		m.applyEntry(s.key, s.value, s.op, time.Now())
		m.mu.Unlock()
		if h, _ := m.Host("h"); h.Boot != s.want {
			t.Errorf("step %d (%s %v): boot %q, want %q", i, s.key, s.op, h.Boot, s.want)
		}
	}
}

// TestCloseConsumerGone: Close succeeds when the server has removed the
// bucket watcher's consumer already.
func TestCloseConsumerGone(t *testing.T) {
	s := runServer(t, true)
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "netlink"}); err != nil {
		t.Fatal(err)
	}
	m, err := New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !m.FromBucket() {
		t.Fatal("the mirror does not read the bucket")
	}
	stream, err := js.Stream(ctx, "KV_netlink")
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for name := range stream.ConsumerNames(ctx).Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		deleted++
	}
	if deleted == 0 {
		t.Fatal("the bucket's stream has no consumer to delete")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestFleetWait: a Mirror of the stream is Ready once its fleet wait is
// over, here with no host answering; a wait that is not positive is
// refused.
func TestFleetWait(t *testing.T) {
	s := runServer(t, false)
	nc := connect(t, s)
	for _, tt := range []struct {
		wait      time.Duration
		readyAt1s bool
	}{{200 * time.Millisecond, true}, {3 * time.Second, false}} {
		m, err := New(nc, WithFleetWait(tt.wait))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-m.Ready():
			if !tt.readyAt1s {
				t.Errorf("wait %v: ready within 1 s", tt.wait)
			}
		case <-time.After(time.Second):
			if tt.readyAt1s {
				t.Errorf("wait %v: not ready after 1 s", tt.wait)
			}
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}
	if _, err := New(nc, WithFleetWait(0)); !errors.Is(err, ErrConfig) {
		t.Errorf("WithFleetWait(0): %v, want ErrConfig", err)
	}
}
