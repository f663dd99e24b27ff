package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/sink"
)

// waitService waits until the bridge's dump service answers, with narrowed
// dumps of lo (cheap whatever the namespace holds).
func waitService(t *testing.T, nc *nats.Conn, host string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		m, err := nc.Request("nlbridge."+host+".dump", []byte(`{"interface":"lo"}`), time.Second)
		if err == nil && m.Header.Get(micro.ErrorCodeHeader) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dump service not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dumpReply parses a reply to a dump request, or fails with its error.
func dumpReply(t *testing.T, m *nats.Msg) sink.DumpReply {
	t.Helper()
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("dump reply: error %s: %s", code, m.Header.Get(micro.ErrorHeader))
	}
	var r sink.DumpReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("dump reply %s: %v", m.Data, err)
	}
	return r
}

// TestIntegrationDumpReplyCoversRequester: consumer B subscribes while
// consumer A's dump is being published, then asks for a dump: B's reply
// names only messages that B received, so B can rebuild from it (B's
// request waits for the next dump instead of sharing A's).
func TestIntegrationDumpReplyCoversRequester(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "w", 1500)
	srv := startServer(t)
	a := connect(t, srv)
	cfg := testConfig("cover", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	cfg.Dump.MinInterval = 100 * time.Millisecond
	runBridge(t, context.Background(), cfg)
	waitService(t, a, "cover")

	// A watcher sees A's dump begin.
	begun := make(chan struct{})
	var once sync.Once
	watch, err := a.Subscribe("netlink.cover.>", func(m *nats.Msg) {
		if doc, err := decodePayload(m); err == nil && doc["dump"] == true && doc["type"] == "NEWLINK" {
			once.Do(func() { close(begun) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Unsubscribe()
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	replyA := make(chan *nats.Msg, 1)
	go func() {
		m, err := a.Request("nlbridge.cover.dump", nil, 30*time.Second)
		if err != nil {
			t.Errorf("A's request: %v", err)
		}
		replyA <- m
	}()
	select {
	case <-begun:
	case <-time.After(20 * time.Second):
		t.Fatal("A's dump did not begin")
	}

	b := connect(t, srv)
	events := collect(t, b, "netlink.cover.>")
	m, err := b.Request("nlbridge.cover.dump", nil, 30*time.Second)
	if err != nil {
		t.Fatalf("B's request: %v", err)
	}
	rb := dumpReply(t, m)
	ra := dumpReply(t, <-replyA)
	t.Logf("A's reply %+v, B's reply %+v", ra, rb)
	events.settle()
	got := map[uint64]bool{}
	for _, m := range events.all() {
		got[uint64(m.num("seq"))] = true
	}
	missing := 0
	for seq := rb.FirstSeq; seq <= rb.LastSeq; seq++ {
		if !got[seq] {
			missing++
		}
	}
	if missing > 0 || rb.Links != 3001 || rb.Addrs != 6000 {
		t.Errorf("B missed %d of the messages its reply names (seq %d to %d); reply has %d links, %d addresses, want 3001 and 6000",
			missing, rb.FirstSeq, rb.LastSeq, rb.Links, rb.Addrs)
	}
}

// TestIntegrationDumpRepairNotStarved: 300 narrowed requests, half for
// interfaces that do not exist (answered 404 at once), all abandoned by
// their callers after 100 ms, then one full request: it is answered in a
// few seconds, as every waiting request shares the next dump, instead of
// waiting behind one dump per minimum interval.
func TestIntegrationDumpRepairNotStarved(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "s", 75) // sa0..sa74, sb0..sb74
	srv := startServer(t)
	nc := connect(t, srv)
	cfg := testConfig("starve", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	cfg.Dump.MinInterval = time.Second
	runBridge(t, context.Background(), cfg)
	waitService(t, nc, "starve")

	const n = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{} // of requests for missing interfaces
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("s%c%d", "ab"[i/2%2], i/4)
			if i%2 == 1 {
				name = fmt.Sprintf("nope%d", i)
			}
			m, err := nc.Request("nlbridge.starve.dump", []byte(`{"interface":"`+name+`"}`), 100*time.Millisecond)
			if i%2 == 0 {
				return // abandoned
			}
			code := "timeout"
			if err == nil {
				code = m.Header.Get(micro.ErrorCodeHeader)
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	// On two busy cores with the race detector, some of 300 requests at
	// once can take longer than 100 ms; none gets another answer.
	t.Logf("requests for missing interfaces: %v", codes)
	if codes["404"]+codes["timeout"] != n/2 || codes["404"] == 0 {
		t.Errorf("requests for missing interfaces got %v, want 404s", codes)
	}
	start := time.Now()
	m, err := nc.Request("nlbridge.starve.dump", []byte(`{"interface":"nope"}`), 5*time.Second)
	if err != nil || m.Header.Get(micro.ErrorCodeHeader) != "404" || time.Since(start) > 500*time.Millisecond {
		t.Errorf("request for a missing interface: %v, after %v, want a 404 at once (not after a dump)", err, time.Since(start))
	}
	start = time.Now()
	m, err = nc.Request("nlbridge.starve.dump", nil, 15*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("full request after the narrowed ones: %v after %v", err, took)
	}
	r := dumpReply(t, m)
	t.Logf("full request answered in %v: %+v", took, r)
	if r.Links != 151 || r.Addrs != 300 || took > 8*time.Second {
		t.Errorf("full request answered in %v with %d links, %d addresses; want 151 and 300, well within 15s", took, r.Links, r.Addrs)
	}
}

// TestIntegrationDumpQueueCap: with a long minimum interval, requests wait;
// at most 1,024 of them, the next gets a 503 at once, and requests whose
// timeout has passed leave the queue and free their place.
func TestIntegrationDumpQueueCap(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	nc := connect(t, srv)
	cfg := testConfig("cap", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	cfg.Dump.MinInterval = time.Hour
	runBridge(t, context.Background(), cfg)
	waitService(t, nc, "cap") // the first dump; the next waits an hour

	const slots = 1024
	replies := make(chan *nats.Msg, slots)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for range slots {
		if err := nc.PublishRequest("nlbridge.cap.dump", inbox, []byte(`{"timeout":"2s"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // until the bridge has taken them all
	start := time.Now()
	m, err := nc.Request("nlbridge.cap.dump", nil, time.Second)
	if err != nil {
		t.Fatalf("request beyond the cap: %v, want an immediate 503", err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "503" || time.Since(start) > 500*time.Millisecond {
		t.Errorf("request beyond the cap: reply %q %q after %v, want an immediate 503", code, m.Header.Get(micro.ErrorHeader), time.Since(start))
	}
	got := map[string]int{}
	for range slots {
		select {
		case m := <-replies:
			got[m.Header.Get(micro.ErrorCodeHeader)]++
		case <-time.After(15 * time.Second):
			t.Fatalf("replies so far: %v", got)
		}
	}
	if got["504"] != slots {
		t.Errorf("replies %v, want %d 504s", got, slots)
	}
	m, err = nc.Request("nlbridge.cap.dump", []byte(`{"timeout":"100ms"}`), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "504" {
		t.Errorf("request once the others have gone: reply %q %q, want 504 (waited, was not refused)", code, m.Header.Get(micro.ErrorHeader))
	}
}
