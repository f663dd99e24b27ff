package encode

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/schema"
)

// The header every test event carries.
const (
	testHost = "node-1.example.net"
	testBoot = "6f1c1b0e-3f2a-4d5e-9c1b-2a3b4c5d6e7f"
)

var cet = time.FixedZone("CET", 3600)

// raceEnabled is set when the tests run under the race detector.
var raceEnabled bool

// stamp sets the fields the sink stamps, as it would.
func stamp(ev event.Event) event.Event {
	ev.Host = testHost
	ev.Boot = testBoot
	return ev
}

// header is the expected common header; fields are added by each case.
func header(typ string, seq uint64, tm string, fields map[string]any) map[string]any {
	m := map[string]any{
		"v":    1,
		"type": typ,
		"host": testHost,
		"boot": testBoot,
		"seq":  seq,
		"time": tm,
	}
	maps.Copy(m, fields)
	return m
}

// vethLink is a realistic NEWLINK: one end of a veth pair in a bridge.
func vethLink() event.Event {
	return stamp(event.Event{
		Type: event.NewLink,
		Time: time.Date(2025, 11, 27, 9, 11, 0, 123456789, cet),
		Seq:  42,
		Link: event.Link{
			Index:   12,
			Name:    "veth1a2b3c4",
			Kind:    "veth",
			State:   event.OperUp,
			Flags:   0x11043, // up broadcast running multicast lower_up
			MTU:     1500,
			MAC:     net.HardwareAddr{0x02, 0x42, 0xAC, 0x11, 0x00, 0x02},
			Master:  3,
			Parent:  11,
			Carrier: true,
		},
	})
}

// ipv6Addr is a realistic NEWADDR: a SLAAC temporary address.
func ipv6Addr() event.Event {
	return stamp(event.Event{
		Type: event.NewAddr,
		Time: time.Date(2025, 11, 27, 9, 11, 0, 987654321, cet),
		Seq:  43,
		Addr: event.Addr{
			Index:        2,
			Ifname:       "eth0",
			Family:       event.Inet6,
			Address:      netip.MustParseAddr("2001:db8::a1b2:c3d4:e5f6:789a"),
			PrefixLen:    64,
			Flags:        0x01 | 0x200 | 0x1000, // temporary noprefixroute, and a bit with no name
			ValidLft:     86400,
			PreferredLft: 14400,
		},
	})
}

type encodeTest struct {
	name string
	ev   event.Event
	want map[string]any
}

var encodeTests = []encodeTest{
	{
		name: "veth",
		ev:   vethLink(),
		want: header("NEWLINK", 42, "2025-11-27T08:11:00.123456789Z", map[string]any{
			"dump": false,
			"link": map[string]any{
				"index":   12,
				"name":    "veth1a2b3c4",
				"kind":    "veth",
				"state":   "up",
				"enabled": true,
				"running": true,
				"mtu":     1500,
				"mac":     "02:42:ac:11:00:02",
				"master":  3,
				"parent":  11,
				"carrier": true,
				"flags":   []any{"up", "broadcast", "running", "multicast", "lower_up"},
			},
		}),
	},
	{
		name: "loopback dump, parent is index, zero MAC",
		ev: stamp(event.Event{
			Type: event.NewLink,
			Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Dump: true,
			Seq:  1,
			Link: event.Link{
				Index:   1,
				Name:    "lo",
				State:   event.OperUnknown,
				Flags:   0x10049,
				MTU:     65536,
				MAC:     make(net.HardwareAddr, 6),
				Parent:  1,
				Carrier: true,
			},
		}),
		want: header("NEWLINK", 1, "2025-01-02T03:04:05.000000000Z", map[string]any{
			"dump": true,
			"link": map[string]any{
				"index":   1,
				"name":    "lo",
				"kind":    "",
				"state":   "unknown",
				"enabled": true,
				"running": true,
				"mtu":     65536,
				"mac":     "00:00:00:00:00:00",
				"carrier": true,
				"flags":   []any{"up", "loopback", "running", "lower_up"},
			},
		}),
	},
	{
		name: "dellink without MAC, with alias, no flags",
		ev: stamp(event.Event{
			Type: event.DelLink,
			Time: time.Date(2025, 11, 27, 23, 59, 59, 999999999, time.UTC),
			Seq:  7,
			Link: event.Link{
				Index: 7,
				Name:  "dummy0",
				Kind:  "dummy",
				State: event.OperDown,
				MTU:   1500,
				Alias: "uplink to rack 7",
			},
		}),
		want: header("DELLINK", 7, "2025-11-27T23:59:59.999999999Z", map[string]any{
			"dump": false,
			"link": map[string]any{
				"index":   7,
				"name":    "dummy0",
				"kind":    "dummy",
				"state":   "down",
				"enabled": false,
				"running": false,
				"mtu":     1500,
				"alias":   "uplink to rack 7",
				"carrier": false,
				"flags":   []any{},
			},
		}),
	},
	{
		name: "escaped name, unknown flag bits and state",
		ev: stamp(event.Event{
			Type: event.NewLink,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 1, cet),
			Seq:  8,
			Link: event.Link{
				Index:  8,
				Name:   "e.\"\\\x01\n\t\x7f<>&",
				Kind:   "vlan",
				State:  event.OperState(9),
				Flags:  0x1 | 0x80000 | 0x80000000,
				MTU:    9000,
				MAC:    net.HardwareAddr{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01},
				Master: 5,
				Parent: 2,
			},
		}),
		want: header("NEWLINK", 8, "2025-11-27T08:00:00.000000001Z", map[string]any{
			"dump": false,
			"link": map[string]any{
				"index":   8,
				"name":    "e.\"\\\x01\n\t\x7f<>&",
				"kind":    "vlan",
				"state":   "9",
				"enabled": true,
				"running": false,
				"mtu":     9000,
				"mac":     "de:ad:be:ef:00:01",
				"master":  5,
				"parent":  2,
				"carrier": false,
				"flags":   []any{"up", "0x80000", "0x80000000"},
			},
		}),
	},
	{
		name: "invalid UTF-8 name, line separators in alias",
		ev: stamp(event.Event{
			Type: event.NewLink,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Seq:  9,
			Link: event.Link{
				Index: 9,
				Name:  "bad\xff\xfe\xc3ü",
				State: event.OperLowerLayerDown,
				Flags: 0x1003,
				MTU:   1500,
				Alias: "über\u2028x\u2029",
			},
		}),
		want: header("NEWLINK", 9, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": false,
			"link": map[string]any{
				"index":   9,
				"name":    "bad\uFFFD\uFFFD\uFFFDü",
				"kind":    "",
				"state":   "lowerlayerdown",
				"enabled": true,
				"running": false,
				"mtu":     1500,
				"alias":   "über\u2028x\u2029",
				"carrier": false,
				"flags":   []any{"up", "broadcast", "multicast"},
			},
		}),
	},
	{
		name: "infiniband, long MAC",
		ev: stamp(event.Event{
			Type: event.NewLink,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Seq:  10,
			Link: event.Link{
				Index: 4,
				Name:  "ib0",
				State: event.OperUp,
				Flags: 0x11043,
				MTU:   2044,
				MAC: net.HardwareAddr{
					0x80, 0x00, 0x02, 0x08, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00,
					0x00, 0x00, 0x00, 0x02, 0xc9, 0x03, 0x00, 0xa1, 0xb2, 0xc3,
				},
				Carrier: true,
			},
		}),
		want: header("NEWLINK", 10, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": false,
			"link": map[string]any{
				"index":   4,
				"name":    "ib0",
				"kind":    "",
				"state":   "up",
				"enabled": true,
				"running": true,
				"mtu":     2044,
				"mac":     "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:a1:b2:c3",
				"carrier": true,
				"flags":   []any{"up", "broadcast", "running", "multicast", "lower_up"},
			},
		}),
	},
	{
		name: "ipv6 temporary",
		ev:   ipv6Addr(),
		want: header("NEWADDR", 43, "2025-11-27T08:11:00.987654321Z", map[string]any{
			"dump": false,
			"addr": map[string]any{
				"index":         2,
				"id":            "2001:db8::a1b2:c3d4:e5f6:789a",
				"ifname":        "eth0",
				"family":        "inet6",
				"address":       "2001:db8::a1b2:c3d4:e5f6:789a",
				"prefix_len":    64,
				"scope":         "global",
				"flags":         []any{"temporary", "noprefixroute", "0x1000"},
				"valid_lft":     86400,
				"preferred_lft": 14400,
			},
		}),
	},
	{
		name: "ipv4 broadcast, label, secondary, forever",
		ev: stamp(event.Event{
			Type: event.NewAddr,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Dump: true,
			Seq:  11,
			Addr: event.Addr{
				Index:        2,
				Ifname:       "eth0",
				Family:       event.Inet,
				Address:      netip.MustParseAddr("192.0.2.10"),
				PrefixLen:    24,
				Broadcast:    netip.MustParseAddr("192.0.2.255"),
				Label:        "eth0:1",
				Flags:        0x81,
				ValidLft:     event.Forever,
				PreferredLft: event.Forever,
			},
		}),
		want: header("NEWADDR", 11, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": true,
			"addr": map[string]any{
				"index":      2,
				"id":         "192.0.2.10/24",
				"ifname":     "eth0",
				"family":     "inet",
				"address":    "192.0.2.10",
				"prefix_len": 24,
				"broadcast":  "192.0.2.255",
				"scope":      "global",
				"label":      "eth0:1",
				"flags":      []any{"secondary", "permanent"},
			},
		}),
	},
	{
		name: "ipv4 peer, numeric scope, zero preferred lifetime",
		ev: stamp(event.Event{
			Type: event.DelAddr,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Seq:  12,
			Addr: event.Addr{
				Index:        9,
				Ifname:       "tun0",
				Family:       event.Inet,
				Address:      netip.MustParseAddr("10.0.0.1"),
				Peer:         netip.MustParseAddr("10.0.0.2"),
				PrefixLen:    32,
				Scope:        17,
				Flags:        0x80,
				ValidLft:     3600,
				PreferredLft: 0,
			},
		}),
		want: header("DELADDR", 12, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": false,
			"addr": map[string]any{
				"index":         9,
				"id":            "10.0.0.1 peer 10.0.0.2/32",
				"ifname":        "tun0",
				"family":        "inet",
				"address":       "10.0.0.1",
				"peer":          "10.0.0.2",
				"prefix_len":    32,
				"scope":         "17",
				"flags":         []any{"permanent"},
				"valid_lft":     3600,
				"preferred_lft": 0,
			},
		}),
	},
	{
		name: "ipv6 link-local with zone, secondary bit named temporary",
		ev: stamp(event.Event{
			Type: event.NewAddr,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Dump: true,
			Seq:  13,
			Addr: event.Addr{
				Index:        3,
				Family:       event.Inet6,
				Address:      netip.MustParseAddr("fe80::1%br0"),
				Peer:         netip.MustParseAddr("fe80::2"),
				PrefixLen:    64,
				Scope:        253,
				Flags:        0x01 | 0x80,
				ValidLft:     event.Forever,
				PreferredLft: event.Forever,
			},
		}),
		want: header("NEWADDR", 13, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": true,
			"addr": map[string]any{
				"index":      3,
				"id":         "fe80::1",
				"ifname":     "",
				"family":     "inet6",
				"address":    "fe80::1",
				"peer":       "fe80::2",
				"prefix_len": 64,
				"scope":      "link",
				"flags":      []any{"temporary", "permanent"},
			},
		}),
	},
	{
		name: "ipv4 loopback, host scope, no flags",
		ev: stamp(event.Event{
			Type: event.NewAddr,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Dump: true,
			Seq:  14,
			Addr: event.Addr{
				Index:        1,
				Ifname:       "lo",
				Family:       event.Inet,
				Address:      netip.MustParseAddr("127.0.0.1"),
				PrefixLen:    8,
				Scope:        254,
				Label:        "lo",
				ValidLft:     event.Forever,
				PreferredLft: event.Forever,
			},
		}),
		want: header("NEWADDR", 14, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"dump": true,
			"addr": map[string]any{
				"index":      1,
				"id":         "127.0.0.1/8",
				"ifname":     "lo",
				"family":     "inet",
				"address":    "127.0.0.1",
				"prefix_len": 8,
				"scope":      "host",
				"label":      "lo",
				"flags":      []any{},
			},
		}),
	},
	{
		name: "sync at startup ignores dump and link",
		ev: stamp(event.Event{
			Type: event.Sync,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Dump: true,
			Seq:  109,
			Link: event.Link{Index: 1, Name: "lo"},
			Sync: event.SyncInfo{Reason: event.ReasonStartup, Links: 3, Addrs: 5, FirstSeq: 100},
		}),
		want: header("SYNC", 109, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"reason":    "startup",
			"links":     3,
			"addrs":     5,
			"first_seq": 100,
		}),
	},
	{
		name: "sync after reconnect, largest seq",
		ev: stamp(event.Event{
			Type: event.Sync,
			Time: time.Date(2025, 11, 27, 9, 0, 0, 0, cet),
			Seq:  math.MaxUint64,
			Sync: event.SyncInfo{Reason: "reconnect", FirstSeq: math.MaxUint64},
		}),
		want: header("SYNC", math.MaxUint64, "2025-11-27T08:00:00.000000000Z", map[string]any{
			"reason":    "reconnect",
			"links":     0,
			"addrs":     0,
			"first_seq": uint64(math.MaxUint64),
		}),
	},
	{
		name: "changed fields",
		ev: func() event.Event {
			ev := vethLink()
			ev.Changed = 1<<5 | 1<<11 // mtu, flags
			return ev
		}(),
		want: header("NEWLINK", 42, "2025-11-27T08:11:00.123456789Z", map[string]any{
			"dump":    false,
			"changed": []any{"mtu", "flags"},
			"link": map[string]any{
				"index": 12, "name": "veth1a2b3c4", "kind": "veth", "state": "up",
				"enabled": true, "running": true, "mtu": 1500, "mac": "02:42:ac:11:00:02",
				"master": 3, "parent": 11, "carrier": true,
				"flags": []any{"up", "broadcast", "running", "multicast", "lower_up"},
			},
		}),
	},
	{
		name: "changed address lifetimes",
		ev: func() event.Event {
			ev := ipv6Addr()
			ev.Changed = 1<<6 | 1<<7
			return ev
		}(),
		want: header("NEWADDR", 43, "2025-11-27T08:11:00.987654321Z", map[string]any{
			"dump":    false,
			"changed": []any{"valid_lft", "preferred_lft"},
			"addr": map[string]any{
				"index": 2, "id": "2001:db8::a1b2:c3d4:e5f6:789a", "ifname": "eth0", "family": "inet6", "address": "2001:db8::a1b2:c3d4:e5f6:789a",
				"prefix_len": 64, "scope": "global", "flags": []any{"temporary", "noprefixroute", "0x1000"},
				"valid_lft": 86400, "preferred_lft": 14400,
			},
		}),
	},
	{
		name: "narrowed sync",
		ev: stamp(event.Event{
			Type: event.Sync,
			Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Seq:  9,
			Sync: event.SyncInfo{Reason: event.ReasonRequest, Interface: "eth0.100", Links: 1, Addrs: 2, FirstSeq: 6},
		}),
		want: header("SYNC", 9, "2025-01-02T03:04:05.000000000Z", map[string]any{
			"reason": "request", "interface": "eth0.100", "links": 1, "addrs": 2, "first_seq": 6,
		}),
	},
}

// keyOrder is the order of keys in each kind of JSON object.
var keyOrder = map[string][]string{
	"":     {"v", "type", "host", "boot", "seq", "time", "dump", "changed", "link", "addr", "reason", "interface", "links", "addrs", "first_seq"},
	"link": {"index", "name", "kind", "state", "enabled", "running", "mtu", "mac", "master", "parent", "alias", "carrier", "flags"},
	"addr": {"index", "id", "ifname", "family", "address", "peer", "prefix_len", "broadcast", "scope", "label", "flags", "valid_lft", "preferred_lft"},
}

func TestJSON(t *testing.T) {
	sch := compileSchema(t)
	for _, tt := range encodeTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSON{}.Append(nil, &tt.ev)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			if diff := cmp.Diff(norm(t, tt.want), norm(t, decodeJSON(t, got))); diff != "" {
				t.Errorf("decoded JSON differs (-want +got):\n%s\nJSON: %s", diff, got)
			}
			checkKeyOrder(t, jsonKeys(t, got))

			// The same document from encoding/json, as a check on the
			// escaping and the order.
			want, err := json.Marshal(toMirror(&tt.ev, false))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON differs from encoding/json:\ngot  %s\nwant %s", got, want)
			}

			if err := validate(sch, got); err != nil {
				t.Errorf("schema rejects %s: %v", got, err)
			}
		})
	}
}

func TestCBOR(t *testing.T) {
	sch := compileSchema(t)
	for _, tt := range encodeTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CBOR{}.Append(nil, &tt.ev)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			// The strict decoder rejects duplicate keys, invalid UTF-8,
			// indefinite lengths and tags.
			var doc any
			if err := strictCBOR.Unmarshal(got, &doc); err != nil {
				t.Fatalf("Unmarshal: %v\nCBOR: %x", err, got)
			}
			if diff := cmp.Diff(norm(t, tt.want), norm(t, doc)); diff != "" {
				t.Errorf("decoded CBOR differs (-want +got):\n%s", diff)
			}
			if err := sch.Validate(doc); err != nil {
				t.Errorf("schema rejects the decoded CBOR: %v", err)
			}

			// And the same values, with the keys in the same order, as
			// the JSON encoding.
			j, err := JSON{}.Append(nil, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(norm(t, decodeJSON(t, j)), norm(t, doc)); diff != "" {
				t.Errorf("CBOR and JSON differ (-json +cbor):\n%s", diff)
			}
			keys := cborKeys(t, got)
			checkKeyOrder(t, keys)
			if diff := cmp.Diff(jsonKeys(t, j), keys); diff != "" {
				t.Errorf("CBOR and JSON keys differ (-json +cbor):\n%s", diff)
			}
		})
	}
}

// TestAppend checks that both encoders append to dst, and that JSON
// allocates nothing when dst has room and CBOR, once warm, only the strings
// it formats: the time, and the MAC or the address's id (which holds its
// address and peer).
func TestAppend(t *testing.T) {
	for _, tt := range []struct {
		enc       Encoder
		maxAllocs float64
	}{
		{JSON{}, 0},
		{CBOR{}, 2},
	} {
		t.Run(tt.enc.ContentType(), func(t *testing.T) {
			for _, et := range encodeTests {
				alone, err := tt.enc.Append(nil, &et.ev)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tt.enc.Append([]byte("prefix"), &et.ev)
				if err != nil {
					t.Fatal(err)
				}
				if want := append([]byte("prefix"), alone...); !bytes.Equal(got, want) {
					t.Errorf("%s: Append after a prefix:\ngot  %q\nwant %q", et.name, got, want)
				}
			}
			if raceEnabled && tt.maxAllocs > 0 {
				return // sync.Pool drops items at random under the race detector
			}
			peer := ipv6Addr()
			peer.Addr.Family, peer.Addr.PrefixLen = event.Inet, 32
			peer.Addr.Address, peer.Addr.Peer = netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
			long := ipv6Addr()
			long.Addr.Address = netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678")
			for _, ev := range []event.Event{vethLink(), ipv6Addr(), peer, long} {
				buf := make([]byte, 0, 1024)
				allocs := testing.AllocsPerRun(100, func() {
					buf, _ = tt.enc.Append(buf[:0], &ev)
				})
				if allocs > tt.maxAllocs {
					t.Errorf("%v: %v allocations per Append, want at most %v", ev.Type, allocs, tt.maxAllocs)
				}
			}
		})
	}
}

func TestAppendInvalid(t *testing.T) {
	addr := func(f func(a *event.Addr)) event.Event {
		ev := ipv6Addr()
		f(&ev.Addr)
		return ev
	}
	tests := []struct {
		name string
		ev   event.Event
		want string // in the error
	}{
		{"zero type", event.Event{}, "unknown type Type(0)"},
		{"unknown type", event.Event{Type: 99}, "unknown type Type(99)"},
		{"unknown family", addr(func(a *event.Addr) { a.Family = 7 }), "family(7)"},
		{"no address", addr(func(a *event.Addr) { a.Address = netip.Addr{} }), "no address"},
		{"ipv4 in inet6", addr(func(a *event.Addr) { a.Address = netip.MustParseAddr("192.0.2.1") }), "is not inet6"},
		{"ipv6 in inet", addr(func(a *event.Addr) { a.Family = event.Inet; a.PrefixLen = 24 }), "is not inet"},
		{"ipv4 peer in inet6", addr(func(a *event.Addr) { a.Peer = netip.MustParseAddr("192.0.2.1") }), "peer"},
		{"broadcast in inet6", addr(func(a *event.Addr) { a.Broadcast = netip.MustParseAddr("ff02::1") }), "broadcast"},
		{"prefix too long", addr(func(a *event.Addr) { a.PrefixLen = 129 }), "prefix length 129"},
		{"year 10000", func() event.Event {
			ev := vethLink()
			ev.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
			return ev
		}(), "year"},
	}
	for _, enc := range []Encoder{JSON{}, CBOR{}} {
		for _, tt := range tests {
			t.Run(enc.ContentType()+"/"+tt.name, func(t *testing.T) {
				dst := []byte("prefix")
				got, err := enc.Append(dst, &tt.ev)
				if !errors.Is(err, ErrInvalidEvent) {
					t.Fatalf("Append error = %v, want one wrapping ErrInvalidEvent", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Append error = %q, want it to contain %q", err, tt.want)
				}
				if string(got) != "prefix" {
					t.Errorf("Append returned %q, want dst unchanged", got)
				}
			})
		}
	}
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name, ct string
	}{
		{"json", "application/json"},
		{"cbor", "application/cbor"},
	} {
		enc, err := New(tt.name)
		if err != nil {
			t.Fatalf("New(%q): %v", tt.name, err)
		}
		if got := enc.ContentType(); got != tt.ct {
			t.Errorf("New(%q).ContentType() = %q, want %q", tt.name, got, tt.ct)
		}
	}
	for _, name := range []string{"xml", "", "JSON"} {
		enc, err := New(name)
		if err == nil {
			t.Errorf("New(%q) = %T, want an error", name, enc)
			continue
		}
		if want := strconv.Quote(name); !strings.Contains(err.Error(), want) {
			t.Errorf("New(%q) error = %q, want it to name %s", name, err, want)
		}
	}
}

// TestSchemaRejects checks that the schema is strict, starting from valid
// documents and breaking them one way at a time.
func TestSchemaRejects(t *testing.T) {
	sch := compileSchema(t)
	link := encodeTests[0].ev
	addr6 := ipv6Addr()
	addr4 := encodeTests[7].ev
	sync := encodeTests[11].ev
	tests := []struct {
		name   string
		ev     *event.Event
		break_ func(m map[string]any)
	}{
		{"NEWLINK without link", &link, func(m map[string]any) { delete(m, "link") }},
		{"NEWLINK without dump", &link, func(m map[string]any) { delete(m, "dump") }},
		{"NEWLINK with addr", &link, func(m map[string]any) { m["addr"] = sub(m, "link") }},
		{"extra key", &link, func(m map[string]any) { m["extra"] = 1 }},
		{"extra key in link", &link, func(m map[string]any) { sub(m, "link")["extra"] = 1 }},
		{"bad type", &link, func(m map[string]any) { m["type"] = "NEWROUTE" }},
		{"version 2", &link, func(m map[string]any) { m["v"] = json.Number("2") }},
		{"negative seq", &link, func(m map[string]any) { m["seq"] = json.Number("-1") }},
		{"time without fraction", &link, func(m map[string]any) { m["time"] = "2025-11-27T08:11:00Z" }},
		{"time not UTC", &link, func(m map[string]any) { m["time"] = "2025-11-27T09:11:00.123456789+01:00" }},
		{"time not a date", &link, func(m map[string]any) { m["time"] = "2025-13-27T08:11:00.123456789Z" }},
		{"state in upper case", &link, func(m map[string]any) { sub(m, "link")["state"] = "UP" }},
		{"link without flags", &link, func(m map[string]any) { delete(sub(m, "link"), "flags") }},
		{"unknown link flag", &link, func(m map[string]any) { sub(m, "link")["flags"] = []any{"up", "bogus"} }},
		{"upper-case hex flag", &link, func(m map[string]any) { sub(m, "link")["flags"] = []any{"0x8000A"} }},
		{"upper-case MAC", &link, func(m map[string]any) { sub(m, "link")["mac"] = "02:42:AC:11:00:02" }},
		{"master 0", &link, func(m map[string]any) { sub(m, "link")["master"] = json.Number("0") }},
		{"NEWADDR without addr", &addr6, func(m map[string]any) { delete(m, "addr") }},
		{"NEWADDR with link", &addr6, func(m map[string]any) { m["link"] = sub(m, "addr") }},
		{"extra key in addr", &addr6, func(m map[string]any) { sub(m, "addr")["extra"] = 1 }},
		{"bad family", &addr6, func(m map[string]any) { sub(m, "addr")["family"] = "inet4" }},
		{"ipv4 in inet6", &addr6, func(m map[string]any) { sub(m, "addr")["address"] = "192.0.2.1" }},
		{"zone in inet6", &addr6, func(m map[string]any) { sub(m, "addr")["address"] = "fe80::1%eth0" }},
		{"broadcast in inet6", &addr6, func(m map[string]any) { sub(m, "addr")["broadcast"] = "192.0.2.255" }},
		{"unknown addr flag", &addr6, func(m map[string]any) { sub(m, "addr")["flags"] = []any{"secondry"} }},
		{"secondary in inet6", &addr6, func(m map[string]any) { sub(m, "addr")["flags"] = []any{"secondary"} }},
		{"temporary in inet", &addr4, func(m map[string]any) { sub(m, "addr")["flags"] = []any{"temporary"} }},
		{"forever lifetime", &addr6, func(m map[string]any) { sub(m, "addr")["valid_lft"] = json.Number("4294967295") }},
		{"ipv6 in inet", &addr4, func(m map[string]any) { sub(m, "addr")["address"] = "2001:db8::1" }},
		{"prefix 33 in inet", &addr4, func(m map[string]any) { sub(m, "addr")["prefix_len"] = json.Number("33") }},
		{"bad broadcast", &addr4, func(m map[string]any) { sub(m, "addr")["broadcast"] = "192.0.2.256" }},
		{"bad scope", &addr4, func(m map[string]any) { sub(m, "addr")["scope"] = "universe" }},
		{"SYNC without first_seq", &sync, func(m map[string]any) { delete(m, "first_seq") }},
		{"SYNC with dump", &sync, func(m map[string]any) { m["dump"] = true }},
		{"SYNC with link", &sync, func(m map[string]any) { m["link"] = map[string]any{} }},
		{"bad reason", &sync, func(m map[string]any) { m["reason"] = "boredom" }},
		{"negative links", &sync, func(m map[string]any) { m["links"] = json.Number("-1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := JSON{}.Append(nil, tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Fatalf("schema rejects the unbroken document: %v", err)
			}
			tt.break_(doc.(map[string]any))
			if err := sch.Validate(doc); err == nil {
				t.Errorf("schema accepts %v", doc)
			}
		})
	}

	// New reasons are already in the schema.
	for _, reason := range []string{"request", "resync", "reconnect"} {
		ev := sync
		ev.Sync.Reason = event.Reason(reason)
		b, err := JSON{}.Append(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(sch, b); err != nil {
			t.Errorf("schema rejects reason %q: %v", reason, err)
		}
	}
}

// TestFlagTables checks what the flag names by bit number rely on: the
// event package's tables are in bit order and name one bit each.
func TestFlagTables(t *testing.T) {
	for name, table := range map[string][]event.FlagName{"LinkFlags": event.LinkFlags, "AddrFlags": event.AddrFlags} {
		for i, fl := range table {
			if fl.Bit&(fl.Bit-1) != 0 || fl.Bit == 0 {
				t.Errorf("event.%s[%d] = %#x, want a single bit", name, i, fl.Bit)
			}
			if i > 0 && fl.Bit <= table[i-1].Bit {
				t.Errorf("event.%s[%d] = %#x, not after %#x", name, i, fl.Bit, table[i-1].Bit)
			}
		}
	}
}

// validate checks a JSON document against the schema.
func validate(sch *jsonschema.Schema, doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func sub(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.EventV1))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schema.ID, doc); err != nil {
		return nil, err
	}
	return c.Compile(schema.ID)
})

// compileSchema compiles schema.EventV1, which checks it against the
// draft 2020-12 meta-schema, with format assertions on.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := compiled()
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, b)
	}
	return m
}

// norm makes decoded documents comparable: every integer, however it was
// decoded or written in a test, becomes an int64 or, if it is not
// negative, a uint64.
func norm(t *testing.T, v any) any {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = norm(t, x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = norm(t, x)
		}
		return s
	case json.Number:
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		i, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			t.Fatalf("number %s is not an integer", v)
		}
		return norm(t, i)
	case int:
		return norm(t, int64(v))
	case int64:
		if v >= 0 {
			return uint64(v)
		}
		return v
	case string, bool, uint64, nil:
		return v
	}
	t.Fatalf("unexpected %T %v in a document", v, v)
	return nil
}

// strictCBOR decodes messages as a careful consumer would: it rejects
// duplicate keys, invalid UTF-8, keys that are not text, indefinite
// lengths and tags.
var strictCBOR = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		IntDec:           cbor.IntDecConvertNone,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		UTF8:             cbor.UTF8RejectInvalid,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MapKeyByteString: cbor.MapKeyByteStringForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// jsonKeys returns the keys of each object in a JSON message in the order
// they come, by the kinds of keyOrder.
func jsonKeys(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	var walk func(kind string, obj []byte)
	walk = func(kind string, obj []byte) {
		d := json.NewDecoder(bytes.NewReader(obj))
		if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("%q object does not start with {: %v %v", kind, tok, err)
		}
		for d.More() {
			tok, err := d.Token()
			if err != nil {
				t.Fatal(err)
			}
			k := tok.(string)
			keys[kind] = append(keys[kind], k)
			var value json.RawMessage
			if err := d.Decode(&value); err != nil {
				t.Fatal(err)
			}
			if kind == "" && (k == "link" || k == "addr") {
				walk(k, value)
			}
		}
	}
	walk("", b)
	return keys
}

// cborKeys does for a CBOR message what jsonKeys does for JSON.
func cborKeys(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	var walk func(kind string, item []byte)
	walk = func(kind string, item []byte) {
		// A map of fewer than 24 pairs, as all of ours are, has a
		// one-byte head: major type 5 and the count (RFC 8949, section 3).
		if len(item) == 0 || item[0]>>5 != 5 || item[0]&0x1f >= 24 {
			t.Fatalf("%q object is not a map of fewer than 24 pairs: %x", kind, item)
		}
		rest := item[1:]
		for range item[0] & 0x1f {
			var k string
			var value cbor.RawMessage
			var err error
			if rest, err = strictCBOR.UnmarshalFirst(rest, &k); err != nil {
				t.Fatalf("%q object: key: %v", kind, err)
			}
			if rest, err = strictCBOR.UnmarshalFirst(rest, &value); err != nil {
				t.Fatalf("%q object: value of %q: %v", kind, k, err)
			}
			keys[kind] = append(keys[kind], k)
			if kind == "" && (k == "link" || k == "addr") {
				walk(k, value)
			}
		}
		if len(rest) != 0 {
			t.Fatalf("%q object: %d bytes after its last pair", kind, len(rest))
		}
	}
	walk("", b)
	return keys
}

// checkKeyOrder checks that the keys of each object come in the order of
// keyOrder.
func checkKeyOrder(t *testing.T, keys map[string][]string) {
	t.Helper()
	for kind, ks := range keys {
		order := keyOrder[kind]
		pos := -1
		for _, k := range ks {
			i := slices.Index(order, k)
			if i <= pos {
				t.Errorf("%q object: keys %q not in the order %q", kind, ks, order)
				break
			}
			pos = i
		}
	}
}
