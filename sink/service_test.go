package sink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/source"
)

func TestParseDumpRequestTimeout(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{}`:                   dumpTimeout,
		`{"timeout":"100ms"}`:  100 * time.Millisecond,
		`{"timeout":"30s"}`:    30 * time.Second,
		`{"timeout":"1m0.5s"}`: 0,
		`{"timeout":"0s"}`:     0,
		`{"timeout":"-1s"}`:    0,
		`{"timeout":"1 s"}`:    0,
		`{"timeout":"100"}`:    0,
		`{"timeout":100}`:      0,
		`{"timeout":"1e3s"}`:   0,
	} {
		req, err := ParseDumpRequest([]byte(body))
		switch {
		case want == 0 && err == nil:
			t.Errorf("ParseDumpRequest(%s): no error, timeout %v", body, req.timeout)
		case want != 0 && err != nil:
			t.Errorf("ParseDumpRequest(%s): %v", body, err)
		case want != 0 && req.timeout != want:
			t.Errorf("ParseDumpRequest(%s): timeout %v, want %v", body, req.timeout, want)
		}
	}
}

// dumperFunc adapts a function to Dumper.
type dumperFunc func(ctx context.Context, reason event.Reason, iface string) (event.Event, error)

func (f dumperFunc) Dump(ctx context.Context, reason event.Reason, iface string) (event.Event, error) {
	return f(ctx, reason, iface)
}

// startService runs a sink and its dump service, with dumper d, on an
// embedded server, and returns a client connection to that server.
func startService(t *testing.T, d Dumper) *nats.Conn {
	t.Helper()
	nc, _ := startServiceSink(t, d)
	return nc
}

// startServiceSink is startService that also returns the sink.
func startServiceSink(t *testing.T, d Dumper) (*nats.Conn, *NATS) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s, err := Connect(Config{Embedded: srv, Name: "test", Host: "h1",
		Subjects: NewSubjects("netlink", "nlbridge", "h1"), Encoder: encode.JSON{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	for !s.Conn().IsConnected() {
		time.Sleep(time.Millisecond)
	}
	svc, err := NewService(s, d, "0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, s
}

// errorCode returns a micro error reply's code and description, or "".
func errorCode(m *nats.Msg) (string, string) {
	return m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
}

// TestServiceErrors: a missing interface is a 404, a dump whose SYNC was
// not published a 503 (never a reply naming an unpublished seq), a dump
// not done within the request's timeout a 504, a bad timeout or trailing
// data a 400.
func TestServiceErrors(t *testing.T) {
	nc := startService(t, dumperFunc(func(ctx context.Context, _ event.Reason, iface string) (event.Event, error) {
		switch iface {
		case "gone0":
			return event.Event{}, fmt.Errorf("source: dump %s: %w", iface, source.ErrNoInterface)
		case "slow0":
			<-ctx.Done()
			return event.Event{}, ctx.Err()
		}
		// The SYNC as the sink leaves it when NATS did not take it.
		return event.Event{Type: event.Sync, Sync: event.SyncInfo{Reason: event.ReasonRequest, Links: 3, FirstSeq: 7}}, nil
	}))
	for _, tt := range []struct {
		body, code, text string
		within           time.Duration
	}{
		{`{"interface":"gone0"}`, "404", "no such interface", time.Second},
		{`{}`, "503", "dump not published: NATS unreachable; retry", time.Second},
		{`{"interface":"slow0","timeout":"200ms"}`, "504", "timeout", time.Second},
		{`{"timeout":"40s"}`, "400", "timeout", time.Second},
		{`{}}`, "400", `trailing data after the JSON object: "}"`, time.Second},
	} {
		start := time.Now()
		m, err := nc.Request("nlbridge.h1.dump", []byte(tt.body), 5*time.Second)
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		code, text := errorCode(m)
		if code != tt.code || !strings.Contains(text, tt.text) {
			t.Errorf("%s: reply %s %q (%s), want %s %q", tt.body, code, text, m.Data, tt.code, tt.text)
		}
		if took := time.Since(start); took > tt.within {
			t.Errorf("%s: answered in %v, want within %v", tt.body, took, tt.within)
		}
	}
}

// TestServiceCap: at most maxInFlight requests wait; the next gets a 503
// at once, and the slots of requests whose timeout has passed are free
// again.
func TestServiceCap(t *testing.T) {
	nc := startService(t, dumperFunc(func(ctx context.Context, _ event.Reason, _ string) (event.Event, error) {
		<-ctx.Done() // a dump that never comes
		return event.Event{}, ctx.Err()
	}))
	replies := make(chan *nats.Msg, 2*maxInFlight)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for range maxInFlight {
		if err := nc.PublishRequest("nlbridge.h1.dump", inbox, []byte(`{"timeout":"1s"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // until the service has taken them all
	m, err := nc.Request("nlbridge.h1.dump", []byte(`{"timeout":"1s"}`), 500*time.Millisecond)
	if err != nil {
		t.Fatalf("request beyond the cap: %v, want an immediate 503", err)
	}
	if code, text := errorCode(m); code != "503" {
		t.Errorf("request beyond the cap: reply %s %q, want 503", code, text)
	}
	got := map[string]int{}
	for range maxInFlight {
		select {
		case m := <-replies:
			code, _ := errorCode(m)
			got[code]++
		case <-time.After(10 * time.Second):
			t.Fatalf("replies so far: %v", got)
		}
	}
	if got["504"] != maxInFlight {
		t.Errorf("replies %v, want %d 504s", got, maxInFlight)
	}
	// The slots are free again.
	m, err = nc.Request("nlbridge.h1.dump", []byte(`{"timeout":"100ms"}`), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, text := errorCode(m); code != "504" {
		t.Errorf("request after the others timed out: reply %s %q, want 504", code, text)
	}
}

// A dump during which the sink's connection was replaced is answered 503:
// its messages may have been lost with the old connection, and the reply
// must not name a range with a hole.
func TestServiceReconnectDuringDump(t *testing.T) {
	var sink *NATS
	ready := make(chan struct{})
	nc, s := startServiceSink(t, dumperFunc(func(ctx context.Context, _ event.Reason, _ string) (event.Event, error) {
		<-ready
		before := sink.Conn().Stats().Reconnects
		if err := sink.Conn().ForceReconnect(); err != nil {
			return event.Event{}, err
		}
		for sink.Conn().Stats().Reconnects == before || !sink.Conn().IsConnected() {
			if ctx.Err() != nil {
				return event.Event{}, ctx.Err()
			}
			time.Sleep(5 * time.Millisecond)
		}
		return event.Event{Type: event.Sync, Seq: 9, Sync: event.SyncInfo{Reason: event.ReasonRequest, FirstSeq: 7}}, nil
	}))
	sink = s
	close(ready)
	m, err := nc.Request("nlbridge.h1.dump", nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, text := errorCode(m); code != "503" {
		t.Errorf("reply %s %q (%s), want 503", code, text, m.Data)
	}
}
