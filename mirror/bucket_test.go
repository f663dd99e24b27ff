package mirror

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

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
