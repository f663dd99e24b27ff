//go:build linux

package source

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/event"
)

const (
	// groups are the multicast groups nlbridge joins: links, IPv4 and IPv6
	// addresses. They are joined when the socket is bound, before any dump.
	groups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR

	// recvSize is the first receive buffer size. The kernel builds dump
	// replies of at most 32 KiB (more only for a single message larger
	// than that); a larger datagram from the kernel grows the buffer, up to
	// maxRecvSize, and one that does not fit even then is lost.
	recvSize    = 64 << 10
	maxRecvSize = 1 << 20

	// recvBatch is the most datagrams that one receive reads outside
	// dumps (see read). The buffers beyond the first take memory only
	// where the kernel writes: notifications are a few KiB.
	recvBatch = 8

	// rtextFilterSkipStats asks the kernel to leave the interface counters
	// out of link dumps: nlbridge does not publish them, and they are the
	// largest attributes of a link message.
	rtextFilterSkipStats = 1 << 3

	// retryBase and retryCap bound the backoff before a failed startup or
	// resync dump is tried again: it doubles from retryBase to retryCap.
	retryBase = 100 * time.Millisecond
	retryCap  = 3 * time.Second
)

// maxDumpAttempts bounds the attempts of a dump that the kernel keeps
// interrupting (NLM_F_DUMP_INTR) because the tables change under it; then
// the dump fails (and a startup or resync dump is tried again later). A
// variable so that tests can lower it.
var maxDumpAttempts = 10

// recvMode lets tests and benchmarks override how recv makes its system
// call: recvAuto chooses (see recv), recvAlwaysRaw is how every receive was
// made before (so that the stall it caused can be measured against), and
// recvNeverRaw tells the scheduler every time.
var recvMode = recvAuto

const (
	recvAuto = iota
	recvAlwaysRaw
	recvNeverRaw
)

// Netlink is the rtnetlink source: one socket that has joined the link and
// address groups, from which Run reads events and the replies to the dumps
// that Dump asks for. Run, Dump and Stats may be called concurrently; Close
// is called after Run has returned.
type Netlink struct {
	conn *netlink.Conn   // the one socket: notifications and dump replies
	raw  syscall.RawConn // conn's descriptor, read directly into buf
	pid  uint32          // conn's port ID, the destination of our dump replies
	look *netlink.Conn   // a second socket, in no group: Dump asks it whether an interface exists
	log  *slog.Logger
	c    counters

	// dumping is set before a dump request is sent, and cleared when the
	// kernel has ended every dump it ran for us: while the kernel runs one,
	// a receive may continue it, and sleep (see recv).
	dumping atomic.Bool

	// The receive buffers and recvmmsg's vector, reused; owned by Run.
	buf   []byte                             // the first buffer; every buffer has its length
	bufs  [recvBatch][]byte                  // the buffers of a batch; bufs[0] is buf
	iovs  [recvBatch]unix.Iovec              // one for each buffer
	froms [recvBatch]unix.RawSockaddrNetlink // the datagrams' senders
	msgs  [recvBatch]unix.Mmsghdr            // the vector, with each datagram's size
	dec   *decoder                           // owned by Run

	minInterval time.Duration // least time from a dump's end to a requested one's start

	mu        sync.Mutex
	running   bool        // Run has started
	closed    bool        // Run has returned: Dump fails at once
	active    *dump       // the dump in progress, nil when none
	queued    []*dumpReq  // requests waiting for the next dump, which answers them all
	lastEnd   time.Time   // when the last dump ended
	holdUntil time.Time   // no dump starts before: the backoff after a failed repair
	failures  int         // startup or resync dumps failed in a row
	timer     *time.Timer // starts the queued requests once they may start
	timerAt   time.Time   // when timer fires
	closing   sync.Once   // Close is idempotent
	closeEr   error       // the first Close's result
}

// dumpReq is one caller of Dump waiting for a complete dump, or a resync
// that nlbridge asked for itself.
type dumpReq struct {
	reason event.Reason
	iface  string          // the interface the caller asked for, or ""
	done   chan dumpResult // buffered: the reader never blocks on it
	again  bool            // queued again after its dump failed
}

type dumpResult struct {
	ev  event.Event
	err error
}

// dump is the state of the dump in progress: links first, then addresses.
// A narrowed dump (iface set) asks for its link by name and then for that
// link's addresses only.
type dump struct {
	reqs   []*dumpReq   // every caller that this dump answers; n.mu guards it
	reason event.Reason // startup, request or resync: what the sink publishes
	iface  string       // the interface it is narrowed to, or ""
	begun  bool         // a message of it has been read: no request may join; n.mu guards it

	// The rest is owned by Run once the dump has started.
	told     bool   // Begin has been handed on for the current attempt
	typ      uint16 // rtmGetLink or rtmGetAddr: the request in flight
	seq      uint32 // its netlink sequence number
	index    uint32 // the narrowed dump's link index, from the kernel's reply
	intr     bool   // the kernel flagged a message NLM_F_DUMP_INTR
	stale    uint32 // seq of an abandoned attempt whose replies may still come, or 0
	busy     bool   // the kernel refused this attempt (EBUSY) while stale runs: ask again when it ends
	attempts int
	links    int
	addrs    int
}

// Open opens the netlink socket in the configured namespace and joins the
// link and address groups, so that no change is lost between Open and the
// first dump. It needs no privileges in nlbridge's own namespace; watching
// another namespace needs the right to enter it (CAP_SYS_ADMIN).
func Open(cfg Config) (*Netlink, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nc := &netlink.Config{Groups: groups}
	lc := &netlink.Config{}
	if cfg.NetNS != "" {
		f, err := openNetNS(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		nc.NetNS = int(f.Fd())
		lc.NetNS = nc.NetNS
	}
	conn, err := netlink.Dial(unix.NETLINK_ROUTE, nc)
	if err != nil {
		if cfg.NetNS != "" && errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("source: enter network namespace %s: %w (needs CAP_SYS_ADMIN)", cfg.NetNS, err)
		}
		return nil, fmt.Errorf("source: dial rtnetlink: %w", err)
	}
	// Strict checking makes the kernel honour the filters of dump requests:
	// a narrowed dump asks for the addresses of one link only.
	if err := conn.SetOption(netlink.GetStrictCheck, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("source: set NETLINK_GET_STRICT_CHK: %w", err)
	}
	look, err := netlink.Dial(unix.NETLINK_ROUTE, lc)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("source: dial rtnetlink for interface lookups: %w", err)
	}
	n := &Netlink{
		minInterval: cfg.MinDumpInterval,
		conn:        conn,
		pid:         conn.PID(),
		look:        look,
		log:         log,
		buf:         make([]byte, recvSize),
		dec:         newDecoder(),
	}
	if n.raw, err = conn.SyscallConn(); err != nil {
		conn.Close()
		look.Close()
		return nil, fmt.Errorf("source: %w", err)
	}
	if cfg.ReceiveBuffer > 0 {
		if err := conn.SetReadBuffer(cfg.ReceiveBuffer); err != nil {
			conn.Close()
			look.Close()
			return nil, fmt.Errorf("source: set receive buffer to %d bytes: %w", cfg.ReceiveBuffer, err)
		}
		// The kernel reports twice what it grants (it counts overhead).
		if got, err := conn.ReadBuffer(); err == nil && got/2 < cfg.ReceiveBuffer {
			log.Warn("socket receive buffer is smaller than configured: raise net.core.rmem_max or grant CAP_NET_ADMIN",
				"want", cfg.ReceiveBuffer, "got", got/2)
		}
	}
	return n, nil
}

// openNetNS opens a network namespace file and checks that it is one: the
// kernel says which kind of namespace a file is (NS_GET_NSTYPE, Linux 4.11),
// so neither another file of /proc nor a namespace of another type passes.
func openNetNS(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("source: open network namespace: %w", err)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		f.Close()
		what := "not a namespace"
		switch {
		case err != nil && !errors.Is(err, unix.ENOTTY):
			what = err.Error()
		case err == nil:
			what = "a namespace of another type"
		}
		return nil, fmt.Errorf("source: %s is not a network namespace (%s; want a file such as /var/run/netns/NAME or /proc/PID/ns/net)", path, what)
	}
	return f, nil
}

// Run reads the socket and hands every event to h until ctx is cancelled,
// when it returns nil. A message it cannot decode is counted, logged and
// skipped; a kernel overflow (ENOBUFS) is counted and answered with a dump.
// Any other receive error ends Run with that error. Run must be called once.
func (n *Netlink) Run(ctx context.Context, h Handler) error {
	n.mu.Lock()
	if n.running || n.closed {
		n.mu.Unlock()
		return errors.New("source: Run called twice")
	}
	n.running = true
	n.mu.Unlock()
	n.c.running.Store(true)
	defer n.c.running.Store(false)
	defer n.finish()

	// A deadline in the past unblocks a pending receive at once; nothing is
	// lost, as the receive returns before it reads anything.
	stop := context.AfterFunc(ctx, func() { _ = n.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var ev event.Event
	for {
		err := n.read(ctx, h, &ev)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			n.overflow("the kernel dropped messages: socket receive buffer overflow")
			continue
		}
		return fmt.Errorf("source: receive: %w", err)
	}
}

// read receives datagrams and handles them until a receive fails, or ctx
// is done; then it returns the receive's error (the deadline Run sets when
// ctx is cancelled, or ENOBUFS after an overflow).
//
// It reads up to recvBatch datagrams with each recvmmsg(2), and handles
// them before the next, in one call of the descriptor's RawConn.Read, so
// that a socket found drained costs no read that finds it empty. A receive
// that returns fewer datagrams than it asked for found the socket empty
// (or failed, when the kernel keeps the error for the next receive): the
// reader then waits for the socket through the runtime's poller, which
// waits for an edge (EPOLLET). The kernel raises one after every datagram
// it queues, and after every error it sets, so whatever arrives after that
// receive wakes the reader, and whatever arrived while the reader handled
// the batch has already marked the descriptor ready, so that the wait
// returns at once. Nothing else reads the socket, and only a new Read
// (after an error) forgets that mark, so it first receives rather than
// waits. The datagrams of a batch are handled, and their messages handed
// to the NATS client, before the reader waits: its flusher writes them
// all with one write when the reader has nothing left to do.
func (n *Netlink) read(ctx context.Context, h Handler, ev *event.Event) error {
	var rerr error
	err := n.raw.Read(func(fd uintptr) bool {
		for {
			got, want, errno := n.recv(fd)
			switch errno {
			case 0:
			case unix.EAGAIN:
				return false
			case unix.EINTR:
				continue
			default:
				rerr = errno
				return true
			}
			for i := range got {
				n.handle(i, h, ev)
			}
			switch {
			case ctx.Err() != nil:
				return true
			case got < want:
				return false // drained: wait for the next edge
			}
		}
	})
	if err != nil {
		return err
	}
	return rerr
}

// handle checks and handles datagram i of the last receive.
func (n *Netlink) handle(i int, h Handler, ev *event.Event) {
	size := int(n.msgs[i].Len)
	// The sender first, whatever the size: a datagram that a process
	// sent changes nothing, however large it is.
	if pid := n.froms[i].Pid; pid != 0 {
		n.foreign(pid, size)
		return
	}
	b := n.bufs[i]
	if size > len(b) {
		n.truncated(b, size)
		return
	}
	now := time.Now()
	n.c.lastEvent.Store(now.UnixNano())
	n.datagram(b[:size], now, h, ev)
}

// recv reads datagrams into n.bufs and their senders into n.froms, without
// allocating: got of them, when it asked for want. Outside dumps it asks
// for up to recvBatch; during one, for one, as before batches were read
// (the buffers of a batch would each hold one of the kernel's 32 KiB dump
// replies). MSG_TRUNC makes the kernel report a datagram's real size in
// its Len, so a size larger than its buffer means that the datagram was
// truncated; the kernel fills its sender even then.
func (n *Netlink) recv(fd uintptr) (got, want int, errno syscall.Errno) {
	// Looked at before each call: a dump may have started while the
	// reader waited for the socket.
	dumping := n.dumping.Load()
	// MSG_DONTWAIT: the call never waits for data; an empty socket is
	// waited for through the runtime's poller. Outside our dumps it cannot
	// sleep at all (netlink_recvmsg dequeues and copies), so it is made
	// raw, without telling the scheduler, which would wake its monitor
	// thread (sysmon) once per event. But while the kernel runs a dump for
	// this socket, netlink_recvmsg continues it (netlink_dump) and may
	// sleep on the rtnl lock or a mutex for as long as another process
	// holds it: a raw call would hold the P meanwhile and, with GOMAXPROCS
	// 1, stop every goroutine (the NATS client, the metrics server, the
	// GC). So during dumps the scheduler is told. (A receive that races
	// with the start of a dump by another goroutine may still be raw.)
	raw := !dumping
	switch recvMode {
	case recvAlwaysRaw:
		raw = true
	case recvNeverRaw:
		raw = false
	}
	want = recvBatch
	if dumping {
		want = 1
	}
	n.bufs[0] = n.buf
	for i := range want {
		if len(n.bufs[i]) != len(n.buf) {
			n.bufs[i] = make([]byte, len(n.buf)) // the first time, or grown after a truncation
		}
		n.iovs[i] = unix.Iovec{Base: &n.bufs[i][0]}
		n.iovs[i].SetLen(len(n.bufs[i]))
		n.msgs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&n.froms[i])),
			Namelen: unix.SizeofSockaddrNetlink,
			Iov:     &n.iovs[i],
		}}
		n.msgs[i].Hdr.SetIovlen(1)
	}
	var r uintptr
	if raw {
		r, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&n.msgs[0])), uintptr(want),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	} else {
		r, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&n.msgs[0])), uintptr(want),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	}
	if errno != 0 {
		return 0, want, errno
	}
	return int(r), want, 0
}

// truncated handles a datagram from the kernel of size bytes that did not
// fit its buffer b, of which only the head was read: it grows the buffers
// (up to maxRecvSize) and
// counts what was lost. Outside a dump a notification was lost, which a
// resync repairs. During a dump, the lost messages may be the dump's, and
// a SYNC after them would make consumers delete what exists: the attempt is
// abandoned and the dump started again (as after NLM_F_DUMP_INTR). As the
// lost part may have held the kernel's NLMSG_DONE, the new request goes out
// at once; if the kernel refuses it (EBUSY: the old attempt still runs), it
// is sent again when the old attempt ends.
func (n *Netlink) truncated(b []byte, size int) {
	// The head read holds at least a header: whose the datagram was.
	pid := binary.NativeEndian.Uint32(b[12:16])
	seq := binary.NativeEndian.Uint32(b[8:12])
	had := len(b)
	if want := min(max(2*had, nlmsgAlign(size)), maxRecvSize); want > len(n.buf) {
		n.buf = make([]byte, want) // recv grows the others to match
	}
	why := fmt.Sprintf("a datagram of %d bytes from the kernel did not fit the %d byte buffer (now %d)", size, had, len(n.buf))

	n.mu.Lock()
	d := n.active
	if d == nil {
		n.mu.Unlock()
		n.overflow(why)
		return
	}
	n.c.overflows.Add(1)
	n.log.Warn("netlink overflow during a dump: messages were lost; the dump starts again", "cause", why)
	var err error
	resync := false
	switch {
	case pid == n.pid && seq == d.seq && !d.busy:
		// The current attempt's reply: abandon it.
		d.stale = d.seq
		err = n.retryLocked(d, "a reply was truncated")
	case pid == n.pid && seq == d.stale && d.busy:
		// The abandoned attempt still ran when we asked again, and its
		// NLMSG_DONE may have been in what was lost: ask again now.
		err = n.retryLocked(d, "a reply was truncated")
	case pid == n.pid && seq == d.stale:
		// The abandoned attempt's, before the kernel answered the
		// current request: if it refuses it, the abandoned attempt's
		// end comes after the refusal; if it accepts it, the abandoned
		// attempt has ended. Nothing to do either way.
	default:
		// A notification was lost: what the current attempt reads may
		// not include its change, so the attempt is read to its end and
		// then made again. A dump narrowed to one interface does not
		// cover the others: a resync follows it.
		d.intr = true
		resync = d.iface != ""
	}
	n.mu.Unlock()
	if err != nil {
		n.dumpFailed(d, err)
	}
	if resync {
		n.resync(why)
	}
}

// datagram splits one datagram into its messages and handles each.
func (n *Netlink) datagram(b []byte, now time.Time, h Handler, ev *event.Event) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			n.decodeError(fmt.Errorf("malformed datagram: message length %d with %d bytes left", l, len(b)))
			n.mu.Lock()
			dumping := n.active != nil
			n.mu.Unlock()
			if !dumping {
				// What the rest held is unknown: a notification may be
				// lost. (During a dump it is most likely the dump's, and
				// a resync would read the same again.)
				n.resync("a malformed netlink datagram was skipped")
			}
			return
		}
		m := netlink.Message{
			Header: netlink.Header{
				Length:   uint32(l),
				Type:     netlink.HeaderType(binary.NativeEndian.Uint16(b[4:6])),
				Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:8])),
				Sequence: binary.NativeEndian.Uint32(b[8:12]),
				PID:      binary.NativeEndian.Uint32(b[12:16]),
			},
			Data: b[unix.NLMSG_HDRLEN:l],
		}
		n.message(m, now, h, ev)
		b = b[min(nlmsgAlign(l), len(b)):]
	}
}

func nlmsgAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// message handles one netlink message: a notification, a dump reply, or
// the end or failure of a dump.
func (n *Netlink) message(m netlink.Message, now time.Time, h Handler, ev *event.Event) {
	n.c.messages.Add(1)
	n.mu.Lock()
	d := n.active
	if d != nil && d.stale != 0 && m.Header.PID == n.pid && m.Header.Sequence == d.stale {
		// A reply of an abandoned attempt: skipped. Once it ends, an
		// attempt that the kernel refused meanwhile is made again.
		var err error
		if t := m.Header.Type; t == netlink.Done || t == netlink.Error {
			d.stale = 0
			if d.busy {
				err = n.retryLocked(d, "")
			}
		}
		n.mu.Unlock()
		n.c.skipped.Add(1)
		if err != nil {
			n.dumpFailed(d, err)
		}
		return
	}
	isDump := d != nil && m.Header.PID == n.pid && m.Header.Sequence == d.seq
	if isDump && d.stale != 0 && m.Header.Type == netlink.Error && errors.Is(nlError(m.Data), unix.EBUSY) {
		// The kernel refused the new attempt: the abandoned one still
		// runs. Its end makes the attempt again.
		d.busy = true
		n.mu.Unlock()
		n.c.skipped.Add(1)
		return
	}
	if isDump {
		// From here on the dump may publish: a request arriving now has
		// not seen what it published before, so it waits for the next.
		d.begun = true
	}
	n.mu.Unlock()

	if isDump {
		if !d.told {
			// Before each attempt's first message: the sink restarts
			// its count at a Begin, so the SYNC counts the last attempt.
			d.told = true
			begin := event.Event{Type: event.Begin, Time: now,
				Sync: event.SyncInfo{Reason: d.reason, Interface: d.iface}}
			h.Handle(&begin)
		}
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			d.intr = true
		}
		switch m.Header.Type {
		case netlink.Done, netlink.Error:
			// NLMSG_DONE ends a dump; NLMSG_ERROR fails it or, with
			// error 0, acknowledges a narrowed dump's link request.
			n.dumpPartDone(d, nlError(m.Data), now, h)
			return
		}
	}

	*ev = event.Event{Time: now, Dump: isDump}
	err := n.dec.decode(m, ev)
	switch {
	case errors.Is(err, errSkip):
		n.c.skipped.Add(1)
		return
	case err != nil:
		n.decodeError(fmt.Errorf("%s: %w", m.Header.Type, err))
		if !isDump {
			// The change it announced is unknown, so consumers may no
			// longer match the kernel. A dump of the same object would
			// most likely fail again, so dump replies are not retried.
			n.resync("a notification could not be decoded")
		}
		return
	}
	if isDump {
		if ev.Type.IsLink() {
			d.links++
			if d.iface != "" && d.typ == rtmGetLink {
				d.index = ev.Link.Index // whose addresses come next
			}
		} else {
			d.addrs++
		}
	}
	n.c.events.Add(1)
	h.Handle(ev)
}

// nlError returns the errno that an NLMSG_ERROR or NLMSG_DONE carries.
func nlError(data []byte) error {
	if len(data) < 4 {
		return errors.New("short netlink error message")
	}
	if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
		return syscall.Errno(-e)
	}
	return nil
}

// dumpPartDone ends the links or addresses part of the dump in progress,
// or fails it with the kernel's error: after links it asks for addresses;
// after addresses it retries an interrupted dump or publishes the SYNC
// marker and answers the callers.
func (n *Netlink) dumpPartDone(d *dump, kerr error, now time.Time, h Handler) {
	if kerr != nil {
		err := fmt.Errorf("source: dump: %w", kerr)
		if d.iface != "" && errors.Is(kerr, unix.ENODEV) {
			err = fmt.Errorf("source: dump %s: %w", d.iface, ErrNoInterface) // gone since Dump looked
		}
		n.dumpFailed(d, err)
		return
	}
	n.mu.Lock()
	if d.typ == rtmGetLink {
		var err error
		if d.iface != "" && d.index == 0 {
			err = fmt.Errorf("source: dump %s: the kernel acknowledged but sent no link", d.iface)
		} else {
			err = n.requestLocked(d, rtmGetAddr)
		}
		n.mu.Unlock()
		if err != nil {
			n.dumpFailed(d, err)
		}
		return
	}
	if d.intr {
		err := n.retryLocked(d, "interrupted by a concurrent change")
		n.mu.Unlock()
		if err != nil {
			n.dumpFailed(d, err)
		}
		return
	}
	n.active = nil
	n.lastEnd = time.Now()
	n.failures, n.holdUntil = 0, time.Time{}
	if d.stale == 0 {
		n.dumping.Store(false) // the kernel has ended it: receives cannot sleep
	}
	resync := slices.ContainsFunc(d.reqs, isResync)
	n.mu.Unlock()

	// Counted before the SYNC is handed on, so that whoever sees the SYNC
	// (a consumer, then a scrape of the metrics) sees the counters too.
	n.c.dumps.Add(1)
	if resync {
		n.c.resyncs.Add(1)
	}
	marker := event.Event{Type: event.Sync, Time: now,
		Sync: event.SyncInfo{Reason: d.reason, Interface: d.iface, Links: d.links, Addrs: d.addrs}}
	n.c.events.Add(1)
	h.Handle(&marker)

	n.mu.Lock()
	defer n.mu.Unlock()
	if resync {
		n.log.Info("resync after lost notifications published", "reason", d.reason,
			"links", marker.Sync.Links, "addrs", marker.Sync.Addrs)
	}
	for _, r := range d.reqs {
		r.done <- dumpResult{ev: marker}
	}
	n.startQueuedLocked()
}

// retryLocked starts the dump d again from its first request, unless it
// has been attempted maxDumpAttempts times; why is logged, unless empty
// (the attempt was counted when it was abandoned). n.mu is held.
func (n *Netlink) retryLocked(d *dump, why string) error {
	if why != "" {
		d.attempts++
		if d.attempts >= maxDumpAttempts {
			return fmt.Errorf("source: dump attempted %d times in a row (last: %s): the kernel's tables keep changing", d.attempts, why)
		}
		n.c.dumpRetries.Add(1)
		n.log.Debug("dump retried", "why", why, "attempt", d.attempts)
	}
	d.intr, d.busy, d.told, d.index, d.links, d.addrs = false, false, false, 0, 0, 0
	return n.requestLocked(d, rtmGetLink)
}

// dumpFailed ends the dump in progress with err and moves on to the queued
// requests.
func (n *Netlink) dumpFailed(d *dump, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active == d {
		n.active = nil
		n.lastEnd = time.Now()
		if d.stale == 0 {
			// The kernel ended it with the error, or never started it.
			// (An abandoned attempt may still run: then the flag stays
			// until a dump ends cleanly.)
			n.dumping.Store(false)
		}
	}
	n.failedLocked(d, err)
	n.startQueuedLocked()
}

// failedLocked answers the requests of the failed dump d with err, and
// queues its startup or resync again, after a backoff: a repair is never
// given up while Run runs, or deletions lost in an overflow would never be
// published. n.mu is held.
func (n *Netlink) failedLocked(d *dump, err error) {
	var retry []*dumpReq
	for _, r := range d.reqs {
		if r.reason == event.ReasonRequest {
			r.done <- dumpResult{err: err}
		} else {
			r.again = true
			retry = append(retry, r)
		}
	}
	if errors.Is(err, ErrNoInterface) {
		n.log.Debug("narrowed dump: the interface is gone", "error", err)
		return
	}
	n.c.dumpFailures.Add(1)
	if len(retry) == 0 {
		n.log.Error("dump failed", "reason", d.reason, "interface", d.iface, "error", err)
		return
	}
	n.failures++
	delay := retryDelay(n.failures)
	n.holdUntil = time.Now().Add(delay)
	n.queued = append(retry, n.queued...)
	n.dedupResyncLocked()
	n.log.Error("dump failed: trying again", "reason", d.reason, "failures", n.failures, "in", delay, "error", err)
	n.armLocked(n.holdUntil)
}

// retryDelay is the wait before the next attempt at a repair that failed
// failures times in a row: it doubles from retryBase to retryCap, with
// jitter so that hosts failing together do not retry in lock step.
func retryDelay(failures int) time.Duration {
	d := min(retryBase<<min(max(failures-1, 0), 8), retryCap)
	return d/2 + rand.N(d/2+1)
}

// dedupResyncLocked keeps only the first of the queued resyncs: one dump
// repairs every loss before it. n.mu is held.
func (n *Netlink) dedupResyncLocked() {
	seen := false
	n.queued = slices.DeleteFunc(n.queued, func(r *dumpReq) bool {
		if r.reason != event.ReasonResync {
			return false
		}
		dup := seen
		seen = true
		return dup
	})
}

// startQueuedLocked starts one dump that answers every queued request,
// unless a dump is in progress, or the queue must wait: for the backoff
// after a failed repair, or, when only requests wait, for minInterval
// after the last dump. n.mu is held.
func (n *Netlink) startQueuedLocked() {
	if n.active != nil || len(n.queued) == 0 || n.closed {
		return
	}
	reason, iface := event.ReasonResync, n.queued[0].iface
	for _, r := range n.queued {
		switch {
		case r.reason == event.ReasonStartup:
			reason = r.reason
		case r.reason == event.ReasonRequest && reason == event.ReasonResync:
			reason = r.reason // a full request dump repairs as a resync does
		}
		if r.iface != iface {
			iface = "" // requests for different interfaces share a full dump
		}
	}
	at := n.holdUntil
	if reason == event.ReasonRequest && !slices.ContainsFunc(n.queued, isResync) {
		// Only requests wait: a resync or startup dump never waits for
		// minInterval, and the requests ride along.
		if end := n.lastEnd.Add(n.minInterval); end.After(at) {
			at = end
		}
	}
	if time.Until(at) > 0 {
		n.armLocked(at)
		return
	}
	reqs := n.queued
	n.queued = nil
	// Merged counts each request that rides along with another once: not
	// again when its failed dump is retried.
	fresh := 0
	for _, r := range reqs {
		if !r.again {
			fresh++
		}
	}
	if fresh == len(reqs) {
		fresh-- // one of them starts the dump
	}
	n.c.merged.Add(uint64(fresh))
	d := &dump{reqs: reqs, reason: reason, iface: iface}
	if err := n.requestLocked(d, rtmGetLink); err != nil {
		n.failedLocked(d, err)
		return
	}
	n.active = d
}

func isResync(r *dumpReq) bool { return r.reason == event.ReasonResync }

// armLocked has the queue looked at again at time at. n.mu is held.
func (n *Netlink) armLocked(at time.Time) {
	if n.timer != nil {
		if n.timerAt.Equal(at) {
			return
		}
		n.timer.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(at), func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.timer == t {
			n.timer = nil
		}
		n.startQueuedLocked()
	})
	n.timer, n.timerAt = t, at
}

// requestLocked sends the request typ for d. n.mu is held, so that the
// reader sees d.seq before it reads the first reply. A full dump asks for
// every link, then every address; a narrowed one asks for its link by name
// (not a dump: the kernel looks up that one link) and then for the
// addresses of that link's index only.
func (n *Netlink) requestLocked(d *dump, typ uint16) error {
	flags := netlink.Request | netlink.Dump
	var data []byte
	if typ == rtmGetLink {
		data = linkRequest(d.iface)
		if d.iface != "" {
			flags = netlink.Request | netlink.Acknowledge
		}
	} else {
		// struct ifaddrmsg, AF_UNSPEC: IPv4 and IPv6; ifa_index filters
		// (the socket has NETLINK_GET_STRICT_CHK), 0 is every link.
		data = make([]byte, unix.SizeofIfAddrmsg)
		binary.NativeEndian.PutUint32(data[4:], d.index)
	}
	n.dumping.Store(true) // before the kernel may start it
	sent, err := n.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags},
		Data:   data,
	})
	if err != nil {
		return fmt.Errorf("source: request dump: %w", err)
	}
	d.typ, d.seq = typ, sent.Header.Sequence
	return nil
}

// linkRequest is the body of an RTM_GETLINK: struct ifinfomsg, then
// IFLA_EXT_MASK and, to ask for one link by name, IFLA_IFNAME.
func linkRequest(name string) []byte {
	data := make([]byte, unix.SizeofIfInfomsg, unix.SizeofIfInfomsg+8+4+nlmsgAlign(len(name)+1))
	data = binary.NativeEndian.AppendUint16(data, 8)
	data = binary.NativeEndian.AppendUint16(data, unix.IFLA_EXT_MASK)
	data = binary.NativeEndian.AppendUint32(data, rtextFilterSkipStats)
	if name != "" {
		data = binary.NativeEndian.AppendUint16(data, uint16(4+len(name)+1))
		data = binary.NativeEndian.AppendUint16(data, unix.IFLA_IFNAME)
		data = append(data, name...)
		data = append(data, make([]byte, nlmsgAlign(len(name)+1)-len(name))...) // NUL and padding
	}
	return data
}

// Dump asks for a dump of links and addresses, of every interface or of
// the one named iface, and waits until every message of it and the SYNC
// marker that closes it have been handed to the Handler; it returns that
// marker as the Handler left it.
//
// A narrowed request for an interface that does not exist fails at once
// with ErrNoInterface. A request shares the dump in flight only if that
// dump covers it and has not read its first message yet, so that a reply
// never names messages published before the request arrived; otherwise it
// waits, and every request waiting when the next dump starts shares it: a
// dump of one interface if they all name the same one, else a full dump.
// Requests wait for minInterval after the last dump ended, unless a resync
// waits with them. A request whose ctx is done leaves the queue. A failed
// dump fails its requests; a startup dump (like the resyncs the source
// makes by itself) is tried again, with backoff, until it succeeds or Run
// returns. Dump needs Run to be running, or to be started, to make
// progress.
func (n *Netlink) Dump(ctx context.Context, reason event.Reason, iface string) (event.Event, error) {
	if iface != "" {
		if err := n.lookup(iface); err != nil {
			return event.Event{}, err
		}
	}
	r := &dumpReq{reason: reason, iface: iface, done: make(chan dumpResult, 1)}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return event.Event{}, ErrClosed
	}
	if a := n.active; a != nil && !a.begun && a.reason.Full() && reason.Full() && (a.iface == "" || a.iface == iface) {
		// Nothing of the dump in flight has been read, so the caller
		// receives all it publishes; what changes after the kernel took
		// its snapshot follows it in order.
		a.reqs = append(a.reqs, r)
		n.c.merged.Add(1)
	} else {
		if reason == event.ReasonRequest && n.active == nil && time.Since(n.lastEnd) < n.minInterval {
			n.c.delayed.Add(1)
		}
		n.queued = append(n.queued, r)
		n.startQueuedLocked()
	}
	n.mu.Unlock()
	select {
	case res := <-r.done:
		return res.ev, res.err
	case <-ctx.Done():
		n.drop(r)
		return event.Event{}, ctx.Err()
	}
}

// drop forgets a request whose caller has gone, so that the queue holds
// only requests that someone waits for.
func (n *Netlink) drop(r *dumpReq) {
	n.mu.Lock()
	defer n.mu.Unlock()
	is := func(q *dumpReq) bool { return q == r }
	n.queued = slices.DeleteFunc(n.queued, is)
	if a := n.active; a != nil {
		a.reqs = slices.DeleteFunc(a.reqs, is)
	}
	if len(n.queued) == 0 && n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
}

// lookup asks the kernel, on the lookup socket, whether the interface
// named exists.
func (n *Netlink) lookup(name string) error {
	_, err := n.look.Execute(netlink.Message{
		Header: netlink.Header{Type: rtmGetLink, Flags: netlink.Request},
		Data:   linkRequest(name),
	})
	switch {
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("source: dump %s: %w", name, ErrNoInterface)
	case err != nil:
		return fmt.Errorf("source: look up interface %s: %w", name, err)
	}
	return nil
}

// overflow records lost kernel messages and schedules a dump so that
// consumers get the current state again. The dump must start after the
// loss, so it never shares the one in flight; repeated overflows share one
// queued resync.
func (n *Netlink) overflow(why string) {
	n.c.overflows.Add(1)
	n.log.Warn("netlink overflow: events were lost; dumping again to publish what changed", "cause", why)
	n.queueResync()
}

// resync answers a notification that was lost in another way than an
// overflow with a dump, as overflow does.
func (n *Netlink) resync(why string) {
	n.log.Warn("a netlink notification was lost; dumping again to publish what changed", "cause", why)
	n.queueResync()
}

// queueResync queues a full dump with reason resync, unless one is queued
// and not started yet. The next dump to start answers it, whatever else
// waits, and starts without waiting for minInterval.
func (n *Netlink) queueResync() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.ContainsFunc(n.queued, isResync) {
		return
	}
	n.queued = append(n.queued, &dumpReq{reason: event.ReasonResync, done: make(chan dumpResult, 1)})
	n.startQueuedLocked()
}

// foreign counts a datagram that a process rather than the kernel sent to
// the socket, which is dropped: with CAP_NET_ADMIN over the namespace (in
// a user namespace of its own, for instance) a process can send to any
// netlink socket in it, and must not be able to forge events, nor make
// nlbridge grow its buffer or dump. The first is logged as a warning, later
// ones at debug level.
func (n *Netlink) foreign(pid uint32, size int) {
	level := slog.LevelDebug
	if n.c.foreign.Add(1) == 1 {
		level = slog.LevelWarn
	}
	n.log.Log(context.Background(), level, "dropped a netlink datagram that the kernel did not send (further ones are logged at debug level)",
		"sender_port", pid, "size", size)
}

// decodeError counts a message that could not be decoded. The first is
// logged as a warning, later ones at debug level so that a kernel that
// sends many cannot flood the log.
func (n *Netlink) decodeError(err error) {
	level := slog.LevelDebug
	if n.c.decodeErrors.Add(1) == 1 {
		level = slog.LevelWarn
	}
	n.log.Log(context.Background(), level, "skipped a netlink message that could not be decoded (further ones are logged at debug level)", "error", err)
}

// finish fails every pending dump once Run has returned.
func (n *Netlink) finish() {
	n.mu.Lock()
	n.closed = true
	if n.timer != nil {
		n.timer.Stop()
	}
	var reqs []*dumpReq
	if n.active != nil {
		reqs = append(reqs, n.active.reqs...)
		n.active = nil
	}
	reqs = append(reqs, n.queued...)
	n.queued = nil
	n.mu.Unlock()
	for _, r := range reqs {
		r.done <- dumpResult{err: ErrClosed}
	}
}

// Stats returns the source's counters.
func (n *Netlink) Stats() Stats { return n.c.stats() }

// Close closes the sockets. Call it after Run has returned; it is idempotent.
func (n *Netlink) Close() error {
	n.closing.Do(func() { n.closeEr = errors.Join(n.conn.Close(), n.look.Close()) })
	return n.closeEr
}
