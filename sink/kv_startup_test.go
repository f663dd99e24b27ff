package sink

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/event"
)

// A JetStream that does not answer holds the startup dump's SYNC, and
// every event behind it, for kvStartupOpen at most: not for the writer's
// own attempt to open the bucket on top, nor for the whole read timeout.
// The keys are read later, by the writer.
func TestKVStartupSilentJetStream(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A JetStream API that takes requests and never answers, as one
	// without a leader does for a while.
	if _, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ch := listen(t, srv.ClientURL())
	logs := new(syncBuffer)
	s := newKVSink(t, srv.ClientURL(), "h", logs)
	time.Sleep(200 * time.Millisecond) // the writer is waiting for its answer

	start := time.Now()
	sync := dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 2, "eth0", 1500))
	took := time.Since(start)
	if limit := kvStartupOpen + time.Second; took > limit {
		t.Errorf("the startup dump took %v, want at most %v", took, limit)
	}
	if sync.Seq == 0 {
		t.Error("the startup SYNC was not published")
	}
	next(t, ch, 2)
	if !strings.Contains(logs.String(), "cannot read the state bucket at startup") {
		t.Errorf("the log does not say the bucket was not read:\n%s", logs)
	}
	// Events flow meanwhile.
	start = time.Now()
	s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
	next(t, ch, 1)
	if took := time.Since(start); took > time.Second {
		t.Errorf("an event took %v", took)
	}
}

// Once the writer has found no JetStream, the startup dump's SYNC makes no
// request of its own.
func TestKVStartupNoJetStream(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	logs := new(syncBuffer)
	s := newKVSink(t, srv.ClientURL(), "h", logs)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "no JetStream"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about JetStream:\n%s", logs)
		}
	}
	if !s.kv.noJetStream.Load() {
		t.Fatal("the writer warned, but did not record it")
	}
	sync := dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 2, "eth0", 1500))
	if sync.Seq == 0 {
		t.Error("the startup SYNC was not published")
	}
	// The writer's request said "open bucket ...: no responders"; the
	// startup's says what the writer found, without a request.
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "cannot read the state bucket at startup") {
			line = l
		}
	}
	if !strings.Contains(line, "jetstream not enabled") || strings.Contains(line, "open bucket") {
		t.Errorf("the startup's warning is %q, want one that says JetStream is not enabled, without a request:\n%s", line, logs)
	}
}

// TestKVStartupDumpOutlastsLinger: a startup dump that takes longer than
// the writer's linger (a big host, a busy machine) must not have its
// values written before the SYNC reads the bucket: the read would find
// "moved" with its new index, take the key for live, and the DELLINK of
// the old index, which consumers of the last run hold, would never go out.
func TestKVStartupDumpOutlastsLinger(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	url := srv.ClientURL()
	first := newKVSink(t, url, "h", nil)
	kv := bucket(t, url)
	dump(first, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 4, "moved", 1500))
	waitContents(t, kv, "h", []string{"h.link.lo=NEWLINK 1 lo mtu 65536", "h.link.moved=NEWLINK 4 moved mtu 1500"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// While nlbridge was down, "moved" was created again with index 7.
	ch := listen(t, url)
	second := newKVSinkConfig(t, url, "h", func(c *KVConfig) { c.AwaitStartup = true })
	info := event.SyncInfo{Reason: event.ReasonStartup}
	second.Handle(&event.Event{Type: event.Begin, Time: time.Now(), Sync: info})
	for _, ev := range []*event.Event{linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 7, "moved", 1500)} {
		ev.Dump = true
		second.Handle(ev)
	}
	time.Sleep(10 * kvLinger) // the writer would have written h.link.moved by now
	if e, err := kv.Get(ctx, "h.link.moved"); err != nil || !strings.Contains(string(e.Value()), `"index":4`) {
		t.Fatalf("before the SYNC, h.link.moved holds %q (%v), want the last run's value, index 4", valueOf(e), err)
	}
	sync := &event.Event{Type: event.Sync, Time: time.Now(), Sync: info}
	second.Handle(sync)
	got := next(t, ch, int(sync.Seq))
	var names []string
	for _, r := range got {
		names = append(names, r.String())
	}
	want := []string{"NEWLINK netlink.h.link.lo.new", "NEWLINK netlink.h.link.moved.new", "DELLINK netlink.h.link.moved.del", "SYNC netlink.h.sync"}
	if !slices.Equal(names, want) {
		t.Errorf("the startup dump: %v, want %v", names, want)
	}
	waitContents(t, kv, "h", []string{"h.link.lo=NEWLINK 1 lo mtu 65536", "h.link.moved=NEWLINK 7 moved mtu 1500"})
}

func valueOf(e jetstream.KeyValueEntry) string {
	if e == nil {
		return ""
	}
	return string(e.Value())
}
