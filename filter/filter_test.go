package filter

import (
	"errors"
	"net/netip"
	"path"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/event"
)

func link(typ event.Type, name string) *event.Event {
	return &event.Event{Type: typ, Link: event.Link{Index: 2, Name: name}}
}

func addr(typ event.Type, name string, fam event.Family) *event.Event {
	a := netip.MustParseAddr("192.0.2.1")
	if fam == event.Inet6 {
		a = netip.MustParseAddr("2001:db8::1")
	}
	return &event.Event{Type: typ, Addr: event.Addr{Index: 2, Ifname: name, Family: fam, Address: a, PrefixLen: 24}}
}

func TestAllow(t *testing.T) {
	sync := &event.Event{Type: event.Sync}
	begin := &event.Event{Type: event.Begin}
	tests := []struct {
		name string
		cfg  Config
		ev   *event.Event
		want bool
	}{
		{"zero config allows links", Config{}, link(event.NewLink, "eth0"), true},
		{"zero config allows addrs", Config{}, addr(event.DelAddr, "eth0", event.Inet6), true},

		{"include literal matches", Config{Include: []string{"eth0"}}, link(event.NewLink, "eth0"), true},
		{"include literal is not a prefix", Config{Include: []string{"eth0"}}, link(event.NewLink, "eth0.100"), false},
		{"include glob matches", Config{Include: []string{"lo", "eth*"}}, link(event.NewLink, "eth0.100"), true},
		{"include glob does not match", Config{Include: []string{"eth*"}}, link(event.DelLink, "veth1"), false},
		{"include class", Config{Include: []string{"eth[0-3]"}}, link(event.NewLink, "eth2"), true},
		{"include class misses", Config{Include: []string{"eth[0-3]"}}, link(event.NewLink, "eth4"), false},
		{"include ?", Config{Include: []string{"wg?"}}, link(event.NewLink, "wg0"), true},
		{"escaped metacharacter is literal", Config{Include: []string{`br\*`}}, link(event.NewLink, "br*"), true},
		{"escaped metacharacter is not a glob", Config{Include: []string{`br\*`}}, link(event.NewLink, "br0"), false},
		{"include applies to Ifname", Config{Include: []string{"eth*"}}, addr(event.NewAddr, "eth1", event.Inet), true},
		{"include rejects Ifname", Config{Include: []string{"eth*"}}, addr(event.NewAddr, "veth1", event.Inet), false},
		{"unknown Ifname with include", Config{Include: []string{"e*"}}, addr(event.NewAddr, "", event.Inet), false},
		{"unknown Ifname with include *", Config{Include: []string{"*"}}, addr(event.NewAddr, "", event.Inet), true},
		{"unknown Ifname with exclude only", Config{Exclude: []string{"veth*"}}, addr(event.NewAddr, "", event.Inet), true},

		{"exclude literal", Config{Exclude: []string{"docker0"}}, link(event.NewLink, "docker0"), false},
		{"exclude glob", Config{Exclude: []string{"veth*"}}, addr(event.DelAddr, "veth9", event.Inet6), false},
		{"exclude other name", Config{Exclude: []string{"veth*"}}, link(event.NewLink, "eth0"), true},
		{"exclude wins over include", Config{Include: []string{"*"}, Exclude: []string{"lo"}}, link(event.NewLink, "lo"), false},
		{"include and exclude, allowed", Config{Include: []string{"e*"}, Exclude: []string{"eth9"}}, link(event.NewLink, "eth0"), true},

		{"family inet allows inet", Config{Families: []string{"inet"}}, addr(event.NewAddr, "eth0", event.Inet), true},
		{"family inet drops inet6", Config{Families: []string{"inet"}}, addr(event.NewAddr, "eth0", event.Inet6), false},
		{"family inet drops inet6 DELADDR", Config{Families: []string{"inet"}}, addr(event.DelAddr, "eth0", event.Inet6), false},
		{"family does not apply to links", Config{Families: []string{"inet6"}}, link(event.NewLink, "eth0"), true},
		{"both families", Config{Families: []string{"inet", "inet6"}}, addr(event.NewAddr, "eth0", event.Inet6), true},
		{"odd family dropped when families set", Config{Families: []string{"inet"}}, addr(event.NewAddr, "eth0", 200), false},
		{"family and name", Config{Families: []string{"inet"}, Exclude: []string{"eth0"}}, addr(event.NewAddr, "eth0", event.Inet), false},

		{"event allowed", Config{Events: []string{"NEWLINK"}}, link(event.NewLink, "eth0"), true},
		{"event dropped", Config{Events: []string{"NEWLINK"}}, link(event.DelLink, "eth0"), false},
		{"addr event dropped", Config{Events: []string{"NEWLINK", "DELLINK"}}, addr(event.NewAddr, "eth0", event.Inet), false},
		{"addr event allowed", Config{Events: []string{"DELADDR"}}, addr(event.DelAddr, "eth0", event.Inet), true},
		{"event and name", Config{Events: []string{"NEWLINK"}, Include: []string{"lo"}}, link(event.NewLink, "eth0"), false},

		{"SYNC always", Config{Include: []string{"nothing"}, Events: []string{"NEWADDR"}, Families: []string{"inet"}}, sync, true},
		{"Begin always", Config{Include: []string{"nothing"}, Events: []string{"NEWADDR"}}, begin, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Allow(tt.ev); got != tt.want {
				t.Errorf("Allow(%v %q) with %+v = %v, want %v", tt.ev.Type, tt.ev.Link.Name+tt.ev.Addr.Ifname, tt.cfg, got, tt.want)
			}
		})
	}
}

// The shortcuts for literals, prefixes and suffixes agree with path.Match.
func TestMatchAgreesWithPath(t *testing.T) {
	globs := []string{"*", "eth*", "*.100", "eth0", "e*0", "[e]th*", "*th*", `eth\*`, "eth0.*", "?", "\xff*", "*\xff"}
	names := []string{"", "eth", "eth0", "eth0.100", "veth0", "a/b", "eth/0", "x/.100", "e", "\xff", "\xffa", "a\xff", "eth*", "lo"}
	for _, g := range globs {
		p, err := compile("include", []string{g})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			want, _ := path.Match(g, n)
			if got := p.match(n); got != want {
				t.Errorf("match(%q, %q) = %v, path.Match says %v", g, n, got, want)
			}
		}
	}
}

func TestNilAllows(t *testing.T) {
	var f *Filter
	for _, ev := range []*event.Event{link(event.NewLink, "eth0"), addr(event.DelAddr, "", event.Inet6), {Type: event.Sync}} {
		if !f.Allow(ev) {
			t.Errorf("nil Filter: Allow(%v) = false, want true", ev.Type)
		}
	}
	if !f.AllowName("x") {
		t.Error("nil Filter: AllowName = false, want true")
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string // in the error
	}{
		{Config{Include: []string{"eth*", "eth["}}, `include[1]: bad pattern "eth["`},
		{Config{Exclude: []string{"[a-"}}, `exclude[0]: bad pattern "[a-"`},
		{Config{Exclude: []string{`eth\`}}, `exclude[0]: bad pattern "eth\\"`},
		{Config{Include: []string{""}}, `include[0]: empty pattern`},
		{Config{Families: []string{"inet", "ipv6"}}, `families[1]: "ipv6" is not a family`},
		{Config{Events: []string{"SYNC"}}, `events[0]: "SYNC" is not an event type`},
		{Config{Events: []string{"newlink"}}, `events[0]: "newlink" is not an event type`},
		{Config{Events: []string{"BEGIN"}}, `events[0]: "BEGIN"`},
	}
	for _, tt := range tests {
		f, err := New(tt.cfg)
		if err == nil {
			t.Errorf("New(%+v) = %v, nil; want an error containing %q", tt.cfg, f, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) error = %q, want ErrInvalid containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	f, err := New(Config{Include: []string{"lo", "eth*", "veth[0-9]*"}, Exclude: []string{"eth9", "*.100"},
		Families: []string{"inet6"}, Events: []string{"NEWADDR", "NEWLINK"}})
	if err != nil {
		t.Fatal(err)
	}
	evs := []*event.Event{link(event.NewLink, "eth0"), link(event.NewLink, "veth3x"), addr(event.NewAddr, "eth0.100", event.Inet6)}
	if n := testing.AllocsPerRun(100, func() {
		for _, ev := range evs {
			f.Allow(ev)
		}
	}); n != 0 {
		t.Errorf("Allow allocates %v times per run, want 0", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	configs := []struct {
		name string
		cfg  Config
	}{
		{"empty", Config{}},
		{"literals", Config{Include: []string{"lo", "eth0", "eth1"}, Exclude: []string{"docker0"}}},
		{"prefixes+suffixes", Config{Include: []string{"eth*", "enp*"}, Exclude: []string{"veth*", "*.100"}}},
		{"globs", Config{Include: []string{"eth*", "en[ops]*", "wg?"}, Exclude: []string{"veth*", "*.100"}}},
		{"families+events", Config{Families: []string{"inet"}, Events: []string{"NEWADDR", "DELADDR"}}},
	}
	evs := []*event.Event{link(event.NewLink, "eth1"), addr(event.NewAddr, "enp3s0", event.Inet), link(event.DelLink, "veth1234")}
	for _, c := range configs {
		f, err := New(c.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				f.Allow(evs[i%len(evs)])
			}
		})
	}
}
