package mirror

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeKV is a bucket whose watcher yields what the test sends.
type fakeKV struct {
	jetstream.KeyValue
	w *fakeWatcher
}

func (kv *fakeKV) WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return kv.w, nil
}

type fakeWatcher struct{ ch chan jetstream.KeyValueEntry }

func (w *fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w *fakeWatcher) Stop() error                             { return nil }

// fakeEntry is an entry with its distance from the bucket's latest.
type fakeEntry struct {
	entry
	delta uint64
	rev   uint64
}

func (e fakeEntry) Bucket() string     { return "netlink" }
func (e fakeEntry) Key() string        { return e.key }
func (e fakeEntry) Value() []byte      { return e.value }
func (e fakeEntry) Revision() uint64   { return e.rev }
func (e fakeEntry) Created() time.Time { return time.Unix(1, 0) }
func (e fakeEntry) Delta() uint64      { return e.delta }
func (e fakeEntry) Operation() jetstream.KeyValueOp {
	if e.value == nil {
		return jetstream.KeyValueDelete
	}
	return jetstream.KeyValuePut
}

// A watcher that lags behind the bucket reads a renamed link's old key
// deleted before the link's newest key, whose earlier values the bucket
// dropped: the callback, which runs meanwhile, is told the link renamed,
// not removed and added again.
func TestBucketLagging(t *testing.T) {
	w, told := startFakeBucket(t)
	a0, x := link(5, "a0", 1500), addr(5, "a0", "192.0.2.1/24")
	w.ch <- fakeEntry{putLink("h.link.a0", a0), 1, 0}
	w.ch <- fakeEntry{putAddr("h.addr.a0.192=2E0=2E2=2E1=2F24", x), 0, 0}
	w.ch <- nil
	// a0 was renamed b0, then c0: the bucket dropped b0's values, which
	// c0's deletions replaced.
	c0, xc := link(5, "c0", 1500), addr(5, "c0", "192.0.2.1/24")
	for _, e := range []fakeEntry{
		{delKey("h.addr.a0.192=2E0=2E2=2E1=2F24"), 5, 0},
		{delKey("h.link.a0"), 4, 0},
		{putLink("h.link.c0", c0), 3, 0},
		{putAddr("h.addr.c0.192=2E0=2E2=2E1=2F24", xc), 2, 0},
		{delKey("h.addr.b0.192=2E0=2E2=2E1=2F24"), 1, 0},
		{delKey("h.link.b0"), 0, 0},
	} {
		time.Sleep(20 * time.Millisecond) // the callback runs meanwhile
		w.ch <- e
	}
	waitTold(t, told, "[mirror.LinkAdded mirror.AddrAdded mirror.LinkChanged mirror.AddrChanged]")
}

// A watcher that never catches up still has its changes delivered, every
// settleMax at least.
func TestBucketLaggingDelivers(t *testing.T) {
	var mu sync.Mutex
	var told []time.Time
	m := newMirror(options{onChange: func(c Change) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, time.Now())
	}})
	defer m.Close()
	w := &fakeWatcher{ch: make(chan jetstream.KeyValueEntry)}
	if err := m.startBucket(&fakeKV{w: w}); err != nil {
		t.Fatal(err)
	}
	m.startDelivery()
	w.ch <- nil
	start := time.Now()
	for i := uint32(0); time.Since(start) < 3*settleMax; i++ {
		w.ch <- fakeEntry{putLink("h.link.a0", link(5, "a0", 1000+i)), 10, 0}
		time.Sleep(settleMax / 40)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) < 2 {
		t.Fatalf("told %d changes in %v of a lagging watcher, want one every %v at least", len(told), time.Since(start), settleMax)
	}
	if first := told[0].Sub(start); first > settleMax+settleMax/4 {
		t.Errorf("the first change came %v after the first entry, want at most %v", first, settleMax+settleMax/4)
	}
}

// A watcher whose entries say nothing is pending, but that skipped
// revisions (values the bucket dropped), waits for what follows before
// its changes are delivered.
func TestBucketSkipped(t *testing.T) {
	w, told := startFakeBucket(t)
	a0, x := link(5, "a0", 1500), addr(5, "a0", "192.0.2.1/24")
	w.ch <- fakeEntry{putLink("h.link.a0", a0), 0, 1}
	w.ch <- fakeEntry{putAddr("h.addr.a0.192=2E0=2E2=2E1=2F24", x), 0, 2}
	w.ch <- nil
	// Revisions 3 to 6 (a0 renamed b0) were replaced by 9 and 10, which
	// the watcher reads last: the count of pending entries read 0 before.
	c0, xc := link(5, "c0", 1500), addr(5, "c0", "192.0.2.1/24")
	for _, e := range []fakeEntry{
		{delKey("h.addr.a0.192=2E0=2E2=2E1=2F24"), 0, 7},
		{delKey("h.link.a0"), 0, 8},
		{putLink("h.link.c0", c0), 0, 9},
		{putAddr("h.addr.c0.192=2E0=2E2=2E1=2F24", xc), 0, 10},
		{delKey("h.addr.b0.192=2E0=2E2=2E1=2F24"), 0, 11},
		{delKey("h.link.b0"), 0, 12},
	} {
		time.Sleep(settleWait / 4) // the callback runs meanwhile
		w.ch <- e
	}
	waitTold(t, told, "[mirror.LinkAdded mirror.AddrAdded mirror.LinkChanged mirror.AddrChanged]")
}

// startFakeBucket starts a Mirror on a fake bucket whose entries the test
// sends on the watcher's channel; told returns the types of the changes
// the callback was told, in order.
func startFakeBucket(t *testing.T) (w *fakeWatcher, told func() string) {
	t.Helper()
	var mu sync.Mutex
	var types []string
	m := newMirror(options{onChange: func(c Change) {
		mu.Lock()
		defer mu.Unlock()
		types = append(types, fmt.Sprintf("%T", c))
	}})
	t.Cleanup(func() { m.Close() })
	w = &fakeWatcher{ch: make(chan jetstream.KeyValueEntry)}
	if err := m.startBucket(&fakeKV{w: w}); err != nil {
		t.Fatal(err)
	}
	m.startDelivery()
	return w, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(types)
	}
}

// waitTold waits up to 2 s for told to return want.
func waitTold(t *testing.T, told func() string, want string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := told()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("told %s, want %s", got, want)
		}
	}
}
