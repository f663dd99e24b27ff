package encode

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

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
