//go:build !noembedded

package sink

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// TestEmbeddedPermissions: on the embedded server, nlbridge's own
// connection publishes events under its prefix (here a custom one of two
// tokens), and a client without credentials may not, on the prefix or
// under it, while it may publish elsewhere, subjects that only share the
// prefix's letters included, and subscribe to anything.
func TestEmbeddedPermissions(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "ev.x", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s, err := Connect(Config{Embedded: srv, Name: "test", Host: "h1",
		Subjects: NewSubjects("ev.x", "ctl", "h1"), Encoder: encode.JSON{}, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Conn().Close() })

	nc, refused := refusalsConn(t, srv.ClientURL())
	ch := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe(">", ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	s.Handle(&event.Event{Type: event.NewLink, Time: time.Now(), Link: event.Link{Index: 2, Name: "eth0"}})
	for _, subject := range []string{"ev.x.h1.link.eth0.del", "ev.x", "ev.xy", "ev", "netlink.h1.link.eth0.del", "ctl.h1.dump"} {
		if err := nc.Publish(subject, []byte("forged")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 5 {
		select {
		case m := <-ch:
			got[m.Subject] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("received %v, want nlbridge's event and the 4 subjects outside ev.x", got)
		}
	}
	for _, want := range []string{"ev.x.h1.link.eth0.new", "ev.xy", "ev", "netlink.h1.link.eth0.del", "ctl.h1.dump"} {
		if !got[want] {
			t.Errorf("nothing received on %s; got %v", want, got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := refused()
		if strings.Contains(r, `Publish to "ev.x.h1.link.eth0.del"`) && strings.Contains(r, `Publish to "ev.x"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("permission errors %q, want ev.x.h1.link.eth0.del and ev.x refused", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case m := <-ch:
		t.Errorf("received %s %q, want nothing more", m.Subject, m.Data)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestStartEmbeddedNoPrefix(t *testing.T) {
	if _, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("StartEmbedded with no prefix: no error")
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tt := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"localhost", true},
		{"LocalHost.", true},
		{"a.localhost", true},
		{"", false}, // every address
		{"0.0.0.0", false},
		{"::", false},
		{"192.0.2.1", false},
		{"::ffff:192.0.2.1", false},
		{"web-01", false}, // not resolved
		{"localhost.example.com", false},
	} {
		if got := isLoopback(tt.host); got != tt.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

// TestStartEmbeddedWarnsNotLoopback: listening beyond loopback is logged
// as a warning that says who can read what; on loopback it is not.
func TestStartEmbeddedWarnsNotLoopback(t *testing.T) {
	for _, tt := range []struct {
		listen string
		warn   bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		var logs bytes.Buffer
		srv, err := StartEmbedded(EmbeddedConfig{Listen: tt.listen, Prefix: "netlink",
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatal(err)
		}
		srv.Shutdown()
		warned := strings.Contains(logs.String(), "level=WARN") &&
			strings.Contains(logs.String(), "no authentication for subscribers") &&
			strings.Contains(logs.String(), "anyone who can reach it can read this host's interface state") &&
			strings.Contains(logs.String(), "listen="+tt.listen)
		if warned != tt.warn || (!tt.warn && logs.Len() > 0) {
			t.Errorf("StartEmbedded on %s logged %q; want a warning: %v", tt.listen, logs.String(), tt.warn)
		}
	}
}

// TestEmbeddedNoForgedReplies: on the embedded server, a client without
// credentials that listens on every inbox cannot answer in another's
// place. Its publish on an inbox is refused and never delivered, while
// nlbridge's own replies (a request served on its connection), and the
// state bucket's entries that the server delivers to an anonymous watch,
// a deletion included, still arrive. An anonymous client answering a
// request is refused too: the price of the rule.
func TestEmbeddedNoForgedReplies(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink", Bucket: "netlink", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s, err := Connect(Config{Embedded: srv, Name: "test", Host: "h", Subjects: NewSubjects("netlink", "nlbridge", "h"),
		Encoder: encode.JSON{}, Logger: discard(),
		KV: KVConfig{Bucket: "netlink", Replicas: 1, Memory: true, PresenceTTL: kvTestTTL}})
	if err != nil {
		t.Fatal(err)
	}
	closeAtCleanup(t, s)
	// nlbridge's own connection serves a request subject, as its dump
	// service does.
	if _, err := s.Conn().Subscribe("nlbridge.h.dump", func(m *nats.Msg) { m.Respond([]byte("genuine")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	forger, refused := refusalsConn(t, srv.ClientURL())
	// The forger sees every request and every inbox, and answers each
	// request it sees first.
	if _, err := forger.Subscribe(">", func(m *nats.Msg) {
		if m.Reply != "" && strings.HasPrefix(m.Subject, "nlbridge.") {
			forger.Publish(m.Reply, []byte("forged"))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := forger.Flush(); err != nil {
		t.Fatal(err)
	}

	consumer, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consumer.Close)
	for i := range 5 {
		m, err := consumer.Request("nlbridge.h.dump", nil, 5*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if string(m.Data) != "genuine" {
			t.Fatalf("request %d: reply %q, want nlbridge's", i, m.Data)
		}
	}
	// A forged publish straight on an inbox is not delivered either.
	inbox := nats.NewInbox()
	direct, err := consumer.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Flush(); err != nil {
		t.Fatal(err)
	}
	forger.Publish(inbox, []byte("forged"))
	forger.Flush()
	s.Conn().Publish(inbox, []byte("genuine"))
	if m, err := direct.NextMsg(5 * time.Second); err != nil || string(m.Data) != "genuine" {
		t.Fatalf("on %s: %v, %v; want nlbridge's message alone", inbox, m, err)
	}
	if m, err := direct.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("on %s after nlbridge's: %q, want nothing", inbox, m.Data)
	}

	// The state bucket, watched by an anonymous client: the server's
	// deliveries to its inbox arrive, the link's deletion included.
	js, err := jetstream.New(consumer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "netlink")
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "h.link.>")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func(what string) string {
		for {
			select {
			case e := <-w.Updates():
				if e != nil { // nil: the end of what the bucket held
					return e.Key() + " " + e.Operation().String()
				}
			case <-ctx.Done():
				t.Fatalf("watch: nothing for %s", what)
			}
		}
	}
	dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536))
	if got, want := next("the link"), "h.link.lo KeyValuePutOp"; got != want {
		t.Errorf("watch: %s, want %s", got, want)
	}
	s.Handle(linkEv(event.DelLink, 1, "lo", 65536))
	if got, want := next("its deletion"), "h.link.lo KeyValueDeleteOp"; got != want {
		t.Errorf("watch: %s, want %s", got, want)
	}

	if r := refused(); !strings.Contains(r, `Publish to "_INBOX.`) {
		t.Errorf("permission errors %q, want the forger's publishes on inboxes refused", r)
	}
}

// refusalsConn connects to url without credentials and returns the
// connection and a function that returns the permission violations the
// server has reported to it so far, one per line.
func refusalsConn(t *testing.T, url string) (*nats.Conn, func() string) {
	t.Helper()
	var mu sync.Mutex
	var refused []string
	nc, err := nats.Connect(url, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, nats.ErrPermissionViolation) {
			refused = append(refused, err.Error())
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(refused, "\n")
	}
}
