package encode

import (
	"bytes"
	"math/bits"
	"net"
	"strconv"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// The rules and text forms below are shared by JSON and CBOR, so that the
// two formats carry the same values.

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so that every
// time has the same length and sorts as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// timeShape is what appendTime writes, before it fills in the digits.
const timeShape = "0000-00-00T00:00:00.000000000Z"

// appendTime appends t in UTC as timeLayout formats it. It copies the
// layout's shape and fills in the digits, in a third of the instructions of
// time.AppendFormat, which parses its layout on every call.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	ns := t.Nanosecond()

	start := len(dst)
	dst = append(dst, timeShape...)
	b := dst[start:]
	putPair(b[0:], year/100) // check has made sure 0 <= year <= 9999
	putPair(b[2:], year%100)
	putPair(b[5:], int(month))
	putPair(b[8:], day)
	putPair(b[11:], hour)
	putPair(b[14:], minute)
	putPair(b[17:], sec)
	b[20] = byte('0' + ns/1e8)
	ns %= 1e8
	putPair(b[21:], ns/1e6)
	putPair(b[23:], ns/1e4%100)
	putPair(b[25:], ns/100%100)
	putPair(b[27:], ns%100)
	return dst
}

// putPair writes v, from 0 to 99, as two digits at the start of b.
func putPair(b []byte, v int) {
	const pairs = "00010203040506070809" +
		"10111213141516171819" +
		"20212223242526272829" +
		"30313233343536373839" +
		"40414243444546474849" +
		"50515253545556575859" +
		"60616263646566676869" +
		"70717273747576777879" +
		"80818283848586878889" +
		"90919293949596979899"
	b[0], b[1] = pairs[2*v], pairs[2*v+1]
}

// appendMAC appends a hardware address as net.HardwareAddr.String writes
// it, without allocating.
func appendMAC(dst []byte, hw net.HardwareAddr) []byte {
	for i, b := range hw {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// parent returns the "parent" of l, 0 for none: IFLA_LINK is the device's
// own index on devices that have no lower device.
func parent(l *event.Link) uint32 {
	if l.Parent == l.Index {
		return 0
	}
	return l.Parent
}

// The names of values that come from small sets, made once from the event
// package's String methods and tables so that encoding never formats a
// number. Every state and scope is here, the unnamed ones as numbers.
var (
	stateNames [256]string
	scopeNames [256]string

	// Flag names by bit number: the bits set in a flags field are
	// published in bit order, by name or as "0x…" hex for a bit that has
	// no name.
	linkFlagNames  = flagNames(event.LinkFlags, func(fl event.FlagName) string { return fl.Name })
	linkFieldNames = fieldNames(event.LinkFields)
	addrFieldNames = fieldNames(event.AddrFields)
	inetFlagNames  = flagNames(event.AddrFlags, func(fl event.FlagName) string { return event.AddrFlagName(fl, event.Inet) })
	inet6FlagNames = flagNames(event.AddrFlags, func(fl event.FlagName) string { return event.AddrFlagName(fl, event.Inet6) })
)

func init() {
	for i := range 256 {
		stateNames[i] = event.OperState(i).String()
		scopeNames[i] = event.ScopeName(uint8(i))
	}
}

// flagNames indexes a table of flags by bit number, naming each with name.
// Entries that are not exactly one bit, of which there are none, are left
// out, so their bits are named in hex.
func flagNames(table []event.FlagName, name func(event.FlagName) string) (names [32]string) {
	for i := range names {
		names[i] = "0x" + strconv.FormatUint(1<<i, 16)
	}
	for _, fl := range table {
		if bits.OnesCount32(fl.Bit) == 1 {
			names[bits.TrailingZeros32(fl.Bit)] = name(fl)
		}
	}
	return names
}

// addrFlagNames returns the flag names for an address of family f, which
// check has made sure is Inet or Inet6.
func addrFlagNames(f event.Family) *[32]string {
	if f == event.Inet {
		return &inetFlagNames
	}
	return &inet6FlagNames
}

// fieldNames indexes the names of event.Changed bits; bits without a name
// are written as "0x…" like unnamed flags.
func fieldNames(fields []string) (names [32]string) {
	for i := range names {
		if i < len(fields) {
			names[i] = fields[i]
		} else {
			names[i] = "0x" + strconv.FormatUint(1<<i, 16)
		}
	}
	return names
}

// idParts finds the address and the peer in an id that event.Addr.AppendID
// wrote for an address of family f: the address is id[:addrEnd], and the
// peer id[peerStart:peerEnd] when it is there (IPv4 with a peer; IPv6 ids
// hold no peer).
func idParts(id []byte, f event.Family) (addrEnd, peerStart, peerEnd int) {
	if f == event.Inet6 {
		return len(id), 0, 0
	}
	slash := bytes.LastIndexByte(id, '/')
	addrEnd = bytes.IndexByte(id[:slash], ' ')
	if addrEnd < 0 {
		return slash, 0, 0
	}
	return addrEnd, addrEnd + len(" peer "), slash
}
