package sink

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
