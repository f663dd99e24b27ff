package encode

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/nlbridge/nlbridge/event"
)

// CBOR encodes events as CBOR (RFC 8949) maps with the same text keys, in
// the same order, and the same values as JSON; times and IP addresses are
// text strings, not tagged values. Lengths are definite and integers take
// their shortest form, so the output is what fxamacker/cbor writes for the
// equivalent struct. Its zero value is ready to use and it is safe for
// concurrent use.
//
// CBOR writes the few kinds of head the messages need itself rather than
// going through a general encoder; see BenchmarkCBORLinkReflect for the
// difference.
type CBOR struct{}

// ContentType returns "application/cbor".
func (CBOR) ContentType() string { return "application/cbor" }

// Append appends ev as one CBOR map.
func (CBOR) Append(dst []byte, ev *event.Event) ([]byte, error) {
	if err := check(ev); err != nil {
		return dst, err
	}
	w := writer{buf: dst, cbor: true}
	w.appendEvent(ev)
	return w.buf, nil
}

// appendHead appends the head of a data item of the given major type with
// argument n, in its shortest form (RFC 8949, section 3).
func appendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return append(dst, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), n)
}

// appendCBORString appends s as a text string. CBOR text must be valid
// UTF-8, so each byte that is not part of valid UTF-8 becomes U+FFFD, as in
// the JSON encoding.
func appendCBORString(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		dst = appendHead(dst, majorText, uint64(len(s)))
		return append(dst, s...)
	}
	n := 0
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			n += len(string(utf8.RuneError))
		} else {
			n += size
		}
		i += size
	}
	dst = appendHead(dst, majorText, uint64(n))
	start := 0
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = utf8.AppendRune(dst, utf8.RuneError)
			start = i + 1
		}
		i += size
	}
	return append(dst, s[start:]...)
}
