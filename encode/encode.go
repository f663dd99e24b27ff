// Package encode turns events into the bytes of NATS messages.
//
// Two wire formats carry the same document: JSON (encode.JSON) and CBOR
// (encode.CBOR). Both write the same keys in the same order with the same
// values, as described by the JSON Schema in package schema: times and IP
// addresses are text in both, and strings that are not valid UTF-8 have each
// bad byte replaced by U+FFFD, as encoding/json does.
//
// Both encoders append to a caller's buffer. JSON writes the bytes itself
// and allocates nothing when the buffer has room; CBOR has
// fxamacker/cbor/v2 encode structs that mirror the message and allocates
// only the few strings it formats.
package encode

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// Encoder turns an event into the bytes of one NATS message. Encoders are
// safe for concurrent use.
type Encoder interface {
	// ContentType is the media type of the messages, for a Content-Type
	// header: "application/json" or "application/cbor".
	ContentType() string
	// Append appends the encoding of ev to dst and returns the extended
	// slice, so that the caller can reuse one buffer for every message. On
	// error it returns dst unchanged and an error wrapping ErrInvalidEvent.
	Append(dst []byte, ev *event.Event) ([]byte, error)
}

var (
	_ Encoder = JSON{}
	_ Encoder = CBOR{}
)

// ErrInvalidEvent is wrapped by the errors Append returns for an event that
// has no valid encoding, such as one of an unknown type; encoding the next
// event is unaffected.
var ErrInvalidEvent = errors.New("encode: invalid event")

// New returns the encoder for a format name as it appears in configuration:
// "json" or "cbor".
func New(name string) (Encoder, error) {
	switch name {
	case "json":
		return JSON{}, nil
	case "cbor":
		return CBOR{}, nil
	}
	return nil, fmt.Errorf("encode: unknown format %q, want \"json\" or \"cbor\"", name)
}

// check reports why ev cannot be encoded, before anything is written, so
// that a failed Append leaves no partial message behind. Everything it
// rejects would otherwise produce a message the schema rejects.
func check(ev *event.Event) error {
	switch {
	case ev.Type.IsLink(), ev.Type == event.Sync:
	case ev.Type.IsAddr():
		if err := checkAddr(&ev.Addr); err != nil {
			return fmt.Errorf("%w: %v: %w", ErrInvalidEvent, ev.Type, err)
		}
	default:
		return fmt.Errorf("%w: unknown type %v", ErrInvalidEvent, ev.Type)
	}
	// RFC 3339 has four-digit years; time.Time.MarshalJSON refuses the
	// others in the same way.
	if ev.Time.Before(minTime) || !ev.Time.Before(maxTime) {
		return fmt.Errorf("%w: %v: time %v has a year outside 0-9999", ErrInvalidEvent, ev.Type, ev.Time)
	}
	return nil
}

// The range of times that have four-digit years.
var (
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

func checkAddr(a *event.Addr) error {
	if a.Family != event.Inet && a.Family != event.Inet6 {
		return fmt.Errorf("unknown address family %v", a.Family)
	}
	if !a.Address.IsValid() {
		return errors.New("no address")
	}
	if !inFamily(a.Address, a.Family) {
		return fmt.Errorf("address %v is not %v", a.Address, a.Family)
	}
	if a.Peer.IsValid() && !inFamily(a.Peer, a.Family) {
		return fmt.Errorf("peer %v is not %v", a.Peer, a.Family)
	}
	if a.Broadcast.IsValid() && (a.Family != event.Inet || !a.Broadcast.Is4()) {
		return fmt.Errorf("broadcast %v on %v address", a.Broadcast, a.Family)
	}
	if n := a.Address.BitLen(); int(a.PrefixLen) > n {
		return fmt.Errorf("prefix length %d is longer than %d", a.PrefixLen, n)
	}
	return nil
}

func inFamily(ip netip.Addr, f event.Family) bool {
	if f == event.Inet {
		return ip.Is4()
	}
	return ip.Is6()
}
