package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/sink"
)

// TestEmbeddedServerRefusesForgedEvents runs nlbridge as the quick start
// does, with no nats.servers, watching its own namespace (no privileges
// needed), and connects as any local user would, without credentials. That
// client may subscribe to the events, ask for a dump and get the reply, and
// discover the service ($SRV.INFO), but its publish of a DELLINK on the
// event prefix is refused, and a subscriber sees nothing of it.
func TestEmbeddedServerRefusesForgedEvents(t *testing.T) {
	url := closedPort(t) // a free port for the embedded server
	cfg := config.Default()
	cfg.Host = "emb"
	cfg.NATS.Embedded.Listen = strings.TrimPrefix(url, "nats://")
	runBridge(t, context.Background(), cfg)

	var mu sync.Mutex
	var asyncErrs []error
	var nc *nats.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		nc, err = nats.Connect(url, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			asyncErrs = append(asyncErrs, err)
			mu.Unlock()
		}))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot connect to the embedded server without credentials: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(nc.Close)

	// Subscribing works: the SYNC of a requested dump arrives.
	events := collect(t, nc, "netlink.emb.>")
	forged := collect(t, nc, "netlink.emb.link.x.>")
	var reply sink.DumpReply
	for {
		resp, err := nc.Request("nlbridge.emb.dump", nil, 5*time.Second)
		if err == nil {
			if err := json.Unmarshal(resp.Data, &reply); err != nil {
				t.Fatalf("dump reply %q: %v", resp.Data, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dump request: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if reply.Host != "emb" || reply.Links == 0 || reply.LastSeq == 0 {
		t.Errorf("dump reply = %+v, want this host's links", reply)
	}
	events.waitFor(0, "the SYNC of the request", func(m msg) bool {
		return m.str("type") == "SYNC" && m.num("seq") == float64(reply.LastSeq)
	})

	// Service discovery, as nats micro ls and nats micro info do it.
	resp, err := nc.Request("$SRV.INFO."+sink.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.INFO: %v", err)
	}
	var info micro.Info
	if err := json.Unmarshal(resp.Data, &info); err != nil || info.Name != sink.ServiceName || len(info.Endpoints) != 2 {
		t.Errorf("$SRV.INFO reply %s (%v), want the service and its two endpoints", resp.Data, err)
	}
	if _, err := nc.Request("$SRV.PING", nil, 5*time.Second); err != nil {
		t.Errorf("$SRV.PING: %v", err)
	}

	// Publishing events is refused: on the prefix and on the prefix alone.
	forgedMsg := []byte(`{"v":1,"type":"DELLINK","host":"emb","seq":999999,"link":{"index":1,"name":"x"}}`)
	for _, subject := range []string{"netlink.emb.link.x.del", "netlink"} {
		if err := nc.Publish(subject, forgedMsg); err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for want := 2; ; {
		mu.Lock()
		n := 0
		for _, err := range asyncErrs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "Publish") {
				n++
			}
		}
		got := append([]error(nil), asyncErrs...)
		mu.Unlock()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing events: errors %v, want %d permissions violations for publish", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The request of a dump after the forgery is answered, and the
	// subscriber to the forged subject has seen nothing by its SYNC.
	resp, err = nc.Request("nlbridge.emb.dump", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("dump request after the forgery: %v", err)
	}
	if err := json.Unmarshal(resp.Data, &reply); err != nil {
		t.Fatalf("dump reply %q: %v", resp.Data, err)
	}
	events.waitFor(0, "the SYNC of the second request", func(m msg) bool {
		return m.str("type") == "SYNC" && m.num("seq") == float64(reply.LastSeq)
	})
	if got := forged.all(); len(got) != 0 {
		t.Errorf("a subscriber received the forged messages: %v", got)
	}
	for _, m := range events.all() {
		if m.num("seq") == 999999 {
			t.Errorf("a subscriber received the forged message: %v", m.doc)
		}
	}
	if !nc.IsConnected() {
		t.Errorf("the client was disconnected: %v", nc.Status())
	}
}
