package encode

import (
	"unicode/utf8"

	"github.com/nlbridge/nlbridge/event"
)

// JSON encodes events as JSON objects with the keys in a fixed order. Its
// zero value is ready to use and it is safe for concurrent use.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Append appends ev as one JSON object, without a trailing newline.
func (JSON) Append(dst []byte, ev *event.Event) ([]byte, error) {
	if err := check(ev); err != nil {
		return dst, err
	}
	w := writer{buf: dst}
	w.appendEvent(ev)
	return w.buf, nil
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
