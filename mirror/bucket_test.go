package mirror

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
