package encode

import (
	"math/bits"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so that every
// time has the same length and sorts as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// writer appends one message in either wire format. The two formats share
// the keys, their order and the rules for leaving them out, so appendEvent
// writes both through one set of methods; the branch on cbor is taken the
// same way for a whole message and costs less than an interface call per
// value.
type writer struct {
	buf  []byte
	cbor bool
	// more is for JSON: the current object or array already has a member,
	// so the next one needs a comma.
	more bool
}

// appendEvent appends ev, which check has accepted.
func (w *writer) appendEvent(ev *event.Event) {
	n := 8 // v type host boot seq time dump link|addr
	if ev.Type == event.Sync {
		n = 10 // v type host boot seq time reason links addrs first_seq
	}
	w.beginMap(n)
	w.key(&keyV)
	w.uint(event.SchemaVersion)
	w.key(&keyType)
	w.text(&typeText[ev.Type])
	w.key(&keyHost)
	w.str(ev.Host)
	w.key(&keyBoot)
	w.str(ev.Boot)
	w.key(&keySeq)
	w.uint(ev.Seq)
	w.key(&keyTime)
	w.time(ev.Time)
	switch {
	case ev.Type == event.Sync:
		w.key(&keyReason)
		w.str(string(ev.Sync.Reason))
		w.key(&keyLinks)
		w.int(int64(ev.Sync.Links))
		w.key(&keyAddrs)
		w.int(int64(ev.Sync.Addrs))
		w.key(&keyFirstSeq)
		w.uint(ev.Sync.FirstSeq)
	case ev.Type.IsLink():
		w.key(&keyDump)
		w.bool(ev.Dump)
		w.key(&keyLink)
		w.link(&ev.Link)
	default:
		w.key(&keyDump)
		w.bool(ev.Dump)
		w.key(&keyAddr)
		w.addr(&ev.Addr)
	}
	w.endMap()
}

func (w *writer) link(l *event.Link) {
	// parent is IFLA_LINK, which the kernel sets to the device's own index
	// on devices that have no lower device.
	parent := l.Parent
	if parent == l.Index {
		parent = 0
	}
	n := 9 + b2i(len(l.MAC) > 0) + b2i(l.Master != 0) + b2i(parent != 0) + b2i(l.Alias != "")
	w.beginMap(n)
	w.key(&keyIndex)
	w.uint(uint64(l.Index))
	w.key(&keyName)
	w.str(l.Name)
	w.key(&keyKind)
	w.str(l.Kind)
	w.key(&keyState)
	w.text(&stateText[l.State])
	w.key(&keyEnabled)
	w.bool(l.Enabled())
	w.key(&keyRunning)
	w.bool(l.Running())
	w.key(&keyMTU)
	w.uint(uint64(l.MTU))
	if len(l.MAC) > 0 {
		w.key(&keyMAC)
		w.mac(l.MAC)
	}
	if l.Master != 0 {
		w.key(&keyMaster)
		w.uint(uint64(l.Master))
	}
	if parent != 0 {
		w.key(&keyParent)
		w.uint(uint64(parent))
	}
	if l.Alias != "" {
		w.key(&keyAlias)
		w.str(l.Alias)
	}
	w.key(&keyCarrier)
	w.bool(l.Carrier)
	w.key(&keyFlags)
	w.flags(l.Flags, &linkFlagText)
	w.endMap()
}

func (w *writer) addr(a *event.Addr) {
	forever := event.Forever
	n := 7 + b2i(a.Peer.IsValid()) + b2i(a.Broadcast.IsValid()) + b2i(a.Label != "") +
		b2i(a.ValidLft != forever) + b2i(a.PreferredLft != forever)
	w.beginMap(n)
	w.key(&keyIndex)
	w.uint(uint64(a.Index))
	w.key(&keyIfname)
	w.str(a.Ifname)
	w.key(&keyFamily)
	flagText := &inet6FlagText
	if a.Family == event.Inet {
		w.text(&inetText)
		flagText = &inetFlagText
	} else {
		w.text(&inet6Text)
	}
	w.key(&keyAddress)
	w.ip(a.Address)
	if a.Peer.IsValid() {
		w.key(&keyPeer)
		w.ip(a.Peer)
	}
	w.key(&keyPrefixLen)
	w.uint(uint64(a.PrefixLen))
	if a.Broadcast.IsValid() {
		w.key(&keyBroadcast)
		w.ip(a.Broadcast)
	}
	w.key(&keyScope)
	w.text(&scopeText[a.Scope])
	if a.Label != "" {
		w.key(&keyLabel)
		w.str(a.Label)
	}
	w.key(&keyFlags)
	w.flags(a.Flags, flagText)
	if a.ValidLft != forever {
		w.key(&keyValidLft)
		w.uint(uint64(a.ValidLft))
	}
	if a.PreferredLft != forever {
		w.key(&keyPreferredLft)
		w.uint(uint64(a.PreferredLft))
	}
	w.endMap()
}

// flags writes the flags set in v in bit order, which is the order of
// the event package's tables: by name, or as "0x…" hex for a bit that has
// no name.
func (w *writer) flags(v uint32, names *[32]token) {
	w.beginArray(bits.OnesCount32(v))
	for v != 0 {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		if names[i].json != "" {
			w.text(&names[i])
		} else {
			w.hex(1 << i)
		}
	}
	w.endArray()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CBOR major types (RFC 8949, section 3.1).
const (
	majorUint  = 0
	majorNeg   = 1
	majorText  = 3
	majorArray = 4
	majorMap   = 5
)

// sep writes the comma a JSON value needs after another in the same
// object or array, and notes that the next value will need one.
func (w *writer) sep() {
	if w.more {
		w.buf = append(w.buf, ',')
	}
	w.more = true
}

// beginMap starts an object of n members; CBOR needs n up front.
func (w *writer) beginMap(n int) {
	if w.cbor {
		w.buf = appendHead(w.buf, majorMap, uint64(n))
		return
	}
	w.sep()
	w.buf = append(w.buf, '{')
	w.more = false
}

func (w *writer) endMap() {
	if !w.cbor {
		w.buf = append(w.buf, '}')
		w.more = true
	}
}

// beginArray starts an array of n elements; CBOR needs n up front.
func (w *writer) beginArray(n int) {
	if w.cbor {
		w.buf = appendHead(w.buf, majorArray, uint64(n))
		return
	}
	w.sep()
	w.buf = append(w.buf, '[')
	w.more = false
}

func (w *writer) endArray() {
	if !w.cbor {
		w.buf = append(w.buf, ']')
		w.more = true
	}
}

// key writes a member name.
func (w *writer) key(k *token) {
	if w.cbor {
		w.buf = append(w.buf, k.cbor...)
		return
	}
	if w.more {
		w.buf = append(w.buf, k.json...)
	} else {
		w.buf = append(w.buf, k.json[1:]...)
	}
	w.more = false
}

// text writes a prepared string value.
func (w *writer) text(t *token) {
	if w.cbor {
		w.buf = append(w.buf, t.cbor...)
		return
	}
	if w.more {
		w.buf = append(w.buf, t.json...)
	} else {
		w.buf = append(w.buf, t.json[1:]...)
	}
	w.more = true
}

// str writes any string.
func (w *writer) str(s string) {
	if w.cbor {
		w.buf = appendCBORString(w.buf, s)
		return
	}
	w.sep()
	w.buf = appendJSONString(w.buf, s)
}

func (w *writer) uint(u uint64) {
	if w.cbor {
		w.buf = appendHead(w.buf, majorUint, u)
		return
	}
	w.sep()
	w.buf = strconv.AppendUint(w.buf, u, 10)
}

func (w *writer) int(i int64) {
	if w.cbor {
		if i < 0 {
			w.buf = appendHead(w.buf, majorNeg, uint64(^i))
		} else {
			w.buf = appendHead(w.buf, majorUint, uint64(i))
		}
		return
	}
	w.sep()
	w.buf = strconv.AppendInt(w.buf, i, 10)
}

func (w *writer) bool(b bool) {
	if w.cbor {
		// Simple values false and true (RFC 8949, section 3.3).
		w.buf = append(w.buf, 0xf4+byte(b2i(b)))
		return
	}
	w.sep()
	w.buf = strconv.AppendBool(w.buf, b)
}

// The values below are text that the writer appends in place; beginText and
// endText put the quotes or the CBOR head around it.

// time writes t in UTC as timeLayout does. It copies the layout's shape
// and fills in the digits, in a third of the instructions of
// time.AppendFormat, which parses its layout on every call.
func (w *writer) time(t time.Time) {
	const shape = "0000-00-00T00:00:00.000000000Z"
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	ns := t.Nanosecond()

	start := w.beginText()
	w.buf = append(w.buf, shape...)
	b := w.buf[start : start+len(shape)]
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
	w.endText(start)
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

// ip writes an address without its zone: the index of the interface is
// already in the message, and the schema's ipv6 format has no zones.
func (w *writer) ip(a netip.Addr) {
	start := w.beginText()
	w.buf = a.WithZone("").AppendTo(w.buf)
	w.endText(start)
}

// mac writes a hardware address as net.HardwareAddr.String does, without
// allocating.
func (w *writer) mac(hw net.HardwareAddr) {
	start := w.beginText()
	for i, b := range hw {
		if i > 0 {
			w.buf = append(w.buf, ':')
		}
		w.buf = append(w.buf, hexDigits[b>>4], hexDigits[b&0xf])
	}
	w.endText(start)
}

// hex writes a flag bit that has no name.
func (w *writer) hex(bit uint32) {
	start := w.beginText()
	w.buf = append(w.buf, '0', 'x')
	w.buf = strconv.AppendUint(w.buf, uint64(bit), 16)
	w.endText(start)
}

// beginText starts a text value of printable ASCII whose length is not
// known yet, and returns where it starts.
func (w *writer) beginText() int {
	if w.cbor {
		// A one-byte head, enough for fewer than 24 bytes of text;
		// endText makes room for a longer one if needed.
		w.buf = append(w.buf, majorText<<5)
		return len(w.buf)
	}
	w.sep()
	w.buf = append(w.buf, '"')
	return len(w.buf)
}

func (w *writer) endText(start int) {
	if !w.cbor {
		w.buf = append(w.buf, '"')
		return
	}
	n := len(w.buf) - start
	if n < 24 {
		w.buf[start-1] = majorText<<5 | byte(n)
		return
	}
	// Preferred serialisation: the shortest head for the length, so move
	// the text up to make room.
	var a [9]byte
	head := appendHead(a[:0], majorText, uint64(n))
	w.buf = append(w.buf, head[1:]...)
	copy(w.buf[start-1+len(head):], w.buf[start:start+n])
	copy(w.buf[start-1:], head)
}

const hexDigits = "0123456789abcdef"
