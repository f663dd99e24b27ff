package encode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// cborDecMode checks that a message is one well-formed CBOR data item,
// without tags and nested no deeper than a message can be, with nothing
// after it.
var cborDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels: maxDepth + 1, // the least fxamacker/cbor allows; the tree allows maxDepth
		TagsMd:          cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic("encode: CBOR decoding options: " + err.Error())
	}
	return dm
}()

// parseCBOR reads one CBOR map with text keys into t. fxamacker/cbor checks
// that the data is well-formed; parseCBOR reads it, and rejects text that
// is not valid UTF-8 and keys that are not text. t checks for duplicate
// keys and limits depth and size. text is data as a string: t's strings
// are parts of it.
func parseCBOR(t *tree, text string, data []byte) error {
	if err := cborDecMode.Wellformed(data); err != nil {
		return err
	}
	r := cborReader{text: text}
	if err := r.value(t); err != nil {
		return err
	}
	if r.off != len(text) {
		return errors.New("data after the CBOR map") // Wellformed has checked
	}
	if v := &t.values[0]; v.kind != kindObject {
		return fmt.Errorf("the message is %s, not a map", describe(v))
	}
	return nil
}

// The major types of CBOR data items (RFC 8949, section 3.1).
const (
	cborUint = iota
	cborNegInt
	cborBytes
	cborText
	cborArray
	cborMap
	cborTag
	cborSimple // and floats
)

var cborTypeNames = [8]string{"an unsigned integer", "a negative integer", "a byte string", "a text string",
	"an array", "a map", "a tag", "a simple value or float"}

// cborIndefinite is the additional information of an item of indefinite
// length, and cborBreak the byte that ends it.
const (
	cborIndefinite = 31
	cborBreak      = 0xff
)

var errCBORTruncated = errors.New("truncated CBOR data") // Wellformed has checked

// cborReader reads well-formed CBOR. It still checks every length, so that
// it cannot panic whatever it is given.
type cborReader struct {
	text string
	off  int
}

// head reads the head of a data item: its major type, additional
// information and argument.
func (r *cborReader) head() (major, info byte, arg uint64, err error) {
	if r.off >= len(r.text) {
		return 0, 0, 0, errCBORTruncated
	}
	b := r.text[r.off]
	r.off++
	major, info = b>>5, b&0x1f
	switch {
	case info < 24:
		return major, info, uint64(info), nil
	case info <= 27:
		n := 1 << (info - 24)
		if len(r.text)-r.off < n {
			return 0, 0, 0, errCBORTruncated
		}
		var buf [8]byte
		copy(buf[8-n:], r.text[r.off:r.off+n])
		r.off += n
		return major, info, binary.BigEndian.Uint64(buf[:]), nil
	case info == cborIndefinite && major >= cborBytes && major <= cborMap, info == cborIndefinite && b == cborBreak:
		return major, info, 0, nil
	}
	return 0, 0, 0, fmt.Errorf("malformed CBOR head %#x", b)
}

// atBreak reports whether the next byte ends an item of indefinite length,
// and reads it if so.
func (r *cborReader) atBreak() bool {
	if r.off < len(r.text) && r.text[r.off] == cborBreak {
		r.off++
		return true
	}
	return false
}

// value reads a data item into t.
func (r *cborReader) value(t *tree) error {
	major, info, arg, err := r.head()
	if err != nil {
		return err
	}
	var v value
	switch major {
	case cborUint:
		v = value{kind: kindUint, num: arg}
	case cborNegInt:
		v = value{kind: kindNegInt, num: arg}
	case cborBytes, cborText:
		s, err := r.str(major, info, arg)
		if err != nil {
			return err
		}
		v = value{kind: kindString, str: s}
		if major == cborBytes {
			v = value{kind: kindBytes}
		}
	case cborArray, cborMap:
		return r.container(t, major, info, arg)
	case cborSimple:
		switch info {
		case 20:
			v.kind = kindFalse
		case 21:
			v.kind = kindTrue
		case 22:
			v.kind = kindNull
		case 25:
			v = value{kind: kindFloat, num: math.Float64bits(halfFloat(uint16(arg)))}
		case 26:
			v = value{kind: kindFloat, num: math.Float64bits(float64(math.Float32frombits(uint32(arg))))}
		case 27:
			v = value{kind: kindFloat, num: arg}
		case cborIndefinite:
			return errors.New("unexpected CBOR break") // Wellformed has checked
		default:
			v = value{kind: kindSimple, num: arg}
		}
	default:
		return fmt.Errorf("unexpected %s", cborTypeNames[major]) // tags: Wellformed has checked
	}
	_, err = t.add(v)
	return err
}

// container reads an array or a map, whose head has been read.
func (r *cborReader) container(t *tree, major, info byte, n uint64) error {
	kind := kindArray
	if major == cborMap {
		kind = kindObject
	}
	if err := t.begin(kind); err != nil {
		return err
	}
	for i := uint64(0); info == cborIndefinite || i < n; i++ {
		if info == cborIndefinite && r.atBreak() {
			break
		}
		if major == cborMap {
			if err := r.key(t); err != nil {
				return err
			}
		}
		if err := r.value(t); err != nil {
			return err
		}
	}
	return t.end()
}

// key reads a map key, which must be a text string.
func (r *cborReader) key(t *tree) error {
	major, info, arg, err := r.head()
	if err != nil {
		return err
	}
	if major != cborText {
		return fmt.Errorf("a map key is %s, not a text string", cborTypeNames[major])
	}
	s, err := r.str(major, info, arg)
	if err != nil {
		return err
	}
	return t.setKey(s)
}

// str reads the content of a byte or text string whose head has been read.
// Text must be valid UTF-8.
func (r *cborReader) str(major, info byte, n uint64) (string, error) {
	if info != cborIndefinite {
		if n > uint64(len(r.text)-r.off) {
			return "", errCBORTruncated
		}
		s := r.text[r.off : r.off+int(n)]
		r.off += int(n)
		if major == cborText && !utf8.ValidString(s) {
			return "", fmt.Errorf("text string %s is not valid UTF-8", quote(s))
		}
		return s, nil
	}
	// Chunks of definite length, of the same type, up to a break.
	var b strings.Builder
	for !r.atBreak() {
		m, info, n, err := r.head()
		if err != nil {
			return "", err
		}
		if m != major || info == cborIndefinite {
			return "", errors.New("malformed CBOR string chunk") // Wellformed has checked
		}
		s, err := r.str(major, info, n)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// halfFloat returns the value of an IEEE 754 half-precision float, as RFC
// 8949, appendix D, decodes it.
func halfFloat(h uint16) float64 {
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(mant, -24)
	case 31:
		f = math.Inf(1)
		if mant != 0 {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}
