package encode

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"mime"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// ErrInvalidMessage is wrapped by the errors Decode returns for a message
// that is not a valid nlbridge event in its encoding.
var ErrInvalidMessage = errors.New("encode: invalid message")

// Decode is the inverse of JSON and CBOR: it decodes one message by its
// Content-Type, "application/json" or "application/cbor" (parameters such
// as charset are ignored), into an event. Flags and changed lists come back
// as bits: names through event.LinkFlags, event.AddrFlags (as
// event.AddrFlagName names them for the address's family) and
// event.LinkFields or event.AddrFields, and unnamed bits written as "0x…"
// to their bit. Lifetimes that are absent come back as event.Forever, and
// times in UTC.
//
// Decode is strict about the schema's types: unknown, missing and
// duplicate keys, values of the wrong type (a number in a string, a
// fraction, null), integers out of range of their field, unknown names,
// malformed times, MACs and addresses, and enabled or running that
// disagree with flags are errors wrapping ErrInvalidMessage, which name the
// key. So are text that is not valid UTF-8 (in JSON, escapes of lone
// surrogates too), nesting deeper than an event's, and anything after the
// message. It checks what makes a message an event, not every limit of the
// schema: it accepts every message that JSON and CBOR write, and encoding a
// decoded event again gives the same document. It never panics.
//
// The event shares no memory with data. Decode allocates a copy of the
// message, which it reads, and the strings and MAC that the event keeps.
func Decode(contentType string, data []byte) (event.Event, error) {
	parse, kind := parseJSON, "JSON"
	switch mediaType(contentType) {
	case "application/json":
	case "application/cbor":
		parse, kind = parseCBOR, "CBOR"
	default:
		return event.Event{}, fmt.Errorf("encode: cannot decode Content-Type %q: want application/json or application/cbor", contentType)
	}
	t := getTree()
	defer t.release()
	// One copy of the message, of which the tree's strings are parts: the
	// strings that the event keeps are copied again, so that it does not
	// keep the whole message.
	text := string(data)
	if err := parse(t, text, data); err != nil {
		return event.Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, kind, err)
	}
	ev, err := eventOf(t)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, kind, err)
	}
	return ev, nil
}

// mediaType returns the lower-case media type of a Content-Type, or "".
func mediaType(contentType string) string {
	switch contentType {
	case "application/json", "application/cbor":
		return contentType // what nlbridge sends, without parsing it each time
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// The keys each object may have, in wire order.
var (
	linkEventKeys = []string{"v", "type", "host", "boot", "seq", "time", "dump", "changed", "link"}
	addrEventKeys = []string{"v", "type", "host", "boot", "seq", "time", "dump", "changed", "addr"}
	syncKeys      = []string{"v", "type", "host", "boot", "seq", "time", "reason", "interface", "links", "addrs", "first_seq"}
	linkKeys      = []string{"index", "name", "kind", "state", "enabled", "running", "mtu", "mac", "master", "parent", "alias", "carrier", "flags"}
	addrKeys      = []string{"index", "id", "ifname", "family", "address", "peer", "prefix_len", "broadcast", "scope", "label", "flags", "valid_lft", "preferred_lft"}
)

// eventOf reads the event from a parsed message. The strings it keeps are
// copied out of the message.
func eventOf(t *tree) (event.Event, error) {
	var d decoder
	top := object{t: t, v: &t.values[0]}
	var ev event.Event
	if v := d.uint(top, "v", math.MaxUint64); d.err == nil && v != event.SchemaVersion {
		d.fail(top, "v", "schema version %d, want %d", v, event.SchemaVersion)
	}
	name := d.str(top, "type")
	if d.err != nil {
		return ev, d.err
	}
	typ, ok := event.ParseType(name)
	switch {
	case typ.IsLink():
		d.known(top, linkEventKeys)
	case typ.IsAddr():
		d.known(top, addrEventKeys)
	case typ == event.Sync:
		d.known(top, syncKeys)
	default:
		ok = false
	}
	if !ok {
		d.fail(top, "type", "unknown type %s", quote(name))
		return ev, d.err
	}
	ev.Type = typ
	ev.Host = strings.Clone(d.str(top, "host"))
	ev.Boot = strings.Clone(d.str(top, "boot"))
	ev.Seq = d.uint(top, "seq", math.MaxUint64)
	ev.Time = d.time(top, "time")
	if typ == event.Sync {
		ev.Sync.Reason = event.Reason(strings.Clone(d.str(top, "reason")))
		s, _ := d.optStr(top, "interface")
		ev.Sync.Interface = strings.Clone(s)
		ev.Sync.Links = d.int(top, "links")
		ev.Sync.Addrs = d.int(top, "addrs")
		ev.Sync.FirstSeq = d.uint(top, "first_seq", math.MaxUint64)
	} else {
		ev.Dump = d.boolean(top, "dump")
		changed := &linkFieldNames
		if typ.IsAddr() {
			changed = &addrFieldNames
		}
		if top.has("changed") {
			ev.Changed = d.bits(top, "changed", changed)
		}
		if typ.IsLink() {
			if o, ok := d.object(top, "link"); ok {
				d.link(o, &ev.Link)
			}
		} else if o, ok := d.object(top, "addr"); ok {
			d.addr(o, &ev.Addr)
		}
	}
	if d.err != nil {
		return event.Event{}, d.err
	}
	// What Decode accepts, the encoders can write; this only guards that.
	if err := check(&ev); err != nil {
		return event.Event{}, fmt.Errorf("not an encodable event: %v", err)
	}
	return ev, nil
}

func (d *decoder) link(o object, l *event.Link) {
	d.known(o, linkKeys)
	l.Index = uint32(d.uint(o, "index", math.MaxUint32))
	l.Name = strings.Clone(d.str(o, "name"))
	l.Kind = strings.Clone(d.str(o, "kind"))
	l.State = event.OperState(d.named(o, "state", &stateNames))
	enabled := d.boolean(o, "enabled")
	running := d.boolean(o, "running")
	l.MTU = uint32(d.uint(o, "mtu", math.MaxUint32))
	if s, ok := d.optStr(o, "mac"); ok {
		if l.MAC, ok = parseMAC(s); !ok {
			d.fail(o, "mac", "want a MAC address in lower-case hex with colons, got %s", quote(s))
		}
	}
	l.Master = uint32(d.optUint(o, "master", math.MaxUint32, 0))
	l.Parent = uint32(d.optUint(o, "parent", math.MaxUint32, 0))
	alias, _ := d.optStr(o, "alias")
	l.Alias = strings.Clone(alias)
	l.Carrier = d.boolean(o, "carrier")
	l.Flags = d.bits(o, "flags", &linkFlagNames)
	if d.err != nil {
		return
	}
	// enabled and running repeat two flags; an event holds them once.
	if enabled != l.Enabled() {
		d.fail(o, "enabled", "is %t, but flags say %t", enabled, l.Enabled())
	}
	if running != l.Running() {
		d.fail(o, "running", "is %t, but flags say %t", running, l.Running())
	}
}

func (d *decoder) addr(o object, a *event.Addr) {
	d.known(o, addrKeys)
	a.Index = uint32(d.uint(o, "index", math.MaxUint32))
	id := d.str(o, "id")
	a.Ifname = strings.Clone(d.str(o, "ifname"))
	switch f := d.str(o, "family"); {
	case d.err != nil:
		return
	case f == "inet":
		a.Family = event.Inet
	case f == "inet6":
		a.Family = event.Inet6
	default:
		d.fail(o, "family", "want \"inet\" or \"inet6\", got %s", quote(f))
		return
	}
	a.Address = d.ip(o, "address", true, a.Family)
	a.Peer = d.ip(o, "peer", false, a.Family)
	a.PrefixLen = uint8(d.uint(o, "prefix_len", math.MaxUint8))
	if d.err == nil && int(a.PrefixLen) > a.Address.BitLen() {
		d.fail(o, "prefix_len", "%d is longer than an %v address", a.PrefixLen, a.Family)
	}
	if o.has("broadcast") && a.Family != event.Inet {
		d.fail(o, "broadcast", "only inet addresses have one")
	}
	a.Broadcast = d.ip(o, "broadcast", false, event.Inet)
	a.Scope = d.named(o, "scope", &scopeNames)
	label, _ := d.optStr(o, "label")
	a.Label = strings.Clone(label)
	a.Flags = d.bits(o, "flags", addrFlagNames(a.Family))
	a.ValidLft = uint32(d.optUint(o, "valid_lft", math.MaxUint32, uint64(event.Forever)))
	a.PreferredLft = uint32(d.optUint(o, "preferred_lft", math.MaxUint32, uint64(event.Forever)))
	// The id repeats the fields that identify the address; an event holds
	// them once.
	if d.err != nil {
		return
	}
	var buf [64]byte // room for any id
	if want := a.AppendID(buf[:0]); id != string(want) {
		d.fail(o, "id", "is %s, but the address is %s", quote(id), quote(string(want)))
	}
}

// decoder reads the members of a message's objects and keeps the first
// error, so that the code reads the message in wire order without an error
// check after each member; once it has failed, its methods return zero
// values.
type decoder struct {
	err error
}

func (d *decoder) fail(o object, key, format string, args ...any) {
	if d.err == nil {
		if o.path != "" {
			key = o.path + "." + key
		}
		d.err = fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
	}
}

// known fails if o has a key that is not in keys, naming the first in
// sorted order so that the error does not depend on the order of the
// members.
func (d *decoder) known(o object, keys []string) {
	var first *value
	next := 0 // after the last key found: members come in the order of keys
	for v := range o.members() {
		if i := slices.Index(keys[next:], v.key); i >= 0 {
			next += i + 1
		} else if !slices.Contains(keys[:next], v.key) && (first == nil || v.key < first.key) {
			first = v
		}
	}
	if first != nil {
		d.fail(o, truncate(first.key), "unknown key")
	}
}

// value returns member key of o; a missing one fails when it is required.
func (d *decoder) value(o object, key string, required bool) (*value, bool) {
	if d.err != nil {
		return nil, false
	}
	v, ok := o.get(key)
	if !ok && required {
		d.fail(o, key, "missing")
	}
	return v, ok
}

func (d *decoder) object(o object, key string) (object, bool) {
	v, ok := d.value(o, key, true)
	if !ok {
		return object{}, false
	}
	if v.kind != kindObject {
		d.fail(o, key, "want an object, got %s", describe(v))
		return object{}, false
	}
	path := key // a constant: no allocation for the objects that events have
	if o.path != "" {
		path = o.path + "." + key
	}
	return object{path: path, t: o.t, v: v}, true
}

func (d *decoder) str(o object, key string) string {
	v, ok := d.value(o, key, true)
	if !ok {
		return ""
	}
	if v.kind != kindString {
		d.fail(o, key, "want a string, got %s", describe(v))
		return ""
	}
	return v.str
}

func (d *decoder) optStr(o object, key string) (string, bool) {
	if !o.has(key) {
		return "", false
	}
	return d.str(o, key), d.err == nil
}

func (d *decoder) boolean(o object, key string) bool {
	v, ok := d.value(o, key, true)
	if !ok {
		return false
	}
	if v.kind != kindFalse && v.kind != kindTrue {
		d.fail(o, key, "want true or false, got %s", describe(v))
	}
	return v.kind == kindTrue
}

// uint reads an integer from 0 to max.
func (d *decoder) uint(o object, key string, max uint64) uint64 {
	v, ok := d.value(o, key, true)
	if !ok {
		return 0
	}
	var u uint64
	switch v.kind {
	case kindNumber:
		var err error
		u, err = strconv.ParseUint(v.str, 10, 64)
		ok = err == nil
	case kindUint:
		u = v.num
	default:
		ok = false
	}
	if !ok || u > max {
		d.fail(o, key, "want an integer from 0 to %d, got %s", max, describe(v))
		return 0
	}
	return u
}

// optUint reads an integer from 0 to max, or returns absent when there is
// none.
func (d *decoder) optUint(o object, key string, max, absent uint64) uint64 {
	if !o.has(key) {
		return absent
	}
	return d.uint(o, key, max)
}

// int reads an integer that fits an int.
func (d *decoder) int(o object, key string) int {
	v, ok := d.value(o, key, true)
	if !ok {
		return 0
	}
	var i int64
	switch v.kind {
	case kindNumber:
		var err error
		i, err = strconv.ParseInt(v.str, 10, strconv.IntSize)
		ok = err == nil
	case kindNegInt:
		// -1 - num, which fits an int64 while num does.
		i = -1 - int64(v.num)
		ok = v.num <= math.MaxInt64 && i >= math.MinInt
	case kindUint:
		i = int64(v.num)
		ok = v.num <= math.MaxInt
	default:
		ok = false
	}
	if !ok {
		d.fail(o, key, "want an integer from %d to %d, got %s", math.MinInt, math.MaxInt, describe(v))
		return 0
	}
	return int(i)
}

// time reads a time written as the encoders write it: UTC, with nine
// fractional digits.
func (d *decoder) time(o object, key string) time.Time {
	s := d.str(o, key)
	if d.err != nil {
		return time.Time{}
	}
	t, ok := parseTime(s)
	if !ok {
		d.fail(o, key, "want a UTC time such as %q, got %s", "2026-11-27T08:36:28.362064595Z", quote(s))
	}
	return t
}

// parseTime parses a time of timeLayout in UTC, the shape that appendTime
// writes, accepting what time.Parse accepts, in a tenth of its time.
func parseTime(s string) (time.Time, bool) {
	if len(s) != len(timeShape) {
		return time.Time{}, false
	}
	for i := range len(s) {
		if timeShape[i] == '0' && (s[i] < '0' || s[i] > '9') || timeShape[i] != '0' && s[i] != timeShape[i] {
			return time.Time{}, false
		}
	}
	num := func(from, to int) int {
		n := 0
		for _, c := range []byte(s[from:to]) {
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec := num(11, 13), num(14, 16), num(17, 19)
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, num(20, 29), time.UTC)
	// time.Date moves a day past the end of its month into the next one.
	return t, t.Day() == day
}

// named reads a state or scope: a name from table, or its number.
func (d *decoder) named(o object, key string, table *[256]string) uint8 {
	s := d.str(o, key)
	if d.err != nil {
		return 0
	}
	if i := indexOf(table[:], s); i >= 0 {
		return uint8(i)
	}
	// The names of the table's first entries, written as numbers.
	var buf [3]byte
	if u, err := strconv.ParseUint(s, 10, 8); err == nil && string(strconv.AppendUint(buf[:0], u, 10)) == s {
		return uint8(u)
	}
	d.fail(o, key, "unknown name %s", quote(s))
	return 0
}

// bits reads an array of names of bits, each one a name from names (by bit
// number) or "0x" and the bit in lower-case hex, and returns the bits.
func (d *decoder) bits(o object, key string, names *[32]string) uint32 {
	v, ok := d.value(o, key, true)
	if !ok {
		return 0
	}
	if v.kind != kindArray {
		d.fail(o, key, "want an array of names, got %s", describe(v))
		return 0
	}
	var set uint32
	i := 0
	for x := range (object{t: o.t, v: v}).members() {
		if x.kind != kindString {
			d.fail(o, key, "item %d: want a name, got %s", i, describe(x))
			return 0
		}
		bit, ok := bitOf(x.str, names)
		switch {
		case !ok:
			d.fail(o, key, "unknown name %s", quote(x.str))
			return 0
		case set&bit != 0:
			d.fail(o, key, "%s repeats a bit already named", quote(x.str))
			return 0
		}
		set |= bit
		i++
	}
	return set
}

// bitOf returns the bit that s names.
func bitOf(s string, names *[32]string) (uint32, bool) {
	if hex, ok := strings.CutPrefix(s, "0x"); ok {
		u, err := strconv.ParseUint(hex, 16, 32)
		// One bit, written as the encoders write it.
		var buf [8]byte
		if err != nil || bits.OnesCount64(u) != 1 || string(strconv.AppendUint(buf[:0], u, 16)) != hex {
			return 0, false
		}
		return uint32(u), true
	}
	if i := indexOf(names[:], s); i >= 0 {
		return 1 << i, true
	}
	return 0, false
}

// ip reads an address of family f, without a zone.
func (d *decoder) ip(o object, key string, required bool, f event.Family) netip.Addr {
	if !required && !o.has(key) {
		return netip.Addr{}
	}
	s := d.str(o, key)
	if d.err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		d.fail(o, key, "want an IP address, got %s", quote(s))
	case a.Zone() != "":
		d.fail(o, key, "%s has a zone", quote(s))
	case !inFamily(a, f):
		d.fail(o, key, "%s is not an %v address", quote(s), f)
	}
	return a
}

// parseMAC parses a hardware address as appendMAC writes it: lower-case
// hex byte pairs separated by colons, of any length.
func parseMAC(s string) (net.HardwareAddr, bool) {
	if len(s)%3 != 2 {
		return nil, false
	}
	hw := make(net.HardwareAddr, 0, (len(s)+1)/3)
	for i := 0; i < len(s); i += 3 {
		if i > 0 && s[i-1] != ':' {
			return nil, false
		}
		hi, lo := strings.IndexByte(hexDigits, s[i]), strings.IndexByte(hexDigits, s[i+1])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		hw = append(hw, byte(hi<<4|lo))
	}
	return hw, true
}

// nameIndexes holds, for each table of names that Decode reads, where each
// name is in it, so that a name is found without comparing it with every
// entry. They are made on first use, once init has filled every table.
var nameIndexes = sync.OnceValue(func() map[*string]map[string]int {
	tables := [][]string{stateNames[:], scopeNames[:], linkFlagNames[:], inetFlagNames[:], inet6FlagNames[:],
		linkFieldNames[:], addrFieldNames[:]}
	indexes := make(map[*string]map[string]int, len(tables))
	for _, table := range tables {
		index := make(map[string]int, len(table))
		for i := len(table) - 1; i >= 0; i-- {
			index[table[i]] = i // the first of any repeated name, as slices.Index finds it
		}
		indexes[&table[0]] = index
	}
	return indexes
})

// indexOf returns the index of the first s in table, or -1, as
// slices.Index does.
func indexOf(table []string, s string) int {
	if len(table) == 0 {
		return -1
	}
	index, ok := nameIndexes()[&table[0]]
	if !ok {
		return slices.Index(table, s)
	}
	if i, ok := index[s]; ok {
		return i
	}
	return -1
}
