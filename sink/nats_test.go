package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

func TestStartEmbeddedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = StartEmbedded(EmbeddedConfig{Listen: ln.Addr().String(), Prefix: "netlink", Logger: discard()})
	if err == nil || !strings.Contains(err.Error(), "cannot listen") || !strings.Contains(err.Error(), "nats.servers") {
		t.Errorf("StartEmbedded on a busy port: err = %v, want a clear 'cannot listen' error", err)
	}
	for _, bad := range []string{"localhost", "127.0.0.1:http"} {
		if _, err := StartEmbedded(EmbeddedConfig{Listen: bad, Prefix: "netlink", Logger: discard()}); err == nil {
			t.Errorf("StartEmbedded(%q): no error", bad)
		}
	}
}

// TestHandle publishes through an embedded server and checks stamping:
// host, boot, consecutive seq, first_seq of the dump, subjects, headers.
func TestHandle(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	s, err := Connect(Config{
		Embedded: srv, Name: "test", Host: "h.1",
		Subjects: NewSubjects("netlink", "nlbridge", "h.1"),
		Encoder:  encode.JSON{},
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch := make(chan *nats.Msg, 16)
	if _, err := sub.ChanSubscribe("netlink.>", ch); err != nil {
		t.Fatal(err)
	}
	sub.Flush()

	now := time.Now()
	evs := []event.Event{
		{Type: event.NewLink, Time: now, Link: event.Link{Index: 2, Name: "eth0", State: event.OperUp}},
		{Type: event.Begin, Time: now, Sync: event.SyncInfo{Reason: event.ReasonRequest}},
		{Type: event.NewLink, Time: now, Dump: true, Link: event.Link{Index: 1, Name: "lo"}},
		{Type: event.NewAddr, Time: now, Dump: true, Addr: event.Addr{Index: 1, Ifname: "lo", Family: event.Inet,
			Address: netip.MustParseAddr("127.0.0.1"), PrefixLen: 8, ValidLft: event.Forever, PreferredLft: event.Forever}},
		{Type: event.Sync, Time: now, Sync: event.SyncInfo{Reason: event.ReasonRequest, Links: 1, Addrs: 1}},
	}
	for i := range evs {
		s.Handle(&evs[i])
	}
	// eth0 was not in the dump: it vanished, and is published as deleted
	// before the SYNC.
	sync := evs[len(evs)-1]
	if sync.Seq != 5 || sync.Sync.FirstSeq != 2 || sync.Sync.Links != 1 || sync.Sync.Addrs != 1 || sync.Host != "h.1" || sync.Boot != s.Boot() {
		t.Errorf("stamped SYNC = seq %d first_seq %d links %d addrs %d host %q boot %q",
			sync.Seq, sync.Sync.FirstSeq, sync.Sync.Links, sync.Sync.Addrs, sync.Host, sync.Boot)
	}
	wantSubjects := []string{"netlink.h=2E1.link.eth0.new", "netlink.h=2E1.link.lo.new", "netlink.h=2E1.addr.lo.new",
		"netlink.h=2E1.link.eth0.del", "netlink.h=2E1.sync"}
	for i, want := range wantSubjects {
		select {
		case m := <-ch:
			var doc struct {
				Seq  uint64
				Boot string
			}
			if err := json.Unmarshal(m.Data, &doc); err != nil {
				t.Fatal(err)
			}
			if m.Subject != want || doc.Seq != uint64(i+1) || doc.Boot != s.Boot() || m.Header.Get("Content-Type") != "application/json" ||
				m.Header.Get("Nats-Msg-Id") != fmt.Sprintf("h.1.%s.%d", s.Boot(), i+1) {
				t.Errorf("message %d: %s seq %d boot %s content-type %q; want %s seq %d", i, m.Subject, doc.Seq, doc.Boot,
					m.Header.Get("Content-Type"), want, i+1)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d (%s) not received", i, want)
		}
	}
	if st := s.Stats(); st.Published != 5 || st.PublishErrors != 0 {
		t.Errorf("stats = %+v, want 5 published", st)
	}
	// An event the encoder rejects is counted, and its seq is a visible gap.
	bad := event.Event{Type: event.Type(99), Time: now}
	s.Handle(&bad)
	if st := s.Stats(); st.PublishErrors != 1 {
		t.Errorf("stats after a bad event = %+v, want 1 publish error", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// With no server reachable, Connect succeeds (sidecars start in any
// order), Handle does not block, and Close gives up when told to.
func TestConnectNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	s, err := Connect(Config{Servers: []string{url}, Name: "test", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}})
	if err != nil {
		t.Fatalf("Connect with no server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		ev := event.Event{Type: event.NewLink, Time: time.Now(), Link: event.Link{Index: 1, Name: "lo"}}
		s.Handle(&ev)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Handle blocked with no server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = s.Close(ctx) // must return; an error is expected
}

func TestConnectBadURL(t *testing.T) {
	_, err := Connect(Config{Servers: []string{"nats://[::1"}, Host: "h", Encoder: encode.JSON{}})
	if err == nil || !strings.Contains(err.Error(), "nats://[::1") {
		t.Errorf("Connect with a malformed URL: err = %v, want an error naming it", err)
	}
}

func TestParseDumpRequest(t *testing.T) {
	for _, body := range []string{"", " \n", "{}", " { } ", `{"interface":"eth0.100"}`, `{"interface":""}`,
		"{}\n", "{} \t\r\n "} {
		if _, err := ParseDumpRequest([]byte(body)); err != nil {
			t.Errorf("ParseDumpRequest(%q): %v", body, err)
		}
	}
	for _, body := range []string{"{", "[]", "null x", `{"iface":"eth0"}`, "{} {}", "\x00",
		`{"interface":"a/b"}`, `{"interface":"eth0:1"}`, `{"interface":"0123456789abcdef"}`, `{"interface":".."}`, `{"interface":7}`} {
		if _, err := ParseDumpRequest([]byte(body)); err == nil {
			t.Errorf("ParseDumpRequest(%q): no error", body)
		}
	}
	// Trailing data is named in the error. json.Decoder.More is false
	// before a '}' or ']', so these were once accepted.
	for _, tt := range []struct{ body, trailing string }{
		{"{}}", `"}"`},
		{"{}]", `"]"`},
		{`{"interface":"eth0"}}`, `"}"`},
		{"{} ]\n", `"]\n"`},
		{"{}x", `"x"`},
		{"{}\x00", `"\x00"`},
		{"{} 1", `"1"`},
		{"{}" + strings.Repeat("}", 100), `"` + strings.Repeat("}", 16) + `"`},
	} {
		_, err := ParseDumpRequest([]byte(tt.body))
		if err == nil || !strings.Contains(err.Error(), "trailing data") || !strings.Contains(err.Error(), tt.trailing) {
			t.Errorf("ParseDumpRequest(%q): err = %v, want trailing data %s", tt.body, err, tt.trailing)
		}
	}
}

func FuzzParseDumpRequest(f *testing.F) {
	for _, seed := range []string{"{}", `{"a":1}`, "{}}", "{}]", "{} }", `{"interface":"eth0"}]`, "{}\n", " {} ",
		`{"timeout":"5s"}`, "{}{}", "[]"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// It must not panic, and what it accepts is an empty body or one
		// JSON value (an object) with nothing after it.
		if _, err := ParseDumpRequest(body); err == nil && len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
			t.Errorf("ParseDumpRequest(%q) accepted a body that is not one JSON value", body)
		}
	})
}
