// Package source reads the kernel's rtnetlink link and address events and
// decodes them into events. One goroutine owns the netlink socket: it reads
// multicast notifications and the replies to dump requests from that one
// socket, so that every message reaches the Handler in the order the kernel
// queued it. A consumer that applies the events in that order ends equal to
// the kernel.
package source

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nlbridge/nlbridge/event"
)

// Handler receives every event, in kernel order, from the goroutine that
// owns the socket. Handle must not keep ev after it returns and should not
// block: while it runs nothing is read from the kernel. It may stamp ev's
// Host, Boot, Seq and Sync.FirstSeq; Dump returns the SYNC event as the
// Handler left it.
type Handler interface {
	Handle(ev *event.Event)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ev *event.Event)

// Handle calls f(ev).
func (f HandlerFunc) Handle(ev *event.Event) { f(ev) }

// Config configures a Netlink source.
type Config struct {
	// NetNS is the path of the network namespace to watch, such as
	// /var/run/netns/blue. Empty means the namespace nlbridge runs in.
	NetNS string
	// ReceiveBuffer is the socket receive buffer in bytes. The kernel caps
	// it at net.core.rmem_max unless nlbridge has CAP_NET_ADMIN.
	ReceiveBuffer int
	// MinDumpInterval is the least time between the end of one dump and
	// the start of a requested one; see Netlink.Dump.
	MinDumpInterval time.Duration
	// Logger receives the source's logs; nil discards them.
	Logger *slog.Logger
}

// ErrClosed is returned by Dump when the source stops before the dump is
// complete.
var ErrClosed = errors.New("source: closed")

// ErrNoInterface is returned, wrapped, by Dump when the interface it is
// asked to dump does not exist, or vanished before its dump ran. It is
// event.ErrNoInterface, which the sink knows without knowing the source.
var ErrNoInterface = event.ErrNoInterface

// Stats are the source's counters since it was opened.
type Stats struct {
	Messages     uint64    // netlink messages read
	Events       uint64    // events handed to the Handler, SYNC markers included
	Skipped      uint64    // valid messages not published, such as bridge port notifications
	DecodeErrors uint64    // messages that could not be decoded and were skipped
	Foreign      uint64    // datagrams dropped because a process, not the kernel, sent them
	Overflows    uint64    // times kernel messages were lost: the kernel reported ENOBUFS, or a datagram did not fit the buffer
	Resyncs      uint64    // dumps made to recover from overflows
	Dumps        uint64    // completed dumps
	DumpRetries  uint64    // dumps restarted because the kernel interrupted them
	DumpFailures uint64    // dumps that failed: interrupted too often, or a kernel error
	Merged       uint64    // dump requests answered by a dump that another request started
	Delayed      uint64    // dump requests held back by the minimum interval between dumps
	LastEvent    time.Time // when the last event was read; zero before the first
	Running      bool      // Run is reading the socket
}

// counters are the atomic form of Stats: read by any goroutine, written by
// the one that owns the socket.
type counters struct {
	messages, events, skipped, decodeErrors atomic.Uint64
	foreign                                 atomic.Uint64
	overflows, resyncs, dumps, dumpRetries  atomic.Uint64
	dumpFailures                            atomic.Uint64
	merged, delayed                         atomic.Uint64
	lastEvent                               atomic.Int64 // Unix nanoseconds
	running                                 atomic.Bool
}

func (c *counters) stats() Stats {
	s := Stats{
		Messages:     c.messages.Load(),
		Events:       c.events.Load(),
		Skipped:      c.skipped.Load(),
		DecodeErrors: c.decodeErrors.Load(),
		Foreign:      c.foreign.Load(),
		Overflows:    c.overflows.Load(),
		Resyncs:      c.resyncs.Load(),
		Dumps:        c.dumps.Load(),
		DumpRetries:  c.dumpRetries.Load(),
		DumpFailures: c.dumpFailures.Load(),
		Merged:       c.merged.Load(),
		Delayed:      c.delayed.Load(),
		Running:      c.running.Load(),
	}
	if ns := c.lastEvent.Load(); ns != 0 {
		s.LastEvent = time.Unix(0, ns)
	}
	return s
}
