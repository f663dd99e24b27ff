package encode

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/nlbridge/nlbridge/event"
)

func BenchmarkJSONLink(b *testing.B) { benchmarkAppend(b, JSON{}, vethLink()) }
func BenchmarkJSONAddr(b *testing.B) { benchmarkAppend(b, JSON{}, ipv6Addr()) }
func BenchmarkCBORLink(b *testing.B) { benchmarkAppend(b, CBOR{}, vethLink()) }
func BenchmarkCBORAddr(b *testing.B) { benchmarkAppend(b, CBOR{}, ipv6Addr()) }

func benchmarkAppend(b *testing.B, enc Encoder, ev event.Event) {
	buf, err := enc.Append(nil, &ev)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, err = enc.Append(buf[:0], &ev)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode measures Decode for each encoding on a link, an IPv6
// address, an IPv4 address with a peer and a SYNC.
func BenchmarkDecode(b *testing.B) {
	evs := decodeEvents()
	for _, enc := range []Encoder{JSON{}, CBOR{}} {
		for _, tt := range []struct {
			name string
			ev   event.Event
		}{
			{"link", vethLink()},
			{"addr6", ipv6Addr()},
			{"addr4", evs["ipv4 with peer, broadcast, label, lifetimes, changed"]},
			{"sync", evs["sync"]},
		} {
			b.Run(enc.ContentType()[len("application/"):]+"/"+tt.name, func(b *testing.B) {
				data, err := enc.Append(nil, &tt.ev)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Decode(enc.ContentType(), data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The Reflect benchmarks measure the plain way: a mirror struct built for
// each event and encoded by encoding/json, which JSON replaces, or by
// fxamacker/cbor with a prebuilt EncMode, which CBOR does with mirror
// structs and a buffer that it reuses.

func BenchmarkJSONLinkReflect(b *testing.B) { benchmarkReflect(b, false, vethLink()) }
func BenchmarkJSONAddrReflect(b *testing.B) { benchmarkReflect(b, false, ipv6Addr()) }
func BenchmarkCBORLinkReflect(b *testing.B) { benchmarkReflect(b, true, vethLink()) }
func BenchmarkCBORAddrReflect(b *testing.B) { benchmarkReflect(b, true, ipv6Addr()) }

func benchmarkReflect(b *testing.B, forCBOR bool, ev event.Event) {
	marshal := json.Marshal
	if forCBOR {
		em, err := cbor.EncOptions{}.EncMode()
		if err != nil {
			b.Fatal(err)
		}
		marshal = em.Marshal
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := marshal(toMirror(&ev, forCBOR)); err != nil {
			b.Fatal(err)
		}
	}
}

// mirror is the message as a struct, in the order of the wire format. Both
// encoding/json and fxamacker/cbor (which reads json tags) encode it to the
// same bytes as JSON and CBOR do, which the tests check.
type mirror struct {
	V         int         `json:"v"`
	Type      string      `json:"type"`
	Host      string      `json:"host"`
	Boot      string      `json:"boot"`
	Seq       uint64      `json:"seq"`
	Time      string      `json:"time"`
	Dump      *bool       `json:"dump,omitempty"`
	Changed   []string    `json:"changed,omitempty"`
	Link      *mirrorLink `json:"link,omitempty"`
	Addr      *mirrorAddr `json:"addr,omitempty"`
	Reason    *string     `json:"reason,omitempty"`
	Interface string      `json:"interface,omitempty"`
	Links     *int        `json:"links,omitempty"`
	Addrs     *int        `json:"addrs,omitempty"`
	FirstSeq  *uint64     `json:"first_seq,omitempty"`
}

type mirrorLink struct {
	Index   uint32   `json:"index"`
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	State   string   `json:"state"`
	Enabled bool     `json:"enabled"`
	Running bool     `json:"running"`
	MTU     uint32   `json:"mtu"`
	MAC     string   `json:"mac,omitempty"`
	Master  uint32   `json:"master,omitempty"`
	Parent  uint32   `json:"parent,omitempty"`
	Alias   string   `json:"alias,omitempty"`
	Carrier bool     `json:"carrier"`
	Flags   []string `json:"flags"`
}

type mirrorAddr struct {
	Index        uint32   `json:"index"`
	ID           string   `json:"id"`
	Ifname       string   `json:"ifname"`
	Family       string   `json:"family"`
	Address      string   `json:"address"`
	Peer         string   `json:"peer,omitempty"`
	PrefixLen    uint8    `json:"prefix_len"`
	Broadcast    string   `json:"broadcast,omitempty"`
	Scope        string   `json:"scope"`
	Label        string   `json:"label,omitempty"`
	Flags        []string `json:"flags"`
	ValidLft     *uint32  `json:"valid_lft,omitempty"`
	PreferredLft *uint32  `json:"preferred_lft,omitempty"`
}

// toMirror is a second, plainer statement of the wire format, written with
// the standard library's String methods. For CBOR, text must be valid
// UTF-8, which fxamacker/cbor leaves to the caller; encoding/json makes it
// so itself, writing replaced bytes as \ufffd.
func toMirror(ev *event.Event, forCBOR bool) *mirror {
	validUTF8 := func(s string) string { return s }
	if forCBOR {
		validUTF8 = toValidUTF8
	}
	m := &mirror{
		V:    event.SchemaVersion,
		Type: ev.Type.String(),
		Host: validUTF8(ev.Host),
		Boot: validUTF8(ev.Boot),
		Seq:  ev.Seq,
		Time: ev.Time.UTC().Format(timeLayout),
	}
	if ev.Type == event.Sync {
		reason := validUTF8(string(ev.Sync.Reason))
		m.Reason, m.Links, m.Addrs, m.FirstSeq = &reason, &ev.Sync.Links, &ev.Sync.Addrs, &ev.Sync.FirstSeq
		m.Interface = validUTF8(ev.Sync.Interface)
		return m
	}
	m.Dump = &ev.Dump
	fields := event.LinkFields
	if ev.Type.IsAddr() {
		fields = event.AddrFields
	}
	for i, f := range fields {
		if ev.Changed&(1<<i) != 0 {
			m.Changed = append(m.Changed, f)
		}
	}
	if ev.Type.IsLink() {
		l := &ev.Link
		m.Link = &mirrorLink{
			Index:   l.Index,
			Name:    validUTF8(l.Name),
			Kind:    validUTF8(l.Kind),
			State:   l.State.String(),
			Enabled: l.Enabled(),
			Running: l.Running(),
			MTU:     l.MTU,
			MAC:     l.MAC.String(),
			Master:  l.Master,
			Alias:   validUTF8(l.Alias),
			Carrier: l.Carrier,
			Flags:   mirrorFlags(l.Flags, event.LinkFlags, func(fl event.FlagName) string { return fl.Name }),
		}
		if l.Parent != l.Index {
			m.Link.Parent = l.Parent
		}
		return m
	}
	a := &ev.Addr
	m.Addr = &mirrorAddr{
		Index:     a.Index,
		Ifname:    validUTF8(a.Ifname),
		Family:    a.Family.String(),
		Address:   a.Address.WithZone("").String(),
		PrefixLen: a.PrefixLen,
		Scope:     event.ScopeName(a.Scope),
		Label:     validUTF8(a.Label),
		Flags:     mirrorFlags(a.Flags, event.AddrFlags, func(fl event.FlagName) string { return event.AddrFlagName(fl, a.Family) }),
	}
	if a.Peer.IsValid() {
		m.Addr.Peer = a.Peer.WithZone("").String()
	}
	if a.Broadcast.IsValid() {
		m.Addr.Broadcast = a.Broadcast.String()
	}
	if a.ValidLft != event.Forever {
		m.Addr.ValidLft = &a.ValidLft
	}
	if a.PreferredLft != event.Forever {
		m.Addr.PreferredLft = &a.PreferredLft
	}
	// The id as ip(8) prints the address: "local/len", "local peer
	// peer/len", or for IPv6 the address alone.
	switch {
	case a.Family == event.Inet6:
		m.Addr.ID = m.Addr.Address
	case m.Addr.Peer != "":
		m.Addr.ID = fmt.Sprintf("%s peer %s/%d", m.Addr.Address, m.Addr.Peer, a.PrefixLen)
	default:
		m.Addr.ID = fmt.Sprintf("%s/%d", m.Addr.Address, a.PrefixLen)
	}
	return m
}

func mirrorFlags(v uint32, table []event.FlagName, name func(event.FlagName) string) []string {
	names := []string{}
	for _, fl := range table {
		if v&fl.Bit != 0 {
			names = append(names, name(fl))
			v &^= fl.Bit
		}
	}
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if v&bit != 0 {
			names = append(names, "0x"+strconv.FormatUint(uint64(bit), 16))
		}
	}
	return names
}

// toValidUTF8 replaces each byte of s that is not part of valid UTF-8 by
// U+FFFD, as encoding/json does; fxamacker/cbor would write them as they
// are, which is not valid CBOR.
func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var r []rune
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		r = append(r, c)
		i += size
	}
	return string(r)
}
