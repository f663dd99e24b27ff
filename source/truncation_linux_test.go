//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"golang.org/x/sys/unix"
)

// waitQuiet waits until the kernel has sent no link or address
// notification in ns for a while: after creating links it sends some
// later, from its link watch work (up to a second on).
func waitQuiet(t *testing.T, ns *nstest.NS) {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: groups, NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		if _, err := c.Receive(); err != nil {
			return // quiet for 1.5 s (or the socket failed: nothing more to wait for)
		}
	}
	t.Fatal("the kernel kept sending notifications for 10 s")
}

// runSource runs src until the returned function is called, which stops
// Run (and is called at the latest when the test ends) so that the test
// may then look at what Run owned.
func runSource(t testing.TB, src *Netlink, h Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() { stop(); src.Close() })
	return stop
}

// sendTo sends b to the netlink port pid from a socket of its own in the
// namespace at path, as a process with CAP_NET_ADMIN over it could.
func sendTo(t *testing.T, path string, pid uint32, b []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	err = raw.Write(func(fd uintptr) bool {
		// Root may send datagrams larger than net.core.wmem_max.
		if sendErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*len(b)+4096); sendErr != nil {
			return true
		}
		sendErr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: pid})
		return !errors.Is(sendErr, unix.EAGAIN)
	})
	if err != nil || sendErr != nil {
		t.Fatalf("send %d bytes to port %d: %v %v", len(b), pid, err, sendErr)
	}
}

// TestIntegrationForgedDatagrams: datagrams that a process sends to the
// source's socket, a small NEWLINK and one of 4 MiB (larger than the
// receive buffer), are dropped and counted as foreign, whatever their
// size: no overflow, no resync dump, no larger buffer, nothing handed on.
func TestIntegrationForgedDatagrams(t *testing.T) {
	ns := nstest.New(t)
	src, err := Open(Config{NetNS: ns.Path, ReceiveBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	stop := runSource(t, src, rec)

	forged := notification(rtmNewLink, linkBytes(t, vethMessage())) // eth0.100
	huge := append(append([]byte(nil), forged...), notification(unix.NLMSG_NOOP, make([]byte, 4<<20))...)
	sendTo(t, ns.Path, src.pid, huge)
	sendTo(t, ns.Path, src.pid, forged)
	for deadline := time.Now().Add(5 * time.Second); src.Stats().Foreign < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v, want 2 foreign datagrams", src.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A kernel event after them: had they asked for a resync, it would
	// have started by the time this is read.
	a, _ := ns.AddVeth(t, "real0", "real1")
	rec.waitFor(t, "NEWLINK real0", func(ev *event.Event) bool { return ev.Type == event.NewLink && ev.Link.Index == a })
	time.Sleep(100 * time.Millisecond)
	stop()

	rec.mu.Lock()
	for _, ev := range rec.evs {
		if ev.Type.IsLink() && ev.Link.Name == "eth0.100" || ev.Type == event.Begin || ev.Type == event.Sync || ev.Dump {
			t.Errorf("handed on %v %+v: want only the kernel's notifications", ev.Type, ev.Link)
		}
	}
	rec.mu.Unlock()
	if s := src.Stats(); s.Foreign != 2 || s.Overflows != 0 || s.Resyncs != 0 || s.Dumps != 0 || s.DecodeErrors != 0 {
		t.Errorf("stats = %+v, want 2 foreign datagrams, no overflow, no dump, no decode error", s)
	}
	if len(src.buf) != recvSize {
		t.Errorf("receive buffer is %d bytes after forged datagrams, want %d as before", len(src.buf), recvSize)
	}
}

// TestIntegrationTruncatedDumpReply: a dump reply from the kernel that
// does not fit the receive buffer (here made tiny) loses messages of the
// dump, maybe its end. The dump must start again rather than end with a
// SYNC that lacks objects (which consumers would delete) or wait forever
// for an end that was lost; the stale replies of the abandoned attempt
// are not handed on as notifications; the buffer grows.
func TestIntegrationTruncatedDumpReply(t *testing.T) {
	for _, tt := range []struct {
		name  string
		pairs int
	}{
		// All the links fit one datagram, which is truncated. The
		// kernel (6.x) sends the end of link and address dumps
		// (NLMSG_DONE) in a datagram of its own, queued by the receive
		// that read the truncated one: the new request is accepted at
		// once, as it would be had the end been in what was lost.
		{"lo only", 0},
		{"one datagram", 1},
		// Many datagrams: the kernel refuses the new request (EBUSY)
		// while the abandoned attempt runs, and it is made once that
		// attempt has ended; a later datagram of the abandoned attempt
		// is truncated too.
		{"many datagrams", 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.New(t)
			ns.AddVethPairs(t, "p", tt.pairs)
			waitQuiet(t, ns) // only the dump's replies are to be read
			wantLinks, wantAddrs := kernelView(t, ns)

			src, err := Open(Config{NetNS: ns.Path, ReceiveBuffer: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			src.buf = make([]byte, 128) // before Run, which owns it
			var mu sync.Mutex
			v := newView()
			var short []string
			var notifications int
			stop := runSource(t, src, HandlerFunc(func(ev *event.Event) {
				mu.Lock()
				defer mu.Unlock()
				if ev.Type != event.Begin && ev.Type != event.Sync && !ev.Dump {
					notifications++
				}
				v.apply(ev)
				if ev.Type == event.Sync && (!maps.Equal(v.links, wantLinks) || !maps.Equal(v.addrs, wantAddrs)) {
					short = append(short, "SYNC with "+fmtCounts(len(v.links), len(v.addrs)))
				}
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			marker, err := src.Dump(ctx, event.ReasonStartup, "")
			if err != nil {
				t.Fatalf("Dump: %v (stats %+v)", err, src.Stats())
			}
			stop()
			s := src.Stats()
			t.Logf("stats %+v, buffer %d bytes", s, len(src.buf))
			if marker.Sync.Links != len(wantLinks) || marker.Sync.Addrs != len(wantAddrs) {
				t.Errorf("SYNC counts %d links, %d addresses; the kernel has %d and %d",
					marker.Sync.Links, marker.Sync.Addrs, len(wantLinks), len(wantAddrs))
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range short {
				t.Errorf("%s: a consumer would delete objects that exist (the kernel has %s)", e, fmtCounts(len(wantLinks), len(wantAddrs)))
			}
			for _, e := range v.countErrs {
				t.Error(e)
			}
			if notifications != 0 {
				t.Errorf("%d dump replies handed on as notifications", notifications)
			}
			if s.DumpRetries == 0 || s.Overflows == 0 || s.Dumps != 1 || s.DumpFailures != 0 {
				t.Errorf("stats = %+v: want the dump retried after an overflow, and completed once", s)
			}
			if len(src.buf) <= 128 {
				t.Errorf("receive buffer still %d bytes", len(src.buf))
			}
		})
	}
}

func fmtCounts(links, addrs int) string {
	return fmt.Sprintf("%d links and %d addresses", links, addrs)
}

// TestIntegrationTruncatedNotification: a notification from the kernel
// that does not fit the receive buffer, outside a dump, is a lost change:
// it is counted as an overflow and repaired with a resync.
func TestIntegrationTruncatedNotification(t *testing.T) {
	ns := nstest.New(t)
	src, err := Open(Config{NetNS: ns.Path, ReceiveBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	src.buf = make([]byte, 64) // before Run, which owns it
	var mu sync.Mutex
	v := newView()
	rec := newRecorder()
	runSource(t, src, HandlerFunc(func(ev *event.Event) {
		mu.Lock()
		v.apply(ev)
		mu.Unlock()
		rec.Handle(ev)
	}))
	ns.AddVeth(t, "va", "vb")
	sync := rec.waitFor(t, "SYNC resync", func(ev *event.Event) bool { return ev.Type == event.Sync })
	if sync.Sync.Reason != event.ReasonResync {
		t.Errorf("SYNC = %+v, want reason resync", sync.Sync)
	}
	if s := src.Stats(); s.Overflows == 0 {
		t.Errorf("stats = %+v, want an overflow", s)
	}
	links, addrs := kernelView(t, ns)
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(v.links, links) || !maps.Equal(v.addrs, addrs) {
		t.Errorf("after the resync a consumer holds links %v, addresses %v; the kernel has %v and %v", v.links, v.addrs, links, addrs)
	}
}

// TestTruncatedGrowthCapped: a datagram of the kernel's larger than the
// buffer grows it to fit, but never beyond maxRecvSize.
func TestTruncatedGrowthCapped(t *testing.T) {
	for _, tt := range []struct{ had, size, want int }{
		{128, 3348, 3348},
		{recvSize, recvSize + 1, 2 * recvSize},
		{recvSize, 300 << 10, 300 << 10},
		{recvSize, 8 << 20, maxRecvSize},
		{maxRecvSize, maxRecvSize + 1, maxRecvSize},
	} {
		// Closed and socketless: the resync it asks for is queued, not sent.
		n := &Netlink{buf: make([]byte, tt.had), closed: true, log: slog.New(slog.DiscardHandler)}
		n.truncated(n.buf, tt.size)
		if len(n.buf) != tt.want {
			t.Errorf("a %d byte datagram in a %d byte buffer: buffer grown to %d, want %d", tt.size, tt.had, len(n.buf), tt.want)
		}
		if s := n.Stats(); s.Overflows != 1 {
			t.Errorf("stats = %+v, want an overflow", s)
		}
	}
}
