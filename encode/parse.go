package encode

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"sync"
)

// Decode reads a message in two steps, as encoding/json and fxamacker/cbor
// would read it into maps, but without their allocations: parseJSON or
// parseCBOR checks the syntax and reads the message into a tree of values
// (this file), then eventOf reads the event from the tree (decode.go).
// Strings in the tree are parts of one copy of the message, so reading it
// allocates that copy, escaped strings and nothing else.

// maxDepth is how deep a message nests: the event, its link or addr
// object, and their flags. Deeper documents are rejected as they are read,
// so that a hostile message cannot make the parser recurse far.
const maxDepth = 3

// maxValues bounds the values of a message, so that a hostile one cannot
// make the tree large. An event has fewer than 90: the message and its 9
// members, up to 32 names in changed, the 13 members of its link or addr
// and up to 32 flags.
const maxValues = 128

// valueKind is the type of a value, as both encodings have it.
type valueKind uint8

const (
	kindNull  valueKind = iota
	kindFalse           // the booleans are kinds of their own
	kindTrue
	kindString // str is the text
	kindNumber // a JSON number; str is its literal
	kindUint   // a CBOR unsigned integer, num
	kindNegInt // a CBOR negative integer, -1 - num
	kindFloat  // a CBOR float; num holds its float64 bits
	kindBytes  // a CBOR byte string
	kindSimple // a CBOR simple value other than false, true and null; num
	kindObject // a JSON object or CBOR map with text keys
	kindArray
)

// value is one value of a parsed message.
type value struct {
	kind valueKind
	key  string // the key of an object's member
	str  string
	num  uint64
	// Members of an object and items of an array are linked: first is the
	// index of the first, and next of each the index of the one after it;
	// 0 ends the list (index 0 is the message itself, no one's member).
	first, next int32
	// found is the member that get found last in this object, 0 for none.
	found int32
}

// tree is a parsed message; values[0] is the message itself.
type tree struct {
	values []value
	// open holds the containers being read, innermost last, each with its
	// last member so far (0 for none) and the keys it has, as bits of
	// keyBit.
	open [maxDepth]struct {
		index, last int32
		keys        uint64
	}
	// depth is how many are open; key is the key of the next member of
	// the innermost object, once it has been read.
	depth  int
	key    string
	keySet bool
}

// trees holds trees for reuse, with room for the values of most messages.
var trees = sync.Pool{New: func() any { return &tree{values: make([]value, 0, 48)} }}

func getTree() *tree { return trees.Get().(*tree) }

// release clears t, so that the pool holds on to no part of a message, and
// puts it back in the pool.
func (t *tree) release() {
	clear(t.values)
	t.values = t.values[:0]
	t.depth, t.key, t.keySet = 0, "", false
	trees.Put(t)
}

var errTooDeep = errors.New("nested too deeply")

// setKey sets the key of the next member of the innermost object; its
// value follows.
func (t *tree) setKey(key string) error {
	if t.depth == 0 || t.values[t.open[t.depth-1].index].kind != kindObject {
		return errors.New("a key outside an object") // the parsers never do this
	}
	// The members are compared only when one may have the same key.
	c := &t.open[t.depth-1]
	if bit := keyBit(key); c.keys&bit == 0 {
		c.keys |= bit
	} else {
		for i := t.values[c.index].first; i != 0; i = t.values[i].next {
			if t.values[i].key == key {
				return fmt.Errorf("duplicate key %s", quote(key))
			}
		}
	}
	t.key, t.keySet = key, true
	return nil
}

// keyBit returns one of 64 bits for a key, from a hash of it.
func keyBit(key string) uint64 {
	h := uint(len(key))
	for i := 0; i < len(key); i++ {
		h = h*31 + uint(key[i])
	}
	return 1 << (h % 64)
}

// inObject reports whether the next value is an object's member, whose key
// is read first.
func (t *tree) inObject() bool {
	return t.depth > 0 && t.values[t.open[t.depth-1].index].kind == kindObject
}

// add adds v as the next member or item of the innermost container, or as
// the message, and returns its index.
func (t *tree) add(v value) (int32, error) {
	if len(t.values) == maxValues {
		return 0, fmt.Errorf("more than %d values", maxValues)
	}
	if t.inObject() {
		if !t.keySet {
			return 0, errors.New("a value without a key") // the parsers never do this
		}
		v.key, t.key, t.keySet = t.key, "", false
	}
	i := int32(len(t.values))
	t.values = append(t.values, v)
	if t.depth > 0 {
		c := &t.open[t.depth-1]
		if c.last == 0 {
			t.values[c.index].first = i
		} else {
			t.values[c.last].next = i
		}
		c.last = i
	} else if i != 0 {
		return 0, errors.New("a second value") // the parsers never do this
	}
	return i, nil
}

// begin adds an object or array and opens it: the values added next are
// its members, until end.
func (t *tree) begin(kind valueKind) error {
	if t.depth == maxDepth {
		return errTooDeep
	}
	i, err := t.add(value{kind: kind})
	if err != nil {
		return err
	}
	t.open[t.depth].index, t.open[t.depth].last, t.open[t.depth].keys = i, 0, 0
	t.depth++
	return nil
}

// end closes the innermost container.
func (t *tree) end() error {
	if t.depth == 0 {
		return errors.New("an end outside a container") // the parsers never do this
	}
	t.depth--
	return nil
}

// object is one object of a message, with its path for errors: "" for the
// message, "link" or "addr" for the object it carries.
type object struct {
	path string
	t    *tree
	v    *value // the object, or an array for members
}

// get returns member key of o. The decoder asks for members mostly in
// wire order, so get looks first after the member it found last.
func (o object) get(key string) (*value, bool) {
	vals := o.t.values
	if o.v.first == 0 {
		return nil, false
	}
	from := o.v.first
	if f := o.v.found; f != 0 && vals[f].next != 0 {
		from = vals[f].next
	}
	for i := from; ; {
		if vals[i].key == key {
			o.v.found = i
			return &vals[i], true
		}
		if i = vals[i].next; i == 0 {
			i = o.v.first
		}
		if i == from {
			return nil, false
		}
	}
}

// members yields the members of o in wire order.
func (o object) members() iter.Seq[*value] {
	return func(yield func(*value) bool) {
		for i := o.v.first; i != 0; i = o.t.values[i].next {
			if !yield(&o.t.values[i]) {
				return
			}
		}
	}
}

// has reports whether o has member key.
func (o object) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// describe says what a value is, for errors.
func describe(v *value) string {
	switch v.kind {
	case kindNull:
		return "null"
	case kindFalse:
		return "false"
	case kindTrue:
		return "true"
	case kindString:
		return quote(v.str)
	case kindNumber:
		return truncate(v.str)
	case kindUint:
		return strconv.FormatUint(v.num, 10)
	case kindNegInt:
		if v.num == math.MaxUint64 {
			return "-18446744073709551616"
		}
		return "-" + strconv.FormatUint(v.num+1, 10)
	case kindFloat:
		return fmt.Sprintf("the floating-point number %v", math.Float64frombits(v.num))
	case kindBytes:
		return "a byte string"
	case kindSimple:
		return "the simple value " + strconv.FormatUint(v.num, 10)
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "a value of kind " + strconv.Itoa(int(v.kind))
}

// quote quotes s for an error, cut to its first 40 bytes.
func quote(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "…"
	}
	return strconv.Quote(s)
}

// truncate cuts s, which goes into an error, to its first 40 bytes.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
