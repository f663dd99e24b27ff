package sink

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/event"
)

func TestEscapeToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"eth0", "eth0"},
		{"eth0.100", "eth0=2E100"},
		{"br-lan_2", "br-lan_2"},
		{"_x", "=5Fx"},
		{"x_", "x_"},
		{"a*b>c", "a=2Ab=3Ec"},
		{"=", "=3D"},
		{"$sys", "=24sys"},
		{"wg 0", "wg=200"},
		{"é", "=C3=A9"},
		{"\xff", "=FF"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EscapeToken(tt.in); got != tt.want {
			t.Errorf("EscapeToken(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := UnescapeToken(tt.want)
		if err != nil || back != tt.in {
			t.Errorf("UnescapeToken(%q) = %q, %v, want %q", tt.want, back, err, tt.in)
		}
	}
}

func TestUnescapeTokenRejects(t *testing.T) {
	for _, tok := range []string{
		"_x",     // a leading '_' is always escaped
		"a=2",    // cut short
		"a=",     // cut short
		"a=2e",   // lower-case hex
		"a=ZZ",   // not hex
		"=41",    // 'A' needs no escape
		"a.b",    // '.' must be escaped
		"a*",     // wildcard
		"a b",    // space
		"=5F=5F", // only the first '_' is escaped
	} {
		if got, err := UnescapeToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("UnescapeToken(%q) = %q, %v, want ErrBadToken", tok, got, err)
		}
	}
}

// validToken reports whether tok can stand as one NATS subject token and
// one JetStream KV key (which allows [-/_=.a-zA-Z0-9]).
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !tokenSafe(c) && c != '=' {
			return false
		}
	}
	return true
}

func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"eth0", "eth0.100", "_", "a*b>c", "=3D", "\x00\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		if s != "" && !validToken(tok) {
			t.Fatalf("EscapeToken(%q) = %q, not a valid token", s, tok)
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != s {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", s, back, err)
		}
		// Every token has one name: unescaping arbitrary input and
		// escaping again gives the input back.
		if name, err := UnescapeToken(s); err == nil && EscapeToken(name) != s {
			t.Fatalf("EscapeToken(UnescapeToken(%q)) = %q", s, EscapeToken(name))
		}
	})
}

func TestSubjects(t *testing.T) {
	s := NewSubjects("netlink", "nlbridge", "web-01.example")
	link := func(typ event.Type, name string) *event.Event {
		return &event.Event{Type: typ, Link: event.Link{Index: 7, Name: name}}
	}
	addr := func(typ event.Type, name string) *event.Event {
		return &event.Event{Type: typ, Addr: event.Addr{Index: 9, Ifname: name, Address: netip.MustParseAddr("192.0.2.1")}}
	}
	tests := []struct {
		ev   *event.Event
		want string
	}{
		{link(event.NewLink, "eth0"), "netlink.web-01=2Eexample.link.eth0.new"},
		{link(event.DelLink, "eth0.100"), "netlink.web-01=2Eexample.link.eth0=2E100.del"},
		{addr(event.NewAddr, "br0"), "netlink.web-01=2Eexample.addr.br0.new"},
		{addr(event.DelAddr, ""), "netlink.web-01=2Eexample.addr._9.del"},
		{&event.Event{Type: event.Sync}, "netlink.web-01=2Eexample.sync"},
	}
	for _, tt := range tests {
		if got := string(s.Append(nil, tt.ev)); got != tt.want {
			t.Errorf("subject of %v %q = %q, want %q", tt.ev.Type, tt.ev.Link.Name+tt.ev.Addr.Ifname, got, tt.want)
		}
	}
	if got, want := s.Sync(), "netlink.web-01=2Eexample.sync"; got != want {
		t.Errorf("Sync() = %q, want %q", got, want)
	}
	if got, want := s.HostDump(), "nlbridge.web-01=2Eexample.dump"; got != want {
		t.Errorf("HostDump() = %q, want %q", got, want)
	}
	if got, want := s.FleetDump(), "nlbridge.dump"; got != want {
		t.Errorf("FleetDump() = %q, want %q", got, want)
	}
	if strings.Contains(s.Events(), "..") {
		t.Errorf("Events() = %q", s.Events())
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
