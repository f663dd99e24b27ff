//go:build linux

package source

import (
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// What the external tests (BenchmarkPipeline, in package source_test so
// that it may import the sink, which imports this package) need.

// The attributes that PatchAttr may set.
const (
	IflaMTU  = iflaMTU
	IfaFlags = ifaFlags
)

// NewReader returns a source with no socket, whose Datagram hands on what
// a datagram holds.
func NewReader() *Netlink {
	return &Netlink{dec: newDecoder(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Datagram splits a datagram into its messages and hands them to h, as
// Run does.
func (n *Netlink) Datagram(b []byte, now time.Time, h Handler, ev *event.Event) {
	n.datagram(b, now, h, ev)
}

// PatchAttr sets the 32-bit attribute typ of the netlink message in b, whose
// attributes start at off, to v. It does nothing to messages of other kinds.
func PatchAttr(tb testing.TB, b []byte, off int, typ uint16, v uint32) {
	tb.Helper()
	wantType := uint16(rtmNewLink)
	if typ == ifaFlags {
		wantType = rtmNewAddr
	}
	if binary.NativeEndian.Uint16(b[4:6]) != wantType {
		return
	}
	a := attrs{b: b[off:]}
	for a.next() {
		if a.typ == typ && len(a.data) == 4 {
			binary.NativeEndian.PutUint32(a.data, v)
			return
		}
	}
	tb.Fatalf("no attribute %d in the captured message", typ)
}
