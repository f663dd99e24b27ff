//go:build !noembedded

package sink

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

	var mu sync.Mutex
	var refused []string
	nc, err := nats.Connect(srv.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
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
		mu.Lock()
		r := strings.Join(refused, "\n")
		mu.Unlock()
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
