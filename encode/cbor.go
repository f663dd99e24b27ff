package encode

import (
	"bytes"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/nlbridge/nlbridge/event"
)

// CBOR encodes events as CBOR (RFC 8949) maps with the same text keys, in
// the same order, and the same values as JSON; times and IP addresses are
// text strings, not tagged values. Lengths are definite and integers take
// their shortest form. Its zero value is ready to use and it is safe for
// concurrent use.
//
// CBOR fills structs that mirror the message, reused from one Append to the
// next, and has fxamacker/cbor/v2 encode them. Once warm, it allocates only
// the strings it formats: the time and the MAC, or the address's id, of
// which its address and peer are parts.
type CBOR struct{}

// ContentType returns "application/cbor".
func (CBOR) ContentType() string { return "application/cbor" }

// Append appends ev as one CBOR map.
func (CBOR) Append(dst []byte, ev *event.Event) ([]byte, error) {
	if err := check(ev); err != nil {
		return dst, err
	}
	s := cborStates.Get().(*cborState)
	defer s.release()
	if err := cborMode.MarshalToBuffer(s.fill(ev), &s.buf); err != nil {
		// Not expected: the mirror structs hold only strings, integers,
		// booleans and slices of strings.
		return dst, fmt.Errorf("%w: %v: %w", ErrInvalidEvent, ev.Type, err)
	}
	return append(dst, s.buf.Bytes()...), nil
}

// cborMode encodes the mirror structs: with SortNone, struct fields in the
// order they are declared, which is the wire order; definite lengths; no
// tags. fxamacker/cbor always writes integers and lengths in their
// shortest form.
var cborMode = func() cbor.UserBufferEncMode {
	em, err := cbor.EncOptions{
		Sort:          cbor.SortNone,
		IndefLength:   cbor.IndefLengthForbidden,
		NilContainers: cbor.NilContainerAsEmpty, // flags is an array, even with no flags
		TagsMd:        cbor.TagsForbidden,
	}.UserBufferEncMode()
	if err != nil {
		panic("encode: CBOR options: " + err.Error())
	}
	return em
}()

// The mirror structs. Their fields are in wire order and their omitempty
// keys are the ones JSON leaves out.
type (
	cborHeader struct {
		V    int    `cbor:"v"`
		Type string `cbor:"type"`
		Host string `cbor:"host"`
		Boot string `cbor:"boot"`
		Seq  uint64 `cbor:"seq"`
		Time string `cbor:"time"`
	}

	// cborEvent is a NEWLINK, DELLINK, NEWADDR or DELADDR message.
	cborEvent struct {
		cborHeader
		Dump    bool      `cbor:"dump"`
		Changed []string  `cbor:"changed,omitempty"`
		Link    *cborLink `cbor:"link,omitempty"`
		Addr    *cborAddr `cbor:"addr,omitempty"`
	}

	// cborSync is a SYNC message.
	cborSync struct {
		cborHeader
		Reason    string `cbor:"reason"`
		Interface string `cbor:"interface,omitempty"`
		Links     int    `cbor:"links"`
		Addrs     int    `cbor:"addrs"`
		FirstSeq  uint64 `cbor:"first_seq"`
	}

	cborLink struct {
		Index   uint32   `cbor:"index"`
		Name    string   `cbor:"name"`
		Kind    string   `cbor:"kind"`
		State   string   `cbor:"state"`
		Enabled bool     `cbor:"enabled"`
		Running bool     `cbor:"running"`
		MTU     uint32   `cbor:"mtu"`
		MAC     string   `cbor:"mac,omitempty"`
		Master  uint32   `cbor:"master,omitempty"`
		Parent  uint32   `cbor:"parent,omitempty"`
		Alias   string   `cbor:"alias,omitempty"`
		Carrier bool     `cbor:"carrier"`
		Flags   []string `cbor:"flags"`
	}

	cborAddr struct {
		Index     uint32   `cbor:"index"`
		ID        string   `cbor:"id"`
		Ifname    string   `cbor:"ifname"`
		Family    string   `cbor:"family"`
		Address   string   `cbor:"address"`
		Peer      string   `cbor:"peer,omitempty"`
		PrefixLen uint8    `cbor:"prefix_len"`
		Broadcast string   `cbor:"broadcast,omitempty"`
		Scope     string   `cbor:"scope"`
		Label     string   `cbor:"label,omitempty"`
		Flags     []string `cbor:"flags"`
		// Lifetimes are left out when they are event.Forever.
		ValidLft     *uint32 `cbor:"valid_lft,omitempty"`
		PreferredLft *uint32 `cbor:"preferred_lft,omitempty"`
	}
)

// cborState is what one Append works in: the mirror structs and the buffer
// that fxamacker/cbor writes to, reused through cborStates so that Append
// allocates only the strings it formats.
type cborState struct {
	buf     bytes.Buffer
	event   cborEvent
	sync    cborSync
	link    cborLink
	addr    cborAddr
	flags   [32]string // backs Flags
	changed [32]string // backs Changed
}

var cborStates = sync.Pool{New: func() any { return new(cborState) }}

// release clears s, so that the pool holds on to nothing of the event, and
// puts it back in the pool.
func (s *cborState) release() {
	s.buf.Reset()
	s.event, s.sync, s.link, s.addr = cborEvent{}, cborSync{}, cborLink{}, cborAddr{}
	clear(s.flags[:])
	clear(s.changed[:])
	cborStates.Put(s)
}

// fill sets the mirror of ev, which check has accepted, and returns it.
func (s *cborState) fill(ev *event.Event) any {
	var tm [len(timeShape)]byte
	h := cborHeader{
		V:    event.SchemaVersion,
		Type: ev.Type.String(),
		Host: validUTF8(ev.Host),
		Boot: validUTF8(ev.Boot),
		Seq:  ev.Seq,
		Time: string(appendTime(tm[:0], ev.Time)),
	}
	if ev.Type == event.Sync {
		s.sync = cborSync{
			cborHeader: h,
			Reason:     validUTF8(string(ev.Sync.Reason)),
			Interface:  validUTF8(ev.Sync.Interface),
			Links:      ev.Sync.Links,
			Addrs:      ev.Sync.Addrs,
			FirstSeq:   ev.Sync.FirstSeq,
		}
		return &s.sync
	}
	s.event = cborEvent{cborHeader: h, Dump: ev.Dump}
	if ev.Type.IsLink() {
		s.fillLink(&ev.Link)
		s.event.Link = &s.link
	} else {
		s.fillAddr(&ev.Addr)
		s.event.Addr = &s.addr
	}
	if ev.Changed != 0 {
		names := &linkFieldNames
		if ev.Type.IsAddr() {
			names = &addrFieldNames
		}
		s.event.Changed = s.nameList(s.changed[:0], ev.Changed, names)
	}
	return &s.event
}

func (s *cborState) fillLink(l *event.Link) {
	s.link = cborLink{
		Index:   l.Index,
		Name:    validUTF8(l.Name),
		Kind:    validUTF8(l.Kind),
		State:   stateNames[l.State],
		Enabled: l.Enabled(),
		Running: l.Running(),
		MTU:     l.MTU,
		MAC:     macText(l.MAC),
		Master:  l.Master,
		Parent:  parent(l),
		Alias:   validUTF8(l.Alias),
		Carrier: l.Carrier,
		Flags:   s.flagList(l.Flags, &linkFlagNames),
	}
}

func (s *cborState) fillAddr(a *event.Addr) {
	id, address, peer := idTexts(a)
	s.addr = cborAddr{
		Index:     a.Index,
		ID:        id,
		Ifname:    validUTF8(a.Ifname),
		Family:    a.Family.String(),
		Address:   address,
		Peer:      peer,
		PrefixLen: a.PrefixLen,
		Broadcast: ipText(a.Broadcast),
		Scope:     scopeNames[a.Scope],
		Label:     validUTF8(a.Label),
		Flags:     s.flagList(a.Flags, addrFlagNames(a.Family)),
	}
	if a.ValidLft != event.Forever {
		s.addr.ValidLft = &a.ValidLft
	}
	if a.PreferredLft != event.Forever {
		s.addr.PreferredLft = &a.PreferredLft
	}
}

// flagList returns the names of the bits set in v, in bit order.
func (s *cborState) flagList(v uint32, names *[32]string) []string {
	return s.nameList(s.flags[:0], v, names)
}

// nameList appends to list the names of the bits set in v, in bit order.
func (s *cborState) nameList(list []string, v uint32, names *[32]string) []string {
	for v != 0 {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		list = append(list, names[i])
	}
	return list
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json writes it. CBOR text must be valid
// UTF-8 and fxamacker/cbor writes strings as they are. Valid strings, which
// are nearly all, are returned as they are, without a copy.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	// Converting to runes decodes as utf8.DecodeRuneInString does: an
	// invalid byte becomes one U+FFFD and decoding resumes after it.
	return string([]rune(s))
}

// macText returns hw as text, "" for none.
func macText(hw net.HardwareAddr) string {
	if len(hw) == 0 {
		return ""
	}
	var b [3 * 8]byte // room for most addresses; longer ones grow the slice
	return string(appendMAC(b[:0], hw))
}

// idTexts returns a's id, address and peer as text, allocating one string:
// the id begins with the address and, for IPv4, holds the peer.
func idTexts(a *event.Addr) (id, address, peer string) {
	var b [64]byte // room for any id
	text := a.AppendID(b[:0])
	addrEnd, peerStart, peerEnd := idParts(text, a.Family)
	id = string(text)
	if peerEnd > peerStart {
		peer = id[peerStart:peerEnd]
	} else {
		peer = ipText(a.Peer)
	}
	return id, id[:addrEnd], peer
}

// ipText returns ip as text without its zone, as jsonIP writes it, or ""
// for an invalid address.
func ipText(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.WithZone("").String()
}
