package encode

import (
	"math/bits"
	"net/netip"
	"strconv"
	"unicode/utf8"

	"github.com/nlbridge/nlbridge/event"
)

// JSON encodes events as JSON objects with the keys in a fixed order. Its
// zero value is ready to use and it is safe for concurrent use.
//
// JSON writes the messages itself, byte for byte as encoding/json writes
// the equivalent struct but without reflection or allocation; see
// BenchmarkJSONLinkReflect for the difference.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Append appends ev as one JSON object, without a trailing newline. It
// allocates nothing when dst has room.
func (JSON) Append(dst []byte, ev *event.Event) ([]byte, error) {
	if err := check(ev); err != nil {
		return dst, err
	}
	b := jsonUint(dst, `{"v":`, event.SchemaVersion)
	b = jsonString(b, `,"type":`, ev.Type.String())
	b = jsonString(b, `,"host":`, ev.Host)
	b = jsonString(b, `,"boot":`, ev.Boot)
	b = jsonUint(b, `,"seq":`, ev.Seq)
	b = append(appendTime(append(b, `,"time":"`...), ev.Time), '"')
	switch {
	case ev.Type == event.Sync:
		b = jsonString(b, `,"reason":`, string(ev.Sync.Reason))
		if ev.Sync.Interface != "" {
			b = jsonString(b, `,"interface":`, ev.Sync.Interface)
		}
		b = jsonInt(b, `,"links":`, ev.Sync.Links)
		b = jsonInt(b, `,"addrs":`, ev.Sync.Addrs)
		b = jsonUint(b, `,"first_seq":`, ev.Sync.FirstSeq)
	case ev.Type.IsLink():
		b = jsonBool(b, `,"dump":`, ev.Dump)
		if ev.Changed != 0 {
			b = jsonNames(append(b, `,"changed":`...), ev.Changed, &linkFieldNames)
		}
		b = jsonLink(append(b, `,"link":`...), &ev.Link)
	default:
		b = jsonBool(b, `,"dump":`, ev.Dump)
		if ev.Changed != 0 {
			b = jsonNames(append(b, `,"changed":`...), ev.Changed, &addrFieldNames)
		}
		b = jsonAddr(append(b, `,"addr":`...), &ev.Addr)
	}
	return append(b, '}'), nil
}

func jsonLink(b []byte, l *event.Link) []byte {
	b = jsonUint(b, `{"index":`, uint64(l.Index))
	b = jsonString(b, `,"name":`, l.Name)
	b = jsonString(b, `,"kind":`, l.Kind)
	b = jsonString(b, `,"state":`, stateNames[l.State])
	b = jsonBool(b, `,"enabled":`, l.Enabled())
	b = jsonBool(b, `,"running":`, l.Running())
	b = jsonUint(b, `,"mtu":`, uint64(l.MTU))
	if len(l.MAC) > 0 {
		b = append(appendMAC(append(b, `,"mac":"`...), l.MAC), '"')
	}
	if l.Master != 0 {
		b = jsonUint(b, `,"master":`, uint64(l.Master))
	}
	if p := parent(l); p != 0 {
		b = jsonUint(b, `,"parent":`, uint64(p))
	}
	if l.Alias != "" {
		b = jsonString(b, `,"alias":`, l.Alias)
	}
	b = jsonBool(b, `,"carrier":`, l.Carrier)
	b = jsonFlags(b, l.Flags, &linkFlagNames)
	return append(b, '}')
}

func jsonAddr(b []byte, a *event.Addr) []byte {
	b = jsonUint(b, `{"index":`, uint64(a.Index))
	// The id holds digits, letters, '.', ':', '/' and spaces: nothing to
	// escape. It begins with the address and, for IPv4, holds the peer,
	// which are copied from it rather than formatted again.
	b = append(b, `,"id":"`...)
	id := len(b)
	b = a.AppendID(b)
	addrEnd, peerStart, peerEnd := idParts(b[id:], a.Family)
	b = append(b, '"')
	b = jsonString(b, `,"ifname":`, a.Ifname)
	b = jsonString(b, `,"family":`, a.Family.String())
	b = append(append(append(b, `,"address":"`...), b[id:id+addrEnd]...), '"')
	switch {
	case peerEnd > peerStart:
		b = append(append(append(b, `,"peer":"`...), b[id+peerStart:id+peerEnd]...), '"')
	case a.Peer.IsValid():
		b = jsonIP(b, `,"peer":`, a.Peer)
	}
	b = jsonUint(b, `,"prefix_len":`, uint64(a.PrefixLen))
	if a.Broadcast.IsValid() {
		b = jsonIP(b, `,"broadcast":`, a.Broadcast)
	}
	b = jsonString(b, `,"scope":`, scopeNames[a.Scope])
	if a.Label != "" {
		b = jsonString(b, `,"label":`, a.Label)
	}
	b = jsonFlags(b, a.Flags, addrFlagNames(a.Family))
	if a.ValidLft != event.Forever {
		b = jsonUint(b, `,"valid_lft":`, uint64(a.ValidLft))
	}
	if a.PreferredLft != event.Forever {
		b = jsonUint(b, `,"preferred_lft":`, uint64(a.PreferredLft))
	}
	return append(b, '}')
}

// The functions below append a member: its key, given with the
// punctuation before it, and its value.

func jsonString(b []byte, key, s string) []byte {
	return appendJSONString(append(b, key...), s)
}

func jsonUint(b []byte, key string, u uint64) []byte {
	return strconv.AppendUint(append(b, key...), u, 10)
}

func jsonInt(b []byte, key string, i int) []byte {
	return strconv.AppendInt(append(b, key...), int64(i), 10)
}

func jsonBool(b []byte, key string, v bool) []byte {
	return strconv.AppendBool(append(b, key...), v)
}

// jsonIP writes an address without its zone: the index of the interface is
// already in the message, and the schema's ipv6 format has no zones.
func jsonIP(b []byte, key string, ip netip.Addr) []byte {
	b = ip.WithZone("").AppendTo(append(append(b, key...), '"'))
	return append(b, '"')
}

// jsonFlags writes the "flags" member: the names of the bits set in v, in
// bit order.
func jsonFlags(b []byte, v uint32, names *[32]string) []byte {
	return jsonNames(append(b, `,"flags":`...), v, names)
}

// jsonNames writes an array of the names of the bits set in v.
func jsonNames(b []byte, v uint32, names *[32]string) []byte {
	b = append(b, '[')
	for first := true; v != 0; first = false {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		if !first {
			b = append(b, ',')
		}
		b = appendJSONString(b, names[i])
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string exactly as json.Marshal
// writes it: '"', '\\' and control characters escaped, '<', '>', '&',
// U+2028 and U+2029 escaped as \u sequences, and each byte that is not
// part of valid UTF-8 replaced by \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Fast path: names and host names are almost always plain ASCII.
	i := 0
	for i < len(s) && jsonSafe[s[i]] {
		i++
	}
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i < len(s) {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			// Valid JSON but not valid JavaScript; encoding/json
			// escapes them, and so do we to match it.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonSafe holds the bytes that json.Marshal writes unchanged on their
// own: printable ASCII except '"', '\\', '<', '>' and '&'. Bytes from 0x80
// up are false here because they need a look at the whole rune.
var jsonSafe = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range `"\<>&` {
		t[b] = false
	}
	return t
}()
