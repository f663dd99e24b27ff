package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// received is a message as a test sees it.
type received struct {
	subject string
	Type    string
	Seq     uint64
	Dump    bool
	Changed []string
	Reason  string
	Links   int
	Addrs   int
	First   uint64 `json:"first_seq"`
	Link    struct{ MTU uint32 }
}

func (r received) String() string { return r.Type + " " + r.subject }

// listen subscribes to everything the sink publishes.
func listen(t *testing.T, url string) chan received {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan received, 1024)
	if _, err := nc.Subscribe("netlink.>", func(m *nats.Msg) {
		var r received
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("%s: %v", m.Subject, err)
		}
		r.subject = m.Subject
		ch <- r
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// next returns the next n messages.
func next(t *testing.T, ch chan received, n int) []received {
	t.Helper()
	var out []received
	for len(out) < n {
		select {
		case r := <-ch:
			out = append(out, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d messages %v, want %d", len(out), out, n)
		}
	}
	return out
}

func quiet(t *testing.T, ch chan received) {
	t.Helper()
	select {
	case r := <-ch:
		t.Errorf("unexpected message %v", r)
	case <-time.After(100 * time.Millisecond):
	}
}

func runServer(t *testing.T, port int) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", port
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

func newSink(t *testing.T, url string) *NATS {
	t.Helper()
	s, err := Connect(Config{Servers: []string{url}, Name: "test", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func linkEv(typ event.Type, index uint32, name string, mtu uint32) *event.Event {
	return &event.Event{Type: typ, Time: time.Now(), Link: event.Link{Index: index, Name: name, MTU: mtu}}
}

// A NEWLINK that changes nothing published is dropped; one that changes
// something says what.
func TestHandleUnchanged(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newSink(t, srv.ClientURL())
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
	got := next(t, ch, 2)
	if got[0].Changed != nil || !slices.Equal(got[1].Changed, []string{"mtu"}) || got[1].Seq != 2 {
		t.Errorf("got %+v, want a new link, then seq 2 with changed [mtu]", got)
	}
	quiet(t, ch)
	if st := s.Stats(); st.Unchanged != 1 {
		t.Errorf("stats = %+v, want 1 unchanged", st)
	}
}

// A resync publishes only what differs from what was published, and
// deletions for what vanished.
func TestHandleResync(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newSink(t, srv.ClientURL())
	for _, ev := range []*event.Event{
		{Type: event.Begin, Sync: event.SyncInfo{Reason: event.ReasonStartup}},
		linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 1500), linkEv(event.NewLink, 3, "eth1", 1500),
		{Type: event.Sync, Time: time.Now(), Sync: event.SyncInfo{Reason: event.ReasonStartup}},
	} {
		ev.Dump = ev.Type.IsLink()
		s.Handle(ev)
	}
	next(t, ch, 4)
	// Messages were lost: eth0's MTU changed and eth1 was deleted.
	for _, ev := range []*event.Event{
		{Type: event.Begin, Sync: event.SyncInfo{Reason: event.ReasonResync}},
		linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 9000),
		{Type: event.Sync, Time: time.Now(), Sync: event.SyncInfo{Reason: event.ReasonResync}},
	} {
		ev.Dump = ev.Type.IsLink()
		s.Handle(ev)
	}
	got := next(t, ch, 3)
	if got[0].String() != "NEWLINK netlink.h.link.eth0.new" || got[0].Link.MTU != 9000 ||
		got[1].String() != "DELLINK netlink.h.link.eth1.del" || !got[1].Dump ||
		got[2].Reason != "resync" || got[2].Links != 2 || got[2].First != got[0].Seq {
		t.Errorf("resync published %+v", got)
	}
	quiet(t, ch)
}

// While the server is down, nlbridge keeps reading; when it is back, one
// message per changed object and a SYNC "reconnect" catch consumers up.
func TestReconcileAfterOutage(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	port := srv.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	url := srv.ClientURL()
	s := newSink(t, url)
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	s.Handle(linkEv(event.NewLink, 3, "eth1", 1500))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for s.Conn().IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// The outage: eth0 flaps a thousand times, eth1 goes, eth2 comes.
	for i := range 1000 {
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1000+uint32(i)))
	}
	s.Handle(linkEv(event.DelLink, 3, "eth1", 1500))
	s.Handle(linkEv(event.NewLink, 4, "eth2", 1500))
	if st := s.Stats(); st.PublishErrors == 0 {
		t.Fatalf("stats = %+v: publishing did not fail while the server was down", st)
	}

	srv = runServer(t, int(port))
	ch := listen(t, srv.ClientURL())
	got := next(t, ch, 4)
	var names []string
	for _, r := range got {
		names = append(names, r.String())
	}
	want := []string{"DELLINK netlink.h.link.eth1.del", "NEWLINK netlink.h.link.eth0.new", "NEWLINK netlink.h.link.eth2.new", "SYNC netlink.h.sync"}
	if !slices.Equal(names, want) {
		t.Fatalf("after reconnecting: %v, want %v", names, want)
	}
	if got[1].Link.MTU != 1999 || got[3].Reason != "reconnect" || got[3].Links != 2 || got[3].First != got[0].Seq ||
		got[0].Seq != 3 || got[3].Seq != 6 {
		t.Errorf("after reconnecting: %+v", got)
	}
	quiet(t, ch)
	if st := s.Stats(); st.Reconciled != 3 || !strings.Contains(s.Conn().ConnectedUrl(), "127.0.0.1") {
		t.Errorf("stats = %+v, want 3 reconciled", st)
	}
}

// syncBuffer is a log destination that tests read while the sink writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A TLS URL for a server that speaks no TLS: Connect does not hang, and the
// log says once, as a warning, what is wrong.
func TestConnectTLSMismatch(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	var logs syncBuffer
	start := time.Now()
	s, err := Connect(Config{Servers: []string{fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)},
		Name: "test", Host: "h", Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer s.Conn().Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Connect took %v", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "level=WARN msg=\"cannot connect to NATS") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning in the log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(strings.ToLower(l), "secure") && !strings.Contains(strings.ToLower(l), "tls") {
		t.Errorf("the warning does not say what is wrong:\n%s", l)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"cannot connect"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
}

// A dump that the source reads again (the kernel interrupted it) counts
// the last attempt's objects only, and its range starts at the first
// attempt's first message; objects only the first attempt showed vanished.
func TestHandleDumpRetry(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	ch := listen(t, srv.ClientURL())
	s := newSink(t, srv.ClientURL())
	info := event.SyncInfo{Reason: event.ReasonRequest}
	s.Handle(&event.Event{Type: event.Begin, Sync: info})
	for _, ev := range []*event.Event{linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 1500)} {
		ev.Dump = true
		s.Handle(ev)
	}
	s.Handle(&event.Event{Type: event.Begin, Sync: info}) // the retry
	ev := linkEv(event.NewLink, 1, "lo", 65536)
	ev.Dump = true
	s.Handle(ev)
	sync := &event.Event{Type: event.Sync, Time: time.Now(), Sync: info}
	s.Handle(sync)
	got := next(t, ch, 5)
	want := []string{"NEWLINK netlink.h.link.lo.new", "NEWLINK netlink.h.link.eth0.new", "NEWLINK netlink.h.link.lo.new",
		"DELLINK netlink.h.link.eth0.del", "SYNC netlink.h.sync"}
	if !slices.Equal(names(got), want) {
		t.Errorf("published %v, want %v", names(got), want)
	}
	if sync.Seq != 5 || sync.Sync.FirstSeq != 1 || sync.Sync.Links != 1 || got[4].Links != 1 || got[4].First != 1 {
		t.Errorf("SYNC seq %d first_seq %d links %d (published %+v), want seq 5, first_seq 1, links 1",
			sync.Seq, sync.Sync.FirstSeq, sync.Sync.Links, got[4])
	}
}

// A dump some message of which did not reach the NATS client returns its
// SYNC with Seq 0, so that no reply names it; the next one is whole again.
func TestHandleDumpLost(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	s := newSink(t, srv.ClientURL())
	info := event.SyncInfo{Reason: event.ReasonRequest}
	s.Handle(&event.Event{Type: event.Begin, Sync: info})
	s.Handle(&event.Event{Type: event.NewLink, Dump: true, Time: time.Now(), Link: event.Link{Index: 1, Name: "lo"}})
	s.Handle(&event.Event{Type: event.NewLink, Dump: true, Time: time.Time{}.AddDate(20000, 0, 0), // no RFC 3339 time: the encoder refuses it
		Link: event.Link{Index: 2, Name: "eth0"}})
	sync := &event.Event{Type: event.Sync, Time: time.Now(), Sync: info}
	s.Handle(sync)
	if sync.Seq != 0 || s.Stats().PublishErrors != 1 {
		t.Errorf("SYNC after a lost message: seq %d, stats %+v; want seq 0 and 1 publish error", sync.Seq, s.Stats())
	}
	again := dump(s, event.ReasonRequest, "", linkEv(event.NewLink, 1, "lo", 0))
	if again.Seq == 0 {
		t.Errorf("the next dump's SYNC has seq 0")
	}
}
