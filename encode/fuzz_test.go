package encode

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/nlbridge/nlbridge/event"
)

var stringSeeds = []string{
	"",
	"eth0",
	"e.\"\\\x01\n\t\x7f<>&",
	"bad\xff\xfe\xc3ü",
	"über\u2028x\u2029",
	"\xed\xa0\x80", // an encoded surrogate: invalid UTF-8
	"\uFFFD\xef\xbf",
	"\x00\x1f\x20",
}

// FuzzJSONString checks that appendJSONString writes exactly what
// json.Marshal writes for the same string.
func FuzzJSONString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// FuzzValidUTF8 checks that validUTF8 makes any string into what the JSON
// encoding decodes to, which a strict CBOR decoder accepts, and that it
// returns valid strings without copying them.
func FuzzValidUTF8(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		var want string
		if err := json.Unmarshal(appendJSONString(nil, s), &want); err != nil {
			t.Fatal(err)
		}
		got := validUTF8(s)
		if got != want {
			t.Errorf("validUTF8(%q) = %q, want %q", s, got, want)
		}
		if utf8.ValidString(s) && unsafe.StringData(got) != unsafe.StringData(s) {
			t.Errorf("validUTF8(%q) copied a valid string", s)
		}
		enc, err := cborMode.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var dec string
		if err := strictCBOR.Unmarshal(enc, &dec); err != nil || dec != want {
			t.Errorf("CBOR of validUTF8(%q) = %x, decodes to %q, %v; want %q", s, enc, dec, err, want)
		}
	})
}

// FuzzTime checks that appendTime formats times as time.Time.Format does
// with timeLayout.
func FuzzTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(1764231060), int64(123456789))
	f.Add(int64(-62135596800), int64(0))         // 0001-01-01
	f.Add(int64(253402300799), int64(999999999)) // 9999-12-31T23:59:59.999999999
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tm := time.Unix(sec, nsec).In(cet)
		if tm.Before(minTime) || !tm.Before(maxTime) {
			return // outside RFC 3339's years: Append refuses these, tested elsewhere
		}
		got := appendTime(nil, tm)
		if want := tm.UTC().Format(timeLayout); string(got) != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	})
}

// FuzzEvent checks both encoders, for events built from arbitrary values:
// JSON against encoding/json encoding the mirror struct, and CBOR against
// JSON (the same document and key order, through a strict decoder) and
// against fxamacker/cbor encoding the mirror struct.
func FuzzEvent(f *testing.F) {
	f.Add(uint8(event.NewLink), "veth0", "veth", uint32(0x11043), []byte{2, 0x42, 0xac, 0x11, 0, 2}, uint32(3), uint64(42), int64(123456789))
	f.Add(uint8(event.NewAddr), "eth0", "", uint32(0x1201), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint32(86400), uint64(43), int64(0))
	f.Add(uint8(event.DelAddr), "tun\xff", "x\u2028", uint32(0x81), []byte{192, 0, 2, 1}, uint32(event.Forever), uint64(0), int64(1))
	f.Add(uint8(event.NewAddr), "ppp0", "", uint32(0x84), []byte{10, 9, 0, 2}, uint32(1000), uint64(44), int64(2)) // 10.9.0.2 peer 10.9.0.1
	f.Add(uint8(event.Sync), "lo", "startup", uint32(0), []byte(nil), uint32(7), uint64(1<<63), int64(-1))
	f.Fuzz(func(t *testing.T, typ uint8, name, text string, flags uint32, raw []byte, n uint32, seq uint64, nsec int64) {
		ev := event.Event{
			Type: event.Type(typ),
			Time: time.Unix(1764231060, nsec),
			Dump: nsec&1 == 0,
			Host: text,
			Boot: name,
			Seq:  seq,
			Link: event.Link{
				Index:   n,
				Name:    name,
				Kind:    text,
				State:   event.OperState(flags >> 24),
				Flags:   flags,
				MTU:     n,
				MAC:     raw,
				Master:  n >> 1,
				Parent:  n >> (flags & 1),
				Alias:   text,
				Carrier: flags&2 != 0,
			},
			Addr: event.Addr{
				Index:        n,
				Ifname:       name,
				Family:       event.Inet6,
				PrefixLen:    uint8(flags % 129),
				Scope:        uint8(flags >> 8),
				Flags:        flags,
				ValidLft:     n,
				PreferredLft: n ^ flags,
			},
			Sync: event.SyncInfo{Reason: event.Reason(text), Links: int(int32(n)), Addrs: int(flags), FirstSeq: seq / 2},
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

		j, jerr := JSON{}.Append(nil, &ev)
		c, cerr := CBOR{}.Append(nil, &ev)
		if (jerr == nil) != (cerr == nil) {
			t.Fatalf("JSON error %v, CBOR error %v", jerr, cerr)
		}
		if jerr != nil {
			if !errors.Is(jerr, ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", jerr)
			}
			return
		}
		want, err := json.Marshal(toMirror(&ev, false))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(j, want) {
			t.Errorf("JSON:\ngot  %s\nwant %s", j, want)
		}
		var doc any
		if err := strictCBOR.Unmarshal(c, &doc); err != nil {
			t.Fatalf("CBOR: %v\n%x", err, c)
		}
		if diff := cmp.Diff(norm(t, decodeJSON(t, j)), norm(t, doc)); diff != "" {
			t.Errorf("CBOR and JSON differ (-json +cbor):\n%s", diff)
		}
		if diff := cmp.Diff(jsonKeys(t, j), cborKeys(t, c)); diff != "" {
			t.Errorf("CBOR and JSON keys differ (-json +cbor):\n%s", diff)
		}
		want, err = cbor.Marshal(toMirror(&ev, true))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c, want) {
			t.Errorf("CBOR differs from the mirror struct's:\ngot  %x\nwant %x", c, want)
		}
	})
}
