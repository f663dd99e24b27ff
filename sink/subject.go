package sink

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/nlbridge/nlbridge/event"
)

const hexDigits = "0123456789ABCDEF"

// tokenSafe reports whether b stays as it is in a token.
func tokenSafe(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

// EscapeToken turns s (a host or interface name) into one NATS subject
// token: bytes in [A-Za-z0-9_-] stay, every other byte becomes '=' and two
// upper-case hex digits, and so does a leading '_' (so "eth0.100" becomes
// "eth0=2E100"). The result is a valid NATS token and JetStream KV key, and
// tokens beginning with '_' are left free for names nlbridge makes up. An
// empty s gives an empty token.
func EscapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) || i == 0 && s[i] == '_' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(appendToken(make([]byte, 0, len(s)+2*n), s))
}

// appendToken appends the escaped form of s to b.
func appendToken(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) && (i > 0 || c != '_') {
			b = append(b, c)
			continue
		}
		b = append(b, '=', hexDigits[c>>4], hexDigits[c&0xF])
	}
	return b
}

// ErrBadToken is wrapped by UnescapeToken's errors.
var ErrBadToken = errors.New("not an escaped token")

// UnescapeToken reverses EscapeToken. It rejects anything EscapeToken
// cannot produce, so that every name has exactly one token.
func UnescapeToken(tok string) (string, error) {
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '_' && i == 0:
			return "", fmt.Errorf("%w: %q starts with '_'", ErrBadToken, tok)
		case tokenSafe(c):
			b = append(b, c)
		case c == '=':
			if i+2 >= len(tok) {
				return "", fmt.Errorf("%w: %q ends inside an escape", ErrBadToken, tok)
			}
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("%w: %q has a bad escape at byte %d", ErrBadToken, tok, i)
			}
			v := byte(hi<<4 | lo)
			if tokenSafe(v) && (len(b) > 0 || v != '_') {
				return "", fmt.Errorf("%w: %q escapes %q, which needs no escape", ErrBadToken, tok, v)
			}
			b = append(b, v)
			i += 2
		default:
			return "", fmt.Errorf("%w: %q has byte %q", ErrBadToken, tok, c)
		}
	}
	return string(b), nil
}

// unhex decodes an upper-case hex digit, or returns -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Subjects builds the subjects nlbridge publishes on and listens to.
type Subjects struct {
	prefix  string // events: <prefix>.<host>.…
	control string // requests: <control>.<host>.dump and <control>.dump
	host    string // the host, escaped
}

// NewSubjects returns the subjects for host under the given prefixes, which
// config has validated.
func NewSubjects(prefix, control, host string) Subjects {
	return Subjects{prefix: prefix, control: control, host: EscapeToken(host)}
}

// Append appends the subject of ev to b: <prefix>.<host>.link.<ifname>.new
// or .del, <prefix>.<host>.addr.<ifname>.new or .del, <prefix>.<host>.sync.
// An address whose interface name nlbridge never learned uses the token
// "_<index>", which no escaped name can be.
func (s Subjects) Append(b []byte, ev *event.Event) []byte {
	b = append(b, s.prefix...)
	b = append(b, '.')
	b = append(b, s.host...)
	var name string
	var index uint32
	switch {
	case ev.Type.IsLink():
		b = append(b, ".link."...)
		name, index = ev.Link.Name, ev.Link.Index
	case ev.Type.IsAddr():
		b = append(b, ".addr."...)
		name, index = ev.Addr.Ifname, ev.Addr.Index
	default:
		return append(b, ".sync"...)
	}
	if name == "" {
		b = append(b, '_')
		b = strconv.AppendUint(b, uint64(index), 10)
	} else {
		b = appendToken(b, name)
	}
	if ev.Type.IsDel() {
		return append(b, ".del"...)
	}
	return append(b, ".new"...)
}

// Sync returns the subject of the SYNC markers.
func (s Subjects) Sync() string { return s.prefix + "." + s.host + ".sync" }

// Events returns the wildcard that matches every event of this host.
func (s Subjects) Events() string { return s.prefix + "." + s.host + ".>" }

// HostDump returns the subject on which this host answers dump requests.
func (s Subjects) HostDump() string { return s.control + "." + s.host + ".dump" }

// FleetDump returns the subject on which every host answers dump requests.
func (s Subjects) FleetDump() string { return s.control + ".dump" }
