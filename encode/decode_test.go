package encode

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nlbridge/nlbridge/event"
)

// decodeEvents holds an event of every kind, with every field that the
// wire carries set somewhere.
func decodeEvents() map[string]event.Event {
	hdr := func(ev event.Event, seq uint64) event.Event {
		ev.Host, ev.Boot, ev.Seq = "web-01", "5d64e52ef04fe2a7", seq
		ev.Time = time.Date(2026, 11, 27, 9, 0, 1, 123456789, time.FixedZone("CET", 3600))
		return ev
	}
	return map[string]event.Event{
		"link, all fields": hdr(event.Event{
			Type:    event.NewLink,
			Changed: 1<<2 | 1<<4 | 1<<11 | 1<<20, // state, running, flags and an unnamed bit
			Link: event.Link{
				Index: 12, Name: "veth1a2b3c4", Kind: "veth", State: event.OperUp,
				Flags: 0x11043 | 0x80000, MTU: 1500,
				MAC:    net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02},
				Master: 3, Parent: 11, Alias: "uplink to rack 7", Carrier: true,
			},
		}, 42),
		"link dump, loopback, parent is itself": hdr(event.Event{
			Type: event.NewLink, Dump: true,
			Link: event.Link{Index: 1, Name: "lo", State: event.OperUnknown, Flags: 0x10049,
				MTU: 65536, MAC: make(net.HardwareAddr, 6), Parent: 1, Carrier: true},
		}, 1),
		"dellink, no MAC, no flags, numeric state, odd name": hdr(event.Event{
			Type: event.DelLink,
			Link: event.Link{Index: 7, Name: "bad\xff\n\u2028", Kind: "dummy", State: event.OperState(9), MTU: 9000},
		}, 7),
		"ipv4 with peer, broadcast, label, lifetimes, changed": hdr(event.Event{
			Type:    event.NewAddr,
			Changed: 1<<1 | 1<<6, // peer, valid_lft
			Addr: event.Addr{
				Index: 2, Ifname: "eth0", Family: event.Inet,
				Address:   netip.MustParseAddr("10.3.0.185"),
				Peer:      netip.MustParseAddr("10.3.0.1"),
				PrefixLen: 24,
				Broadcast: netip.MustParseAddr("10.3.0.255"),
				Scope:     17, Label: "eth0:1", Flags: 0x81 | 0x4000,
				ValidLft: 3600, PreferredLft: 0,
			},
		}, 43),
		"ipv4 dump, no broadcast, forever": hdr(event.Event{
			Type: event.NewAddr, Dump: true,
			Addr: event.Addr{Index: 1, Ifname: "lo", Family: event.Inet,
				Address: netip.MustParseAddr("127.0.0.1"), PrefixLen: 8, Scope: 254, Flags: 0x80,
				ValidLft: event.Forever, PreferredLft: event.Forever},
		}, 2),
		"ipv6 temporary with peer and zone": hdr(event.Event{
			Type: event.DelAddr,
			Addr: event.Addr{Index: 3, Ifname: "br0", Family: event.Inet6,
				Address:   netip.MustParseAddr("fe80::1%br0"),
				Peer:      netip.MustParseAddr("fe80::2"),
				PrefixLen: 64, Scope: 253, Flags: 0x01 | 0x200 | 0x1000,
				ValidLft: 86400, PreferredLft: 14400},
		}, 44),
		"ipv6 unknown interface, prefix changed": hdr(event.Event{
			Type: event.NewAddr, Changed: 1 << 8, // prefix_len
			Addr: event.Addr{Index: 99, Family: event.Inet6, Address: netip.MustParseAddr("2001:db8::1"),
				PrefixLen: 128, ValidLft: event.Forever, PreferredLft: event.Forever},
		}, 45),
		"sync": hdr(event.Event{
			Type: event.Sync,
			Sync: event.SyncInfo{Reason: event.ReasonRequest, Links: 3, Addrs: 4, FirstSeq: 8},
		}, 14),
		"sync with interface": hdr(event.Event{
			Type: event.Sync,
			Sync: event.SyncInfo{Reason: event.ReasonResync, Interface: "eth0.100", Links: 1, Addrs: 0, FirstSeq: 1<<64 - 2},
		}, 1<<64-1),
	}
}

// decoded is what Decode gives back for ev: the wire carries times in UTC,
// valid UTF-8, addresses without zones and no parent equal to the index.
func decoded(ev event.Event) event.Event {
	ev.Time = ev.Time.UTC()
	ev.Host, ev.Boot = validUTF8(ev.Host), validUTF8(ev.Boot)
	switch {
	case ev.Type.IsLink():
		ev.Link.Name, ev.Link.Kind, ev.Link.Alias = validUTF8(ev.Link.Name), validUTF8(ev.Link.Kind), validUTF8(ev.Link.Alias)
		ev.Link.Parent = parent(&ev.Link)
		if len(ev.Link.MAC) == 0 {
			ev.Link.MAC = nil
		}
	case ev.Type.IsAddr():
		ev.Addr.Ifname, ev.Addr.Label = validUTF8(ev.Addr.Ifname), validUTF8(ev.Addr.Label)
		ev.Addr.Address = ev.Addr.Address.WithZone("")
		ev.Addr.Peer = ev.Addr.Peer.WithZone("")
	default:
		ev.Sync.Reason = event.Reason(validUTF8(string(ev.Sync.Reason)))
		ev.Sync.Interface = validUTF8(ev.Sync.Interface)
	}
	return ev
}

var eventCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location() == b.Location() }),
	cmpopts.EquateEmpty(),
}

var encoders = []Encoder{JSON{}, CBOR{}}

func TestDecodeRoundTrip(t *testing.T) {
	for name, ev := range decodeEvents() {
		for _, enc := range encoders {
			t.Run(name+"/"+enc.ContentType(), func(t *testing.T) {
				data, err := enc.Append(nil, &ev)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(enc.ContentType(), data)
				if err != nil {
					t.Fatalf("Decode(%s): %v", data, err)
				}
				if diff := cmp.Diff(decoded(ev), got, eventCmp); diff != "" {
					t.Errorf("Decode differs (-want +got):\n%s", diff)
				}
				// The same document; a name that was not valid UTF-8
				// holds U+FFFD itself now, where JSON wrote \ufffd.
				want := decoded(ev)
				wantData, _ := enc.Append(nil, &want)
				again, err := enc.Append(nil, &got)
				if err != nil || !bytes.Equal(again, wantData) {
					t.Errorf("encoding the decoded event again:\ngot  %q, %v\nwant %q", again, err, wantData)
				}
			})
		}
	}
}

func TestDecodeContentType(t *testing.T) {
	ev := decodeEvents()["sync"]
	j, _ := JSON{}.Append(nil, &ev)
	c, _ := CBOR{}.Append(nil, &ev)
	for _, tt := range []struct {
		ct   string
		data []byte
		ok   bool
	}{
		{"application/json", j, true},
		{"application/json; charset=utf-8", j, true},
		{"Application/JSON", j, true},
		{"application/cbor", c, true},
		{"application/cbor", j, false},
		{"application/json", c, false},
		{"", j, false},
		{"text/plain", j, false},
	} {
		_, err := Decode(tt.ct, tt.data)
		if (err == nil) != tt.ok {
			t.Errorf("Decode(%q, …) error %v, want ok %t", tt.ct, err, tt.ok)
		}
	}
	_, err := Decode("application/xml", j)
	if err == nil || !strings.Contains(err.Error(), `"application/xml"`) || errors.Is(err, ErrInvalidMessage) {
		t.Errorf("Decode(application/xml) error = %v, want one naming the type and not ErrInvalidMessage", err)
	}
}

// validLink is a NEWLINK document that decodes; the error cases change it.
const validLink = `{"v":1,"type":"NEWLINK","host":"h","boot":"b","seq":5,"time":"2026-11-27T08:36:28.362064595Z","dump":false,` +
	`"link":{"index":2,"name":"eth1","kind":"veth","state":"down","enabled":false,"running":false,"mtu":1500,"mac":"de:e3:1d:f3:0e:32","carrier":false,"flags":["broadcast","multicast"]}}`

const validAddr = `{"v":1,"type":"NEWADDR","host":"h","boot":"b","seq":7,"time":"2026-11-27T08:36:28.363377217Z","dump":false,` +
	`"addr":{"index":3,"id":"192.0.2.10/24","ifname":"eth0.100","family":"inet","address":"192.0.2.10","prefix_len":24,"scope":"global","label":"eth0.100","flags":["permanent"]}}`

const validSync = `{"v":1,"type":"SYNC","host":"h","boot":"b","seq":14,"time":"2026-11-27T08:36:28.709583850Z","reason":"request","links":3,"addrs":3,"first_seq":8}`

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"not JSON", `{"v":1,`, "unexpected EOF"},
		{"array", `[1]`, "an array, not an object"},
		{"trailing", validSync + ` {}`, "data after the JSON object"},
		{"too deep", `{"v":[[[1]]]}`, "nested too deeply"},
		{"duplicate key", `{"v":1,"v":1}`, `duplicate key "v"`},
		{"version", strings.Replace(validSync, `"v":1`, `"v":2`, 1), "v: schema version 2, want 1"},
		{"version missing", strings.Replace(validSync, `"v":1,`, ``, 1), "v: missing"},
		{"type", strings.Replace(validSync, `"SYNC"`, `"BEGIN"`, 1), `type: unknown type "BEGIN"`},
		{"type not a string", strings.Replace(validSync, `"SYNC"`, `5`, 1), "type: want a string, got 5"},
		{"unknown key", strings.Replace(validSync, `"links"`, `"dump":true,"zz":1,"links"`, 1), "dump: unknown key"},
		{"link key on SYNC", strings.Replace(validSync, `"links"`, `"link":{},"links"`, 1), "link: unknown key"},
		{"seq string", strings.Replace(validSync, `"seq":14`, `"seq":"14"`, 1), `seq: want an integer from 0 to 18446744073709551615, got "14"`},
		{"seq fraction", strings.Replace(validSync, `"seq":14`, `"seq":14.0`, 1), "got 14.0"},
		{"seq exponent", strings.Replace(validSync, `"seq":14`, `"seq":1e3`, 1), "got 1e3"},
		{"seq negative", strings.Replace(validSync, `"seq":14`, `"seq":-1`, 1), "got -1"},
		{"seq too big", strings.Replace(validSync, `"seq":14`, `"seq":18446744073709551616`, 1), "got 18446744073709551616"},
		{"host null", strings.Replace(validSync, `"host":"h"`, `"host":null`, 1), "host: want a string, got null"},
		{"time zone", strings.Replace(validSync, `850Z`, `850+01:00`, 1), "time: want a UTC time"},
		{"time digits", strings.Replace(validSync, `.709583850Z`, `.709Z`, 1), "time: want a UTC time"},
		{"time month", strings.Replace(validSync, `2026-11-27`, `2026-13-27`, 1), "time: want a UTC time"},
		{"links fraction", strings.Replace(validSync, `"links":3`, `"links":3.5`, 1), "links: want an integer"},
		{"reason missing", strings.Replace(validSync, `"reason":"request",`, ``, 1), "reason: missing"},
		{"dump missing", strings.Replace(validLink, `"dump":false,`, ``, 1), "dump: missing"},
		{"dump string", strings.Replace(validLink, `"dump":false`, `"dump":"false"`, 1), `dump: want true or false, got "false"`},
		{"link missing", strings.Replace(validLink, `"link"`, `"addr"`, 1), "addr: unknown key"},
		{"link not an object", validLink[:strings.Index(validLink, `"link"`)] + `"link":[]}`, "link: want an object, got an array"},
		{"link unknown key", strings.Replace(validLink, `"mtu"`, `"qlen":1000,"mtu"`, 1), "link.qlen: unknown key"},
		{"link mtu too big", strings.Replace(validLink, `"mtu":1500`, `"mtu":4294967296`, 1), "link.mtu: want an integer from 0 to 4294967295, got 4294967296"},
		{"link carrier missing", strings.Replace(validLink, `"carrier":false,`, ``, 1), "link.carrier: missing"},
		{"link state", strings.Replace(validLink, `"down"`, `"DOWN"`, 1), `link.state: unknown name "DOWN"`},
		{"link state number", strings.Replace(validLink, `"down"`, `"256"`, 1), `link.state: unknown name "256"`},
		{"link state leading zero", strings.Replace(validLink, `"down"`, `"09"`, 1), `link.state: unknown name "09"`},
		{"mac upper case", strings.Replace(validLink, `de:e3`, `DE:e3`, 1), "link.mac: want a MAC address"},
		{"mac dashes", strings.Replace(validLink, `de:e3`, `de-e3`, 1), "link.mac: want a MAC address"},
		{"mac empty", strings.Replace(validLink, `"de:e3:1d:f3:0e:32"`, `""`, 1), "link.mac: want a MAC address"},
		{"flag unknown", strings.Replace(validLink, `"multicast"]`, `"multicast","fast"]`, 1), `link.flags: unknown name "fast"`},
		{"flag repeated", strings.Replace(validLink, `"multicast"]`, `"multicast","0x1000"]`, 1), `link.flags: "0x1000" repeats a bit`},
		{"flag not a string", strings.Replace(validLink, `"multicast"]`, `2]`, 1), "link.flags: item 1: want a name, got 2"},
		{"flag two bits", strings.Replace(validLink, `"multicast"]`, `"0x3"]`, 1), `link.flags: unknown name "0x3"`},
		{"flag hex upper", strings.Replace(validLink, `"multicast"]`, `"0x80000","0xA0000"]`, 1), `unknown name "0xA0000"`},
		{"flag hex leading zero", strings.Replace(validLink, `"multicast"]`, `"0x080000"]`, 1), `unknown name "0x080000"`},
		{"flags null", strings.Replace(validLink, `["broadcast","multicast"]`, `null`, 1), "link.flags: want an array of names, got null"},
		{"enabled without up", strings.Replace(validLink, `"enabled":false`, `"enabled":true`, 1), "link.enabled: is true, but flags say false"},
		{"running with flag", strings.Replace(validLink, `"multicast"]`, `"running"]`, 1), "link.running: is false, but flags say true"},
		{"changed unknown", strings.Replace(validLink, `"link"`, `"changed":["ifname"],"link"`, 1), `changed: unknown name "ifname"`},
		{"changed not an array", strings.Replace(validLink, `"link"`, `"changed":"mtu","link"`, 1), `changed: want an array of names, got "mtu"`},
		{"family", strings.Replace(validAddr, `"inet"`, `"ipv4"`, 1), `addr.family: want "inet" or "inet6", got "ipv4"`},
		{"address family", strings.Replace(validAddr, `"inet"`, `"inet6"`, 1), `addr.address: "192.0.2.10" is not an inet6 address`},
		{"address bad", strings.Replace(validAddr, `"address":"192.0.2.10"`, `"address":"192.0.2.300"`, 1), `addr.address: want an IP address, got "192.0.2.300"`},
		{"address zone", strings.Replace(strings.Replace(validAddr, `"inet"`, `"inet6"`, 1), `"address":"192.0.2.10"`, `"address":"fe80::1%eth0"`, 1), `addr.address: "fe80::1%eth0" has a zone`},
		{"address missing", strings.Replace(validAddr, `"address":"192.0.2.10",`, ``, 1), "addr.address: missing"},
		{"peer family", strings.Replace(validAddr, `"prefix_len"`, `"peer":"::1","prefix_len"`, 1), `addr.peer: "::1" is not an inet address`},
		{"prefix too long", strings.Replace(validAddr, `"prefix_len":24`, `"prefix_len":33`, 1), "addr.prefix_len: 33 is longer than an inet address"},
		{"prefix over 255", strings.Replace(validAddr, `"prefix_len":24`, `"prefix_len":256`, 1), "addr.prefix_len: want an integer from 0 to 255"},
		{"broadcast on inet6", strings.NewReplacer(`"inet"`, `"inet6"`, `192.0.2.10`, `2001:db8::1`, `"scope"`, `"broadcast":"192.0.2.255","scope"`).Replace(validAddr),
			"addr.broadcast: only inet addresses have one"},
		{"broadcast v6", strings.Replace(validAddr, `"scope"`, `"broadcast":"::1","scope"`, 1), `addr.broadcast: "::1" is not an inet address`},
		{"scope", strings.Replace(validAddr, `"global"`, `"universe"`, 1), `addr.scope: unknown name "universe"`},
		{"temporary on inet", strings.Replace(validAddr, `"permanent"`, `"temporary"`, 1), `addr.flags: unknown name "temporary"`},
		{"valid_lft negative", strings.Replace(validAddr, `"flags"`, `"valid_lft":-5,"flags"`, 1), "addr.valid_lft: want an integer from 0 to 4294967295, got -5"},
		{"label number", strings.Replace(validAddr, `"label":"eth0.100"`, `"label":7`, 1), "addr.label: want a string, got 7"},
		{"id missing", strings.Replace(validAddr, `"id":"192.0.2.10/24",`, ``, 1), "addr.id: missing"},
		{"id number", strings.Replace(validAddr, `"id":"192.0.2.10/24"`, `"id":24`, 1), "addr.id: want a string, got 24"},
		{"id prefix", strings.Replace(validAddr, `"192.0.2.10/24"`, `"192.0.2.10/25"`, 1), `addr.id: is "192.0.2.10/25", but the address is "192.0.2.10/24"`},
		{"id without peer", strings.Replace(validAddr, `"prefix_len"`, `"peer":"192.0.2.1","prefix_len"`, 1),
			`addr.id: is "192.0.2.10/24", but the address is "192.0.2.10 peer 192.0.2.1/24"`},
		{"id of inet6 with prefix", strings.NewReplacer(`"inet"`, `"inet6"`, `"192.0.2.10/24"`, `"2001:db8::1/24"`, `192.0.2.10`, `2001:db8::1`).Replace(validAddr),
			`addr.id: is "2001:db8::1/24", but the address is "2001:db8::1"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("application/json", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("Decode(%s)\nerror %v\nwant one wrapping ErrInvalidMessage containing %q", tt.doc, err, tt.want)
			}
		})
	}
	for _, doc := range []string{validLink, validAddr, validSync} {
		if _, err := Decode("application/json", []byte(doc)); err != nil {
			t.Errorf("Decode(%s): %v", doc, err)
		}
	}
}

func TestDecodeCBORErrors(t *testing.T) {
	mk := func(f func(m map[string]any)) []byte {
		m := map[string]any{"v": 1, "type": "SYNC", "host": "h", "boot": "b", "seq": 14,
			"time": "2026-11-27T08:36:28.709583850Z", "reason": "request", "links": 3, "addrs": -3, "first_seq": 8}
		f(m)
		b, err := cbor.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if ev, err := Decode("application/cbor", mk(func(map[string]any) {})); err != nil || ev.Sync.Addrs != -3 {
		t.Fatalf("Decode(valid CBOR) = %+v, %v", ev, err)
	}
	tag, err := cbor.Marshal(cbor.Tag{Number: 0, Content: "2026-11-27T08:36:28.709583850Z"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"float", mk(func(m map[string]any) { m["seq"] = 14.0 }), "seq: want an integer from 0 to 18446744073709551615, got the floating-point number 14"},
		{"negative", mk(func(m map[string]any) { m["seq"] = -14 }), "seq: want an integer from 0 to 18446744073709551615, got -14"},
		{"byte string", mk(func(m map[string]any) { m["host"] = []byte("h") }), "host: want a string, got a byte string"},
		{"tag", mk(func(m map[string]any) { m["time"] = cbor.RawMessage(tag) }), "tag"},
		{"duplicate key", []byte{0xa2, 0x61, 'v', 0x01, 0x61, 'v', 0x01}, "duplicate"},
		{"integer key", []byte{0xa1, 0x01, 0x01}, "a map key is an unsigned integer, not a text string"},
		{"invalid UTF-8", []byte{0xa1, 0x61, 0xff, 0x01}, "UTF-8"},
		{"trailing data", append(mk(func(map[string]any) {}), 0x00), "extraneous data"},
		{"not a map", []byte{0x01}, "the message is 1, not a map"},
		{"empty", nil, "EOF"},
		{"too deep", []byte{0x81, 0x81, 0x81, 0x81, 0x81, 0x01}, "exceeded max nested level"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("application/cbor", tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("Decode(%x)\nerror %v\nwant one wrapping ErrInvalidMessage containing %q", tt.data, err, tt.want)
			}
		})
	}
}

// TestDecodeFlagNames checks that every named flag and changed field
// decodes to its bit, and "0x…" to any single bit.
func TestDecodeFlagNames(t *testing.T) {
	for _, fl := range event.LinkFlags {
		if b, ok := bitOf(fl.Name, &linkFlagNames); !ok || b != fl.Bit {
			t.Errorf("link flag %q = %#x, %t; want %#x", fl.Name, b, ok, fl.Bit)
		}
	}
	for _, fl := range event.AddrFlags {
		for _, f := range []event.Family{event.Inet, event.Inet6} {
			if b, ok := bitOf(event.AddrFlagName(fl, f), addrFlagNames(f)); !ok || b != fl.Bit {
				t.Errorf("%v address flag %q = %#x, %t; want %#x", f, event.AddrFlagName(fl, f), b, ok, fl.Bit)
			}
		}
	}
	for i, name := range event.LinkFields {
		if b, ok := bitOf(name, &linkFieldNames); !ok || b != 1<<i {
			t.Errorf("link field %q = %#x, %t", name, b, ok)
		}
	}
	for i, name := range event.AddrFields {
		if b, ok := bitOf(name, &addrFieldNames); !ok || b != 1<<i {
			t.Errorf("addr field %q = %#x, %t", name, b, ok)
		}
	}
	for i := range 32 {
		if b, ok := bitOf("0x"+strconv.FormatUint(1<<i, 16), &linkFlagNames); !ok || b != 1<<i {
			t.Errorf("bit %d = %#x, %t", i, b, ok)
		}
	}
	for _, s := range []string{"0x", "0x0", "0x100000000", "0x-1", "0x+1", "0X1", "1", "Up"} {
		if b, ok := bitOf(s, &linkFlagNames); ok {
			t.Errorf("bitOf(%q) = %#x, want no bit", s, b)
		}
	}
}

// FuzzDecode checks that Decode never panics on arbitrary input, and that
// what it accepts encodes again to a message that decodes to the same
// event.
func FuzzDecode(f *testing.F) {
	for _, ev := range decodeEvents() {
		for _, enc := range encoders {
			data, err := enc.Append(nil, &ev)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(enc.ContentType() == "application/cbor", data)
		}
	}
	for _, doc := range []string{validLink, validAddr, validSync, `{"v":1,"v":1}`, `[[[[[[`, `{"v":1e400}`, ""} {
		f.Add(false, []byte(doc))
	}
	f.Fuzz(func(t *testing.T, isCBOR bool, data []byte) {
		var enc Encoder = JSON{}
		if isCBOR {
			enc = CBOR{}
		}
		ev, err := Decode(enc.ContentType(), data)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		again, err := enc.Append(nil, &ev)
		if err != nil {
			t.Fatalf("decoded %+v, which does not encode: %v", ev, err)
		}
		ev2, err := Decode(enc.ContentType(), again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if diff := cmp.Diff(ev, ev2, eventCmp); diff != "" {
			t.Errorf("decoding again differs (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeEncoded checks that Decode accepts every message the encoders
// write, for events built from arbitrary values, and gives back the event.
func FuzzDecodeEncoded(f *testing.F) {
	f.Add(uint8(event.NewLink), "veth0", "veth", uint32(0x11043), []byte{2, 0x42, 0xac, 0x11, 0, 2}, uint32(3), uint64(42), int64(123456789))
	f.Add(uint8(event.NewAddr), "eth0", "", uint32(0x1201), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint32(86400), uint64(43), int64(0))
	f.Add(uint8(event.DelAddr), "tun\xff", "x\u2028", uint32(0x81), []byte{192, 0, 2, 1}, uint32(event.Forever), uint64(0), int64(1))
	f.Add(uint8(event.NewAddr), "ppp0", "", uint32(0x84), []byte{10, 9, 0, 2}, uint32(1000), uint64(44), int64(2)) // 10.9.0.2 peer 10.9.0.1
	f.Add(uint8(event.Sync), "lo", "startup", uint32(0), []byte(nil), uint32(7), uint64(1<<63), int64(-1))
	f.Fuzz(func(t *testing.T, typ uint8, name, text string, flags uint32, raw []byte, n uint32, seq uint64, nsec int64) {
		ev := event.Event{
			Type: event.Type(typ), Time: time.Unix(1764231060, nsec), Dump: nsec&1 == 0,
			Host: text, Boot: name, Seq: seq, Changed: n ^ flags,
			Link: event.Link{Index: n, Name: name, Kind: text, State: event.OperState(flags >> 24),
				Flags: flags, MTU: n, MAC: raw, Master: n >> 1, Parent: n >> (flags & 1), Alias: text,
				Carrier: flags&2 != 0},
			Addr: event.Addr{Index: n, Ifname: name, Family: event.Inet6, PrefixLen: uint8(flags % 129),
				Scope: uint8(flags >> 8), Flags: flags, ValidLft: n, PreferredLft: n ^ flags},
			Sync: event.SyncInfo{Reason: event.Reason(text), Interface: name, Links: int(int32(n)), Addrs: int(flags), FirstSeq: seq / 2},
		}
		if a, ok := netip.AddrFromSlice(raw); ok {
			ev.Addr.Address = a
			if a.Is4() {
				ev.Addr.Family = event.Inet
				ev.Addr.PrefixLen %= 33
				ev.Addr.Broadcast = netip.AddrFrom4([4]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
				ev.Addr.Label = text
			}
			if flags&4 != 0 {
				ev.Addr.Peer = a.Prev()
			}
		}
		if ev.Type.IsLink() || ev.Type == event.Sync {
			ev.Addr = event.Addr{}
		}
		if !ev.Type.IsLink() {
			ev.Link = event.Link{}
		}
		if ev.Type != event.Sync {
			ev.Sync = event.SyncInfo{}
		} else {
			ev.Dump, ev.Changed = false, 0
		}
		for _, enc := range encoders {
			data, err := enc.Append(nil, &ev)
			if err != nil {
				return // not an event the encoders write
			}
			got, err := Decode(enc.ContentType(), data)
			if err != nil {
				t.Fatalf("Decode(%s, %q): %v", enc.ContentType(), data, err)
			}
			if diff := cmp.Diff(decoded(ev), got, eventCmp); diff != "" {
				t.Errorf("%s: Decode differs (-want +got):\n%s", enc.ContentType(), diff)
			}
		}
	})
}

// TestDecodeJSONSyntax covers what jsontext and the tree check in JSON:
// the syntax, strings that are valid UTF-8 with valid escapes, keys
// written with escapes, duplicates, and the bounds on depth and size.
func TestDecodeJSONSyntax(t *testing.T) {
	manyFlags := strings.Repeat(`"up",`, maxValues) + `"up"`
	for _, tt := range []struct {
		name, doc, want string // want "" for a message that decodes
	}{
		{"empty", ``, "unexpected EOF"},
		{"spaces", " \n\t", "unexpected EOF"},
		{"number", `1`, "the message is 1, not an object"},
		{"string", `"x"`, `the message is "x", not an object`},
		{"stray close", `}`, "invalid character"},
		{"two objects", `{}{}`, "data after the JSON object"},
		{"trailing spaces", validSync + " \n", ""},
		{"spaces between", indent(validLink), ""},
		{"invalid UTF-8", strings.Replace(validSync, `"host":"h"`, "\"host\":\"h\xff\"", 1), "invalid UTF-8"},
		{"lone surrogate", strings.Replace(validSync, `"host":"h"`, `"host":"\ud800"`, 1), "surrogate"},
		{"control character", strings.Replace(validSync, `"host":"h"`, "\"host\":\"h\x01\"", 1), "invalid character"},
		{"bad escape", strings.Replace(validSync, `"host":"h"`, `"host":"\q"`, 1), "invalid escape"},
		{"escaped key", strings.Replace(validSync, `"host"`, `"\u0068ost"`, 1), ""},
		{"escaped duplicate", strings.Replace(validSync, `"host"`, `"boot":"b","\u0068ost"`, 1), `duplicate key "boot"`},
		{"duplicate in link", strings.Replace(validLink, `"mtu":1500`, `"mtu":1500,"mtu":1500`, 1), `duplicate key "mtu"`},
		{"duplicate flags", strings.Replace(validLink, `"multicast"]`, `"multicast","multicast"]`, 1), `link.flags: "multicast" repeats a bit`},
		{"depth", strings.Replace(validLink, `"flags":[`, `"flags":[[`, 1), "nested too deeply"},
		{"too many values", strings.Replace(validLink, `"broadcast","multicast"`, manyFlags, 1), "more than 128 values"},
		{"literal", strings.Replace(validSync, `"host":"h"`, `"host":nul`, 1), "invalid"},
		{"number syntax", strings.Replace(validSync, `"seq":14`, `"seq":014`, 1), "invalid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("application/json", []byte(tt.doc))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Decode(%q): %v", tt.doc, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidMessage)):
				t.Errorf("Decode(%q)\nerror %v\nwant one wrapping ErrInvalidMessage containing %q", tt.doc, err, tt.want)
			}
		})
	}
}

// indent returns doc with white space between all its tokens.
func indent(doc string) string {
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(doc), "\t", "  "); err != nil {
		panic(err)
	}
	return " \r\n" + b.String() + "\n"
}

// TestDecodeEscapes checks that escaped strings decode to their text.
func TestDecodeEscapes(t *testing.T) {
	doc := strings.Replace(validLink, `"name":"eth1"`, `"name":"e\"\\\/\b\f\n\r\t\u00fc\u2028\ud83d\ude00"`, 1)
	ev, err := Decode("application/json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if want := "e\"\\/\b\f\n\r\tü\u2028😀"; ev.Link.Name != want {
		t.Errorf("name = %q, want %q", ev.Link.Name, want)
	}
}

// TestDecodeCBORForms covers CBOR that fxamacker/cbor finds well-formed
// and the reader reads: indefinite lengths, every width of integer and
// float, and the values no event has.
func TestDecodeCBORForms(t *testing.T) {
	ev := decodeEvents()["sync"]
	valid, err := CBOR{}.Append(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	// member sets the value of key in valid, in wire order.
	member := func(key string, val ...byte) []byte {
		var m map[string]cbor.RawMessage
		if err := cbor.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		var out []byte
		if _, ok := m[key]; !ok {
			m[key] = nil
		}
		out = append(out, 0xa0|byte(len(m)))
		for _, k := range []string{"v", "type", "host", "boot", "seq", "time", "reason", "interface", "links", "addrs", "first_seq"} {
			raw, ok := m[k]
			if !ok {
				continue
			}
			out = append(out, 0x60|byte(len(k)))
			out = append(out, k...)
			if k == key {
				raw = val
			}
			out = append(out, raw...)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string // "" for a message that decodes
	}{
		{"as written", valid, ""},
		{"seq in 8 bytes", member("seq", 0x1b, 0, 0, 0, 0, 0, 0, 0, 14), ""},
		{"seq in 2 bytes", member("seq", 0x19, 0, 14), ""},
		{"host of indefinite length", member("host", 0x7f, 0x61, 'h', 0x60, 0xff), ""},
		{"indefinite map", append(append([]byte{0xbf}, valid[1:]...), 0xff), ""},
		{"links negative", member("links", 0x38, 0xff), ""},
		{"links most negative", member("links", 0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), ""},
		{"links below int64", member("links", 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "links: want an integer from -9223372036854775808 to 9223372036854775807, got -18446744073709551616"},
		{"seq negative", member("seq", 0x20), "seq: want an integer from 0 to 18446744073709551615, got -1"},
		{"seq half float", member("seq", 0xf9, 0x3c, 0x00), "seq: want an integer from 0 to 18446744073709551615, got the floating-point number 1"},
		{"seq single float", member("seq", 0xfa, 0x3f, 0xc0, 0, 0), "got the floating-point number 1.5"},
		{"host undefined", member("host", 0xf7), "host: want a string, got the simple value 23"},
		{"host simple value", member("host", 0xf8, 0x20), "host: want a string, got the simple value 32"},
		{"host null", member("host", 0xf6), "host: want a string, got null"},
		{"host array", member("host", 0x80), "host: want a string, got an array"},
		{"host indefinite invalid UTF-8", member("host", 0x7f, 0x61, 0xc3, 0x61, 0xbc, 0xff), "not valid UTF-8"},
		{"byte string key", []byte{0xa1, 0x41, 'v', 0x01}, "a map key is a byte string, not a text string"},
		{"depth", []byte{0xa1, 0x61, 'v', 0x81, 0x81, 0x81, 0x01}, "nested too deeply"},
		{"truncated", valid[:len(valid)-1], "EOF"},
		{"break alone", []byte{0xff}, "cbor"},
		{"reserved head", []byte{0x1c}, "cbor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("application/cbor", tt.data)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Decode(%x): %v", tt.data, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidMessage)):
				t.Errorf("Decode(%x)\nerror %v\nwant one wrapping ErrInvalidMessage containing %q", tt.data, err, tt.want)
			}
		})
	}
}

// TestDecodeKeyOrder checks that members are found in any order: JSON
// objects with their keys sorted, as encoding/json writes maps, and CBOR
// maps in Go's random map order.
func TestDecodeKeyOrder(t *testing.T) {
	for name, ev := range decodeEvents() {
		j, _ := JSON{}.Append(nil, &ev)
		sorted, err := json.Marshal(decodeJSON(t, j))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := CBOR{}.Append(nil, &ev)
		var doc any
		if err := strictCBOR.Unmarshal(c, &doc); err != nil {
			t.Fatal(err)
		}
		shuffled, err := cbor.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			ct   string
			data []byte
		}{{"application/json", sorted}, {"application/cbor", shuffled}} {
			got, err := Decode(tt.ct, tt.data)
			if err != nil {
				t.Errorf("%s, %s: Decode(%q): %v", name, tt.ct, tt.data, err)
				continue
			}
			if diff := cmp.Diff(decoded(ev), got, eventCmp); diff != "" {
				t.Errorf("%s, %s: Decode differs (-want +got):\n%s", name, tt.ct, diff)
			}
		}
	}
}

// TestTreeKeyBits checks that keys that share a bit of keyBit are still
// told apart.
func TestTreeKeyBits(t *testing.T) {
	seen := map[uint64]string{}
	var a, b string
	for i := 0; b == ""; i++ {
		k := "k" + strconv.Itoa(i)
		if other, ok := seen[keyBit(k)]; ok {
			a, b = other, k
		}
		seen[keyBit(k)] = k
	}
	doc := strings.Replace(validSync, `"v":1`, `"v":1,"`+a+`":1,"`+b+`":2`, 1)
	_, err := Decode("application/json", []byte(doc))
	if want := a + ": unknown key"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Decode(%s)\nerror %v\nwant one containing %q", doc, err, want)
	}
}

// TestDecodeOwnsStrings checks that a decoded event shares no memory with
// the message: the NATS client may reuse its buffer.
func TestDecodeOwnsStrings(t *testing.T) {
	for name, ev := range decodeEvents() {
		for _, enc := range encoders {
			data, err := enc.Append(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(enc.ContentType(), data)
			if err != nil {
				t.Fatal(err)
			}
			clear(data)
			if diff := cmp.Diff(decoded(ev), got, eventCmp); diff != "" {
				t.Errorf("%s, %s: the event changed with the message (-want +got):\n%s", name, enc.ContentType(), diff)
			}
		}
	}
}

// TestDecodeCopiesStrings checks that the strings an event keeps are
// copies, not parts of the copy of the message that the tree reads, which
// they would keep whole in memory.
func TestDecodeCopiesStrings(t *testing.T) {
	for name, ev := range decodeEvents() {
		ev.Link.Alias, ev.Addr.Label, ev.Sync.Interface = "alias", "label", "interface"
		for _, enc := range encoders {
			data, err := enc.Append(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			parse := parseJSON
			if enc.ContentType() == "application/cbor" {
				parse = parseCBOR
			}
			tr := getTree()
			text := string(data)
			if err := parse(tr, text, data); err != nil {
				t.Fatal(err)
			}
			got, err := eventOf(tr)
			tr.release()
			if err != nil {
				t.Fatal(err)
			}
			start := uintptr(unsafe.Pointer(unsafe.StringData(text)))
			for _, s := range []string{got.Host, got.Boot, string(got.Sync.Reason), got.Sync.Interface,
				got.Link.Name, got.Link.Kind, got.Link.Alias, got.Addr.Ifname, got.Addr.Label} {
				if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); s != "" && p >= start && p < start+uintptr(len(text)) {
					t.Errorf("%s, %s: %q is part of the message", name, enc.ContentType(), s)
				}
			}
		}
	}
}

// TestDecodeAllocs guards the allocations of Decode: the copy of the
// message, the strings and the MAC that the event keeps. (With
// encoding/json and maps it made 235 for a link.)
func TestDecodeAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts need a full, non-race run")
	}
	for _, tt := range []struct {
		name string
		ev   event.Event
		max  float64
	}{
		{"link", vethLink(), 6}, // message, host, boot, name, kind, MAC
		{"addr", ipv6Addr(), 4}, // message, host, boot, ifname
	} {
		for _, enc := range encoders {
			data, err := enc.Append(nil, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			n := testing.AllocsPerRun(200, func() {
				if _, err := Decode(enc.ContentType(), data); err != nil {
					t.Fatal(err)
				}
			})
			if n > tt.max {
				t.Errorf("Decode(%s, %s) allocates %v times, want at most %v", enc.ContentType(), tt.name, n, tt.max)
			}
		}
	}
}

// TestParseTime compares parseTime with time.Parse.
func TestParseTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-27T08:36:28.362064595Z",
		"0000-01-01T00:00:00.000000000Z",
		"9999-12-31T23:59:59.999999999Z",
		"2024-02-29T00:00:00.000000000Z",
		"2025-02-29T00:00:00.000000000Z",
		"2100-02-29T00:00:00.000000000Z",
		"2000-02-29T00:00:00.000000000Z",
		"2026-04-31T00:00:00.000000000Z",
		"2026-00-01T00:00:00.000000000Z",
		"2026-13-01T00:00:00.000000000Z",
		"2026-01-00T00:00:00.000000000Z",
		"2026-01-32T00:00:00.000000000Z",
		"2026-01-01T24:00:00.000000000Z",
		"2026-01-01T23:60:00.000000000Z",
		"2026-01-01T23:59:60.000000000Z",
		"2026-01-01T23:59:59.000000000+00:00",
		"2026-01-01T23:59:59.00000000Z",
		"2026-01-01 23:59:59.000000000Z",
		"2026-01-01T23:59:59.0000000a0Z",
		"-026-01-01T23:59:59.000000000Z",
		"",
	} {
		checkParseTime(t, s)
	}
}

func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-27T08:36:28.362064595Z")
	f.Add("2025-02-29T00:00:00.000000000Z")
	f.Fuzz(checkParseTime)
}

func checkParseTime(t *testing.T, s string) {
	got, ok := parseTime(s)
	want, err := time.Parse(timeLayout, s)
	// time.Parse takes other shapes too; Decode takes the one appendTime
	// writes.
	wantOK := err == nil && want.Location() == time.UTC && string(appendTime(nil, want)) == s
	if ok != wantOK || ok && (!got.Equal(want) || got.Location() != want.Location()) {
		t.Errorf("parseTime(%q) = %v, %t; time.Parse gives %v, %v", s, got, ok, want, err)
	}
}
