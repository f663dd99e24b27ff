package encode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"mime"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

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
// key. It checks what makes a message an event, not every limit of the
// schema: it accepts every message that JSON and CBOR write, and encoding a
// decoded event again gives the same document. It never panics.
func Decode(contentType string, data []byte) (event.Event, error) {
	var (
		doc  map[string]any
		err  error
		kind string
	)
	switch mediaType(contentType) {
	case "application/json":
		kind = "JSON"
		doc, err = parseJSON(data)
	case "application/cbor":
		kind = "CBOR"
		doc, err = parseCBOR(data)
	default:
		return event.Event{}, fmt.Errorf("encode: cannot decode Content-Type %q: want application/json or application/cbor", contentType)
	}
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, kind, err)
	}
	ev, err := eventOf(doc)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, kind, err)
	}
	return ev, nil
}

// mediaType returns the lower-case media type of a Content-Type, or "".
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// maxDepth is how deep a message nests: the event, its link or addr
// object, and their flags. Deeper documents are rejected as they are read,
// so that a hostile message cannot make the parser recurse far.
const maxDepth = 3

// parseJSON reads one JSON object into maps, slices, strings, booleans,
// nil and json.Number, rejecting duplicate keys (which encoding/json would
// quietly let the last one win) and anything after the object.
func parseJSON(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the message is %s, not an object", describe(v))
	}
	return m, nil
}

func jsonValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := jsonToken(dec)
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, bool, json.Number or nil
	}
	if depth == maxDepth {
		return nil, errors.New("nested too deeply")
	}
	if delim == '[' {
		a := []any{}
		for dec.More() {
			v, err := jsonValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := jsonToken(dec) // ']'
		return a, err
	}
	// The decoder hands out only '{' and '[' here: it reports a stray '}'
	// or ']' as a syntax error.
	m := make(map[string]any)
	for dec.More() {
		tok, err := jsonToken(dec)
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key %v is not a string", tok)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		v, err := jsonValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
	_, err = jsonToken(dec) // '}'
	return m, err
}

// jsonToken reads a token inside the message, where the end of the data
// is unexpected.
func jsonToken(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}

// cborDecMode reads CBOR into maps with text keys, slices, strings,
// booleans, nil, uint64 (unsigned integers) and int64 (negative ones). It
// rejects duplicate keys, invalid UTF-8, tags and byte-string keys, and
// nesting deeper than a message has.
var cborDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  maxDepth + 1, // the least fxamacker/cbor allows
		IntDec:           cbor.IntDecConvertNone,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		MapKeyByteString: cbor.MapKeyByteStringForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic("encode: CBOR decoding options: " + err.Error())
	}
	return dm
}()

// parseCBOR reads one CBOR map; data after it is an error.
func parseCBOR(data []byte) (map[string]any, error) {
	var v any
	if err := cborDecMode.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the message is %s, not a map", describe(v))
	}
	return m, nil
}

// describe says what a decoded value is, for errors.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if len(v) > 40 {
			return strconv.Quote(v[:40]) + "…"
		}
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return string(v)
	case uint64:
		return strconv.FormatUint(v, 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case float32, float64:
		return fmt.Sprintf("the floating-point number %v", v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case []byte:
		return "a byte string"
	}
	return fmt.Sprintf("a value of type %T", v)
}

// The keys each object may have, in wire order.
var (
	linkEventKeys = []string{"v", "type", "host", "boot", "seq", "time", "dump", "changed", "link"}
	addrEventKeys = []string{"v", "type", "host", "boot", "seq", "time", "dump", "changed", "addr"}
	syncKeys      = []string{"v", "type", "host", "boot", "seq", "time", "reason", "interface", "links", "addrs", "first_seq"}
	linkKeys      = []string{"index", "name", "kind", "state", "enabled", "running", "mtu", "mac", "master", "parent", "alias", "carrier", "flags"}
	addrKeys      = []string{"index", "id", "ifname", "family", "address", "peer", "prefix_len", "broadcast", "scope", "label", "flags", "valid_lft", "preferred_lft"}
)

// eventOf turns a parsed message into an event.
func eventOf(doc map[string]any) (event.Event, error) {
	var d decoder
	top := object{m: doc}
	var ev event.Event
	if v := d.uint(top, "v", math.MaxUint64); d.err == nil && v != event.SchemaVersion {
		d.fail(top, "v", "schema version %d, want %d", v, event.SchemaVersion)
	}
	typ := d.str(top, "type")
	if d.err != nil {
		return ev, d.err
	}
	t, ok := event.ParseType(typ)
	switch {
	case t.IsLink():
		d.known(top, linkEventKeys)
	case t.IsAddr():
		d.known(top, addrEventKeys)
	case t == event.Sync:
		d.known(top, syncKeys)
	default:
		ok = false
	}
	if !ok {
		d.fail(top, "type", "unknown type %s", describe(typ))
		return ev, d.err
	}
	ev.Type = t
	ev.Host = d.str(top, "host")
	ev.Boot = d.str(top, "boot")
	ev.Seq = d.uint(top, "seq", math.MaxUint64)
	ev.Time = d.time(top, "time")
	if t == event.Sync {
		ev.Sync.Reason = event.Reason(d.str(top, "reason"))
		ev.Sync.Interface, _ = d.optStr(top, "interface")
		ev.Sync.Links = d.int(top, "links")
		ev.Sync.Addrs = d.int(top, "addrs")
		ev.Sync.FirstSeq = d.uint(top, "first_seq", math.MaxUint64)
	} else {
		ev.Dump = d.boolean(top, "dump")
		changed := &linkFieldNames
		if t.IsAddr() {
			changed = &addrFieldNames
		}
		if _, ok := top.m["changed"]; ok {
			ev.Changed = d.bits(top, "changed", changed)
		}
		if t.IsLink() {
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
	l.Name = d.str(o, "name")
	l.Kind = d.str(o, "kind")
	l.State = event.OperState(d.named(o, "state", &stateNames))
	enabled := d.boolean(o, "enabled")
	running := d.boolean(o, "running")
	l.MTU = uint32(d.uint(o, "mtu", math.MaxUint32))
	if s, ok := d.optStr(o, "mac"); ok {
		if l.MAC, ok = parseMAC(s); !ok {
			d.fail(o, "mac", "want a MAC address in lower-case hex with colons, got %s", describe(s))
		}
	}
	l.Master = uint32(d.optUint(o, "master", math.MaxUint32, 0))
	l.Parent = uint32(d.optUint(o, "parent", math.MaxUint32, 0))
	l.Alias, _ = d.optStr(o, "alias")
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
	a.Ifname = d.str(o, "ifname")
	switch f := d.str(o, "family"); {
	case d.err != nil:
		return
	case f == "inet":
		a.Family = event.Inet
	case f == "inet6":
		a.Family = event.Inet6
	default:
		d.fail(o, "family", "want \"inet\" or \"inet6\", got %s", describe(f))
		return
	}
	a.Address = d.ip(o, "address", true, a.Family)
	a.Peer = d.ip(o, "peer", false, a.Family)
	a.PrefixLen = uint8(d.uint(o, "prefix_len", math.MaxUint8))
	if d.err == nil && int(a.PrefixLen) > a.Address.BitLen() {
		d.fail(o, "prefix_len", "%d is longer than an %v address", a.PrefixLen, a.Family)
	}
	if _, ok := o.m["broadcast"]; ok && a.Family != event.Inet {
		d.fail(o, "broadcast", "only inet addresses have one")
	}
	a.Broadcast = d.ip(o, "broadcast", false, event.Inet)
	a.Scope = d.named(o, "scope", &scopeNames)
	a.Label, _ = d.optStr(o, "label")
	a.Flags = d.bits(o, "flags", addrFlagNames(a.Family))
	a.ValidLft = uint32(d.optUint(o, "valid_lft", math.MaxUint32, uint64(event.Forever)))
	a.PreferredLft = uint32(d.optUint(o, "preferred_lft", math.MaxUint32, uint64(event.Forever)))
	// The id repeats the fields that identify the address; an event holds
	// them once.
	if d.err == nil && id != a.ID() {
		d.fail(o, "id", "is %s, but the address is %s", describe(id), describe(a.ID()))
	}
}

// decoder reads the members of a message's objects and keeps the first
// error, so that the code reads the message in wire order without an error
// check after each member; once it has failed, its methods return zero
// values.
type decoder struct {
	err error
}

// object is one object of a message, with its path for errors: "" for the
// message, "link." or "addr." for the object it carries.
type object struct {
	path string
	m    map[string]any
}

func (d *decoder) fail(o object, key, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s%s: %s", o.path, key, fmt.Sprintf(format, args...))
	}
}

// known fails if o has a key that is not in keys, naming the first in
// sorted order so that the error is the same every time.
func (d *decoder) known(o object, keys []string) {
	var unknown []string
	for k := range o.m {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		d.fail(o, unknown[0], "unknown key")
	}
}

// value returns member key of o; a missing one fails when it is required.
func (d *decoder) value(o object, key string, required bool) (any, bool) {
	if d.err != nil {
		return nil, false
	}
	v, ok := o.m[key]
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
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(o, key, "want an object, got %s", describe(v))
	}
	return object{path: o.path + key + ".", m: m}, ok
}

func (d *decoder) str(o object, key string) string {
	v, ok := d.value(o, key, true)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(o, key, "want a string, got %s", describe(v))
	}
	return s
}

func (d *decoder) optStr(o object, key string) (string, bool) {
	if _, ok := o.m[key]; !ok {
		return "", false
	}
	return d.str(o, key), d.err == nil
}

func (d *decoder) boolean(o object, key string) bool {
	v, ok := d.value(o, key, true)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		d.fail(o, key, "want true or false, got %s", describe(v))
	}
	return b
}

// uint reads an integer from 0 to max.
func (d *decoder) uint(o object, key string, max uint64) uint64 {
	v, ok := d.value(o, key, true)
	if !ok {
		return 0
	}
	var u uint64
	switch v := v.(type) {
	case json.Number:
		var err error
		u, err = strconv.ParseUint(string(v), 10, 64)
		ok = err == nil
	case uint64:
		u = v
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
	if _, ok := o.m[key]; !ok {
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
	switch v := v.(type) {
	case json.Number:
		var err error
		i, err = strconv.ParseInt(string(v), 10, strconv.IntSize)
		ok = err == nil
	case int64:
		i = v
		ok = v >= math.MinInt && v <= math.MaxInt
	case uint64:
		i = int64(v)
		ok = v <= math.MaxInt
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
	ok := len(s) == len(timeShape)
	for i := 0; ok && i < len(s); i++ {
		if timeShape[i] == '0' {
			ok = '0' <= s[i] && s[i] <= '9'
		} else {
			ok = s[i] == timeShape[i]
		}
	}
	var t time.Time
	if ok {
		var err error
		t, err = time.Parse(timeLayout, s)
		ok = err == nil
	}
	if !ok {
		d.fail(o, key, "want a UTC time such as %q, got %s", "2026-11-27T08:36:28.362064595Z", describe(s))
	}
	return t
}

// named reads a state or scope: a name from table, or its number.
func (d *decoder) named(o object, key string, table *[256]string) uint8 {
	s := d.str(o, key)
	if d.err != nil {
		return 0
	}
	if i := slices.Index(table[:], s); i >= 0 {
		return uint8(i)
	}
	// The names of the table's first entries, written as numbers.
	if u, err := strconv.ParseUint(s, 10, 8); err == nil && strconv.FormatUint(u, 10) == s {
		return uint8(u)
	}
	d.fail(o, key, "unknown name %s", describe(s))
	return 0
}

// bits reads an array of names of bits, each one a name from names (by bit
// number) or "0x" and the bit in lower-case hex, and returns the bits.
func (d *decoder) bits(o object, key string, names *[32]string) uint32 {
	v, ok := d.value(o, key, true)
	if !ok {
		return 0
	}
	list, ok := v.([]any)
	if !ok {
		d.fail(o, key, "want an array of names, got %s", describe(v))
		return 0
	}
	var set uint32
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			d.fail(o, key, "item %d: want a name, got %s", i, describe(x))
			return 0
		}
		bit, ok := bitOf(s, names)
		switch {
		case !ok:
			d.fail(o, key, "unknown name %s", describe(s))
			return 0
		case set&bit != 0:
			d.fail(o, key, "%s repeats a bit already named", describe(s))
			return 0
		}
		set |= bit
	}
	return set
}

// bitOf returns the bit that s names.
func bitOf(s string, names *[32]string) (uint32, bool) {
	if hex, ok := strings.CutPrefix(s, "0x"); ok {
		u, err := strconv.ParseUint(hex, 16, 32)
		// One bit, written as the encoders write it.
		if err != nil || bits.OnesCount64(u) != 1 || strconv.FormatUint(u, 16) != hex {
			return 0, false
		}
		return uint32(u), true
	}
	if i := slices.Index(names[:], s); i >= 0 {
		return 1 << i, true
	}
	return 0, false
}

// ip reads an address of family f, without a zone.
func (d *decoder) ip(o object, key string, required bool, f event.Family) netip.Addr {
	if _, ok := o.m[key]; !ok && !required {
		return netip.Addr{}
	}
	s := d.str(o, key)
	if d.err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		d.fail(o, key, "want an IP address, got %s", describe(s))
	case a.Zone() != "":
		d.fail(o, key, "%s has a zone", describe(s))
	case !inFamily(a, f):
		d.fail(o, key, "%s is not an %v address", describe(s), f)
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
