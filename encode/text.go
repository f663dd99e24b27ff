package encode

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nlbridge/nlbridge/event"
)

// Text writes events for people to read, in the layout of the C++ netlink
// listener that nlbridge grew from: a block per link or address, then a
// blank line.
//
//	results for eth0(2)
//	  type: NEWLINK
//	  state: UP
//	  running: yes
//	  enabled: yes
//	  mtu: 1500
//	  mac: 08:00:27:41:de:23
//	  kind: veth
//	  parent: 3
//
//	results for eth0(2)
//	  type: NEWADDR
//	  addr: 10.3.0.185
//	  broadcast: 10.3.0.255
//	  mask length: 24
//	  family: inet
//	  scope: global
//	  flags: permanent
//
//	sync: request (3 links, 4 addrs, seq 8..14)
//
// The listener's lines come first, as it wrote them: the state in upper
// case, an IPv4 address's broadcast as 0.0.0.0 when it has none (IPv6
// addresses have no broadcast line). The MAC is in lower case, as nlbridge
// publishes it. Lines that the listener did not have follow: for links
// kind, master, parent and alias when they are set; for addresses peer
// when set, family, scope, label when it differs from the interface name,
// flags when any are set, and the lifetimes when they are not forever; for
// both, the fields that changed on an update. A SYNC is one line with the
// dump's reason, the interface it was narrowed to, its counts and the seqs
// it spans. Names that hold anything but printable characters are quoted
// as Go quotes strings, so that no name can forge a line.
//
// Text's zero value writes exactly that; Time and Host prefix each block
// with a bracketed stamp, for a live stream of events from many hosts.
// Text is safe for concurrent use.
type Text struct {
	// Time starts each block with the event's time, in UTC to the
	// millisecond: "[2026-11-27T09:00:01.123Z] results for eth0(2)".
	Time bool
	// Host starts each block with the host that published the event:
	// "[web-01] results for eth0(2)", or with Time
	// "[2026-11-27T09:00:01.123Z web-01] results for eth0(2)".
	Host bool
}

var _ Encoder = Text{}

// ContentType returns "text/plain; charset=utf-8".
func (Text) ContentType() string { return "text/plain; charset=utf-8" }

// textTime is the layout of Text's time stamps.
const textTime = "2006-01-02T15:04:05.000Z07:00"

// Append appends ev's block, and the blank line after it, to dst.
func (t Text) Append(dst []byte, ev *event.Event) ([]byte, error) {
	switch {
	case ev.Type.IsLink(), ev.Type.IsAddr(), ev.Type == event.Sync:
	default:
		return dst, fmt.Errorf("%w: unknown type %v", ErrInvalidEvent, ev.Type)
	}
	b := dst
	if t.Time || t.Host {
		b = append(b, '[')
		if t.Time {
			b = ev.Time.UTC().AppendFormat(b, textTime)
		}
		if t.Time && t.Host {
			b = append(b, ' ')
		}
		if t.Host {
			b = appendText(b, ev.Host)
		}
		b = append(b, "] "...)
	}
	switch {
	case ev.Type.IsLink():
		b = textLink(b, ev)
	case ev.Type.IsAddr():
		b = textAddr(b, ev)
	default:
		b = textSync(b, ev)
	}
	return append(b, '\n'), nil
}

func textLink(b []byte, ev *event.Event) []byte {
	l := &ev.Link
	b = textHeader(b, l.Name, l.Index, ev.Type)
	b = textLine(b, "state", strings.ToUpper(stateNames[l.State]))
	b = textLine(b, "running", yesNo(l.Running()))
	b = textLine(b, "enabled", yesNo(l.Enabled()))
	b = strconv.AppendUint(append(b, "  mtu: "...), uint64(l.MTU), 10)
	b = append(b, '\n')
	if len(l.MAC) > 0 {
		b = append(appendMAC(append(b, "  mac: "...), l.MAC), '\n')
	}
	if l.Kind != "" {
		b = appendText(append(b, "  kind: "...), l.Kind)
		b = append(b, '\n')
	}
	if l.Master != 0 {
		b = append(strconv.AppendUint(append(b, "  master: "...), uint64(l.Master), 10), '\n')
	}
	if p := parent(l); p != 0 {
		b = append(strconv.AppendUint(append(b, "  parent: "...), uint64(p), 10), '\n')
	}
	if l.Alias != "" {
		b = append(appendText(append(b, "  alias: "...), l.Alias), '\n')
	}
	return textChanged(b, ev.Changed, &linkFieldNames)
}

func textAddr(b []byte, ev *event.Event) []byte {
	a := &ev.Addr
	b = textHeader(b, a.Ifname, a.Index, ev.Type)
	b = textIP(b, "addr", a.Address)
	if a.Family == event.Inet {
		// The listener printed 0.0.0.0 for an address without one.
		bc := a.Broadcast
		if !bc.IsValid() {
			b = textLine(b, "broadcast", "0.0.0.0")
		} else {
			b = textIP(b, "broadcast", bc)
		}
	}
	b = append(strconv.AppendUint(append(b, "  mask length: "...), uint64(a.PrefixLen), 10), '\n')
	if a.Peer.IsValid() {
		b = textIP(b, "peer", a.Peer)
	}
	b = textLine(b, "family", a.Family.String())
	b = textLine(b, "scope", scopeNames[a.Scope])
	if a.Label != "" && a.Label != a.Ifname {
		b = append(appendText(append(b, "  label: "...), a.Label), '\n')
	}
	if a.Flags != 0 {
		names := &inet6FlagNames
		if a.Family == event.Inet {
			names = &inetFlagNames
		}
		b = textNames(append(b, "  flags: "...), a.Flags, names)
	}
	if a.ValidLft != event.Forever {
		b = append(strconv.AppendUint(append(b, "  valid lifetime: "...), uint64(a.ValidLft), 10), "s\n"...)
	}
	if a.PreferredLft != event.Forever {
		b = append(strconv.AppendUint(append(b, "  preferred lifetime: "...), uint64(a.PreferredLft), 10), "s\n"...)
	}
	return textChanged(b, ev.Changed, &addrFieldNames)
}

// textSync writes "sync: request for eth0 (1 link, 2 addrs, seq 8..10)".
func textSync(b []byte, ev *event.Event) []byte {
	s := &ev.Sync
	b = appendText(append(b, "sync: "...), string(s.Reason))
	if s.Interface != "" {
		b = appendText(append(b, " for "...), s.Interface)
	}
	b = append(b, " ("...)
	b = appendCount(b, s.Links, "link")
	b = append(b, ", "...)
	b = appendCount(b, s.Addrs, "addr")
	b = strconv.AppendUint(append(b, ", seq "...), s.FirstSeq, 10)
	b = strconv.AppendUint(append(b, ".."...), ev.Seq, 10)
	return append(b, ")\n"...)
}

// appendCount appends n and a noun, plural unless n is 1: "1 link",
// "3 addrs".
func appendCount(b []byte, n int, noun string) []byte {
	b = append(strconv.AppendInt(b, int64(n), 10), ' ')
	b = append(b, noun...)
	if n != 1 {
		b = append(b, 's')
	}
	return b
}

// textHeader writes "results for eth0(2)" and the type line. An address
// whose interface nlbridge never saw named shows "?" for its name.
func textHeader(b []byte, name string, index uint32, typ event.Type) []byte {
	b = append(b, "results for "...)
	if name == "" {
		b = append(b, '?')
	} else {
		b = appendText(b, name)
	}
	b = append(strconv.AppendUint(append(b, '('), uint64(index), 10), ")\n"...)
	return textLine(b, "type", typ.String())
}

// textLine writes an indented "key: value" line; value needs no quoting.
func textLine(b []byte, key, value string) []byte {
	b = append(append(append(b, "  "...), key...), ": "...)
	return append(append(b, value...), '\n')
}

// textIP writes an address line, without the address's zone as JSON
// writes it.
func textIP(b []byte, key string, ip netip.Addr) []byte {
	b = append(append(append(b, "  "...), key...), ": "...)
	return append(ip.WithZone("").AppendTo(b), '\n')
}

func textChanged(b []byte, changed uint32, names *[32]string) []byte {
	if changed == 0 {
		return b
	}
	return textNames(append(b, "  changed: "...), changed, names)
}

// textNames writes the names of the bits set in v, in bit order, separated
// by ", ", and ends the line.
func textNames(b []byte, v uint32, names *[32]string) []byte {
	for first := true; v != 0; first = false {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		if !first {
			b = append(b, ", "...)
		}
		b = append(b, names[i]...)
	}
	return append(b, '\n')
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// appendText appends s as it is when it is valid UTF-8 of printable
// characters, and quoted as strconv.Quote quotes it otherwise, so that a
// name holding a newline or a terminal escape cannot forge output.
func appendText(b []byte, s string) []byte {
	if printable(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

// printable reports whether s is valid UTF-8 and holds only printable
// characters (spaces included), so that it can be shown to people as it
// is.
func printable(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}
