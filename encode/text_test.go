package encode

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

func TestText(t *testing.T) {
	tm := time.Date(2026, 11, 27, 10, 0, 1, 123456789, time.FixedZone("CET", 3600))
	eth0 := event.Link{Index: 2, Name: "eth0", State: event.OperUp, Flags: 0x11043, MTU: 1500,
		MAC: net.HardwareAddr{0x08, 0x00, 0x27, 0x41, 0xde, 0x23}, Parent: 2, Carrier: true}
	for _, tt := range []struct {
		name string
		text Text
		ev   event.Event
		want string
	}{
		{
			name: "link as in the article",
			ev:   event.Event{Type: event.NewLink, Link: eth0},
			want: "results for eth0(2)\n" +
				"  type: NEWLINK\n" +
				"  state: UP\n" +
				"  running: yes\n" +
				"  enabled: yes\n" +
				"  mtu: 1500\n" +
				"  mac: 08:00:27:41:de:23\n" +
				"\n",
		},
		{
			name: "veth in a bridge, changed",
			ev: event.Event{Type: event.NewLink, Changed: 1<<2 | 1<<4 | 1<<11,
				Link: event.Link{Index: 12, Name: "veth1", Kind: "veth", State: event.OperLowerLayerDown,
					Flags: 0x1003, MTU: 9000, MAC: net.HardwareAddr{2, 0x42, 0xac, 0x11, 0, 2},
					Master: 3, Parent: 11, Alias: "to rack 7"}},
			want: "results for veth1(12)\n" +
				"  type: NEWLINK\n" +
				"  state: LOWERLAYERDOWN\n" +
				"  running: no\n" +
				"  enabled: yes\n" +
				"  mtu: 9000\n" +
				"  mac: 02:42:ac:11:00:02\n" +
				"  kind: veth\n" +
				"  master: 3\n" +
				"  parent: 11\n" +
				"  alias: to rack 7\n" +
				"  changed: state, running, flags\n" +
				"\n",
		},
		{
			name: "dellink without MAC, unknown state, name to quote",
			ev: event.Event{Type: event.DelLink,
				Link: event.Link{Index: 7, Name: "evil\n  type: x", State: event.OperState(9), MTU: 1500}},
			want: "results for \"evil\\n  type: x\"(7)\n" +
				"  type: DELLINK\n" +
				"  state: 9\n" +
				"  running: no\n" +
				"  enabled: no\n" +
				"  mtu: 1500\n" +
				"\n",
		},
		{
			name: "ipv4 address as in the article",
			ev: event.Event{Type: event.NewAddr, Addr: event.Addr{Index: 2, Ifname: "eth0", Family: event.Inet,
				Address: netip.MustParseAddr("10.3.0.185"), PrefixLen: 24, Broadcast: netip.MustParseAddr("10.3.0.255"),
				Label: "eth0", Flags: 0x80, ValidLft: event.Forever, PreferredLft: event.Forever}},
			want: "results for eth0(2)\n" +
				"  type: NEWADDR\n" +
				"  addr: 10.3.0.185\n" +
				"  broadcast: 10.3.0.255\n" +
				"  mask length: 24\n" +
				"  family: inet\n" +
				"  scope: global\n" +
				"  flags: permanent\n" +
				"\n",
		},
		{
			name: "ipv4 without broadcast, peer, label, lifetimes, changed",
			ev: event.Event{Type: event.DelAddr, Changed: 1 << 7, Addr: event.Addr{Index: 9, Ifname: "tun0", Family: event.Inet,
				Address: netip.MustParseAddr("10.0.0.1"), Peer: netip.MustParseAddr("10.0.0.2"), PrefixLen: 32,
				Scope: 253, Label: "tun0:vpn", Flags: 0x81, ValidLft: 3600, PreferredLft: 0}},
			want: "results for tun0(9)\n" +
				"  type: DELADDR\n" +
				"  addr: 10.0.0.1\n" +
				"  broadcast: 0.0.0.0\n" +
				"  mask length: 32\n" +
				"  peer: 10.0.0.2\n" +
				"  family: inet\n" +
				"  scope: link\n" +
				"  label: tun0:vpn\n" +
				"  flags: secondary, permanent\n" +
				"  valid lifetime: 3600s\n" +
				"  preferred lifetime: 0s\n" +
				"  changed: preferred_lft\n" +
				"\n",
		},
		{
			name: "ipv6, no broadcast line, unknown interface, zone left out",
			ev: event.Event{Type: event.NewAddr, Addr: event.Addr{Index: 5, Family: event.Inet6,
				Address: netip.MustParseAddr("fe80::1%5"), PrefixLen: 64, Scope: 253, Flags: 0x01 | 0x1000,
				ValidLft: event.Forever, PreferredLft: event.Forever}},
			want: "results for ?(5)\n" +
				"  type: NEWADDR\n" +
				"  addr: fe80::1\n" +
				"  mask length: 64\n" +
				"  family: inet6\n" +
				"  scope: link\n" +
				"  flags: temporary, 0x1000\n" +
				"\n",
		},
		{
			name: "sync",
			ev:   event.Event{Type: event.Sync, Seq: 14, Sync: event.SyncInfo{Reason: event.ReasonRequest, Links: 3, Addrs: 4, FirstSeq: 8}},
			want: "sync: request (3 links, 4 addrs, seq 8..14)\n\n",
		},
		{
			name: "narrowed sync",
			ev: event.Event{Type: event.Sync, Seq: 10,
				Sync: event.SyncInfo{Reason: event.ReasonRequest, Interface: "eth0.100", Links: 1, Addrs: 0, FirstSeq: 9}},
			want: "sync: request for eth0.100 (1 link, 0 addrs, seq 9..10)\n\n",
		},
		{
			name: "time and host",
			text: Text{Time: true, Host: true},
			ev:   event.Event{Type: event.Sync, Time: tm, Host: "web-01", Seq: 2, Sync: event.SyncInfo{Reason: event.ReasonStartup, Links: 1, Addrs: 1, FirstSeq: 1}},
			want: "[2026-11-27T09:00:01.123Z web-01] sync: startup (1 link, 1 addr, seq 1..2)\n\n",
		},
		{
			name: "time",
			text: Text{Time: true},
			ev:   event.Event{Type: event.DelLink, Time: tm, Host: "web-01", Link: eth0},
			want: "[2026-11-27T09:00:01.123Z] results for eth0(2)\n" +
				"  type: DELLINK\n" +
				"  state: UP\n" +
				"  running: yes\n" +
				"  enabled: yes\n" +
				"  mtu: 1500\n" +
				"  mac: 08:00:27:41:de:23\n" +
				"\n",
		},
		{
			name: "host to quote",
			text: Text{Host: true},
			ev:   event.Event{Type: event.Sync, Time: tm, Host: "web\x1b[2J", Seq: 2, Sync: event.SyncInfo{Reason: event.ReasonResync, FirstSeq: 2}},
			want: "[\"web\\x1b[2J\"] sync: resync (0 links, 0 addrs, seq 2..2)\n\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("before\n")
			got, err := tt.text.Append(prefix, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "before\n"+tt.want {
				t.Errorf("Append:\ngot\n%s\nwant\n%s", got, "before\n"+tt.want)
			}
		})
	}
}

func TestTextInvalid(t *testing.T) {
	for _, typ := range []event.Type{0, event.Begin, 99} {
		dst := []byte("x")
		got, err := Text{}.Append(dst, &event.Event{Type: typ})
		if !errors.Is(err, ErrInvalidEvent) || string(got) != "x" {
			t.Errorf("Append(%v) = %q, %v; want dst unchanged and ErrInvalidEvent", typ, got, err)
		}
	}
	if ct := (Text{}).ContentType(); ct != "text/plain; charset=utf-8" {
		t.Errorf("ContentType() = %q", ct)
	}
}

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{
		"":            true,
		"eth0.100":    true,
		"uplink to 7": true,
		"über":        true,
		"\uFFFD":      true,
		"a\tb":        false,
		"a\nb":        false,
		"\x1b[2J":     false,
		"bad\xff":     false,
		"x\u2028":     false,
		"\u200b":      false,
	} {
		if got := printable(s); got != want {
			t.Errorf("printable(%q) = %t, want %t", s, got, want)
		}
	}
}
