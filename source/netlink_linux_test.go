//go:build linux

package source

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"golang.org/x/sys/unix"
)

// recorder is a Handler that keeps copies of what it is handed.
type recorder struct {
	mu  sync.Mutex
	evs []event.Event
	new chan struct{}
}

func newRecorder() *recorder { return &recorder{new: make(chan struct{}, 1)} }

func (r *recorder) Handle(ev *event.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, *ev)
	r.mu.Unlock()
	select {
	case r.new <- struct{}{}:
	default:
	}
}

// waitFor waits until some event satisfies ok and returns it.
func (r *recorder) waitFor(t *testing.T, what string, ok func(*event.Event) bool) event.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for seen := 0; ; {
		r.mu.Lock()
		evs := r.evs[seen:]
		seen = len(r.evs)
		r.mu.Unlock()
		for i := range evs {
			if ok(&evs[i]) {
				return evs[i]
			}
		}
		select {
		case <-r.new:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// startSource runs a source on ns until the test ends.
func startSource(t *testing.T, ns *nstest.NS, h Handler) *Netlink {
	t.Helper()
	return startSourceConfig(t, Config{NetNS: ns.Path, ReceiveBuffer: 1 << 20}, h)
}

func startSourceConfig(t *testing.T, cfg Config, h Handler) *Netlink {
	t.Helper()
	src, _ := openRun(t, cfg, h)
	return src
}

// openRun opens a source with cfg and runs it with h until stop is
// called, or until t ends (see runSource).
func openRun(t testing.TB, cfg Config, h Handler) (src *Netlink, stop func()) {
	t.Helper()
	src, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return src, runSource(t, src, h)
}

func TestIntegrationDumpAndEvents(t *testing.T) {
	ns := nstest.New(t)
	a, b := ns.AddVeth(t, "va", "vb")
	ns.AddAddr(t, a, netip.MustParsePrefix("192.0.2.1/24"))
	ns.SetUp(t, a, true)
	ns.AddAddr(t, a, netip.MustParsePrefix("2001:db8::1/64"))

	rec := newRecorder()
	src := startSource(t, ns, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	marker, err := src.Dump(ctx, event.ReasonStartup, "")
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	// lo, va, vb; 192.0.2.1, 2001:db8::1, and va's link-local address
	// (va is up, its peer is down: no carrier, but IPv6 link-local is
	// still configured when the device comes up).
	if marker.Type != event.Sync || marker.Sync.Links != 3 || marker.Sync.Reason != event.ReasonStartup {
		t.Fatalf("marker = %+v, want SYNC with 3 links, reason startup", marker)
	}
	rec.mu.Lock()
	dumped := append([]event.Event(nil), rec.evs...)
	rec.mu.Unlock()
	var links, addrs int
	for _, ev := range dumped {
		if !ev.Dump && ev.Type != event.Sync {
			continue
		}
		switch {
		case ev.Type.IsLink():
			links++
		case ev.Type.IsAddr():
			addrs++
			if ev.Addr.Ifname == "" {
				t.Errorf("dumped address %s has no interface name", ev.Addr.Address)
			}
		}
	}
	if links != marker.Sync.Links || addrs != marker.Sync.Addrs {
		t.Errorf("dump had %d links and %d addresses, marker says %d and %d", links, addrs, marker.Sync.Links, marker.Sync.Addrs)
	}

	ns.SetMTU(t, b, 1400)
	got := rec.waitFor(t, "NEWLINK vb mtu 1400", func(ev *event.Event) bool {
		return ev.Type == event.NewLink && ev.Link.Index == b && ev.Link.MTU == 1400
	})
	if got.Dump || got.Link.Name != "vb" || got.Link.Kind != "veth" || got.Link.Parent != a {
		t.Errorf("event = %+v, want vb, kind veth, parent %d, not a dump", got.Link, a)
	}
	ns.DelAddr(t, a, netip.MustParsePrefix("192.0.2.1/24"))
	del := rec.waitFor(t, "DELADDR 192.0.2.1", func(ev *event.Event) bool {
		return ev.Type == event.DelAddr && ev.Addr.Address == netip.MustParseAddr("192.0.2.1")
	})
	if del.Addr.Ifname != "va" || del.Addr.PrefixLen != 24 || del.Addr.Broadcast != netip.MustParseAddr("192.0.2.255") {
		t.Errorf("DELADDR = %+v, want va 192.0.2.1/24 brd 192.0.2.255", del.Addr)
	}
	ns.DelLink(t, a)
	rec.waitFor(t, "DELLINK va", func(ev *event.Event) bool { return ev.Type == event.DelLink && ev.Link.Index == a })
	rec.waitFor(t, "DELLINK vb", func(ev *event.Event) bool { return ev.Type == event.DelLink && ev.Link.Index == b })
	if s := src.Stats(); s.DecodeErrors != 0 || s.Dumps != 1 {
		t.Errorf("stats = %+v, want no decode errors and one dump", s)
	}
}

// FuzzDatagram feeds arbitrary datagrams to the reader's splitter: it never
// panics, hands on only well-formed events and counts what it skips.
func FuzzDatagram(f *testing.F) {
	b := linkBytes(f, vethMessage())
	msg := make([]byte, 16+len(b))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], rtmNewLink)
	copy(msg[16:], b)
	f.Add(append(append([]byte{}, msg...), msg...))
	f.Add(msg[:20])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// No socket: closed, so that the resync a malformed datagram
		// asks for is queued but not sent.
		n := &Netlink{dec: newDecoder(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), closed: true}
		var ev event.Event
		n.datagram(data, time.Now(), HandlerFunc(func(ev *event.Event) {
			if ev.Type.IsLink() && ev.Link.Name == "" || ev.Type.IsAddr() && !ev.Addr.Address.IsValid() || ev.Type == 0 {
				t.Fatalf("handed on a malformed event %+v", ev)
			}
		}), &ev)
		s := n.Stats()
		if s.Events+s.Skipped+s.DecodeErrors < s.Messages {
			t.Fatalf("stats %+v: messages unaccounted for", s)
		}
	})
}

// TestIntegrationDumpInterrupted dumps a namespace whose links and
// addresses keep changing: the kernel flags such dumps NLM_F_DUMP_INTR, and
// every Dump must still complete, retried until the kernel has given a
// consistent one. Each attempt starts with a Begin, and the SYNC counts the
// objects of the last attempt only.
func TestIntegrationDumpInterrupted(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "p", 300)
	var mu sync.Mutex
	v := newView()
	src := startSource(t, ns, HandlerFunc(func(ev *event.Event) {
		mu.Lock()
		v.apply(ev)
		mu.Unlock()
	}))
	churn, stopChurn := context.WithCancel(context.Background())
	churned := make(chan struct{})
	t.Cleanup(func() { // also when the test fails: the churn logs to t
		stopChurn()
		<-churned
	})
	go func() {
		defer close(churned)
		for i := 0; churn.Err() == nil; i++ {
			// Adding and deleting links and addresses moves the
			// generation counters that the kernel checks during a dump.
			if _, err := ns.Command("ip", strings.NewReader(
				"link add churn0 type veth peer name churn1\n"+
					"address add 192.0.2.1/24 dev churn0\n"+
					"link del churn0\n"), "-batch", "-"); err != nil {
				t.Errorf("churn: %v", err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 40 && src.Stats().DumpRetries == 0; i++ {
		marker, err := src.Dump(ctx, event.ReasonRequest, "")
		if err != nil && strings.Contains(err.Error(), "keep changing") {
			// On a loaded machine the churn can interrupt every attempt;
			// a requested dump then fails, by design.
			t.Logf("Dump %d: %v", i, err)
			continue
		}
		if err != nil {
			t.Fatalf("Dump %d: %v", i, err)
		}
		if marker.Sync.Links < 600 {
			t.Errorf("Dump %d: %d links, want at least 600", i, marker.Sync.Links)
		}
	}
	stopChurn()
	<-churned
	s := src.Stats()
	t.Logf("dumps %d, retried %d", s.Dumps, s.DumpRetries)
	if s.DumpRetries == 0 {
		t.Errorf("stats = %+v: no dump was interrupted and retried", s)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range v.countErrs {
		t.Error(e)
	}
	if v.begins != int(s.Dumps+s.DumpRetries+s.DumpFailures) || v.syncs != int(s.Dumps) {
		t.Errorf("%d Begins and %d SYNCs for %d dumps, %d retries and %d failed dumps, want a Begin per attempt",
			v.begins, v.syncs, s.Dumps, s.DumpRetries, s.DumpFailures)
	}
}

// TestIntegrationDumpSharing: concurrent requests share dumps, and a request
// right after a dump waits for the minimum interval.
func TestIntegrationDumpSharing(t *testing.T) {
	ns := nstest.New(t)
	const interval = 300 * time.Millisecond
	var syncs atomic.Int32
	src := startSourceConfig(t, Config{NetNS: ns.Path, MinDumpInterval: interval}, HandlerFunc(func(ev *event.Event) {
		if ev.Type == event.Sync {
			syncs.Add(1)
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := src.Dump(ctx, event.ReasonRequest, ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := src.Dump(ctx, event.ReasonRequest, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took < interval/2 {
		t.Errorf("requests right after a dump were answered in %v, before the minimum interval %v", took, interval)
	}
	s := src.Stats()
	t.Logf("stats %+v, %d SYNCs", s, syncs.Load())
	if s.Dumps > 3 || s.Merged < 47 || s.Delayed == 0 || int(syncs.Load()) != int(s.Dumps) {
		t.Errorf("stats %+v after 51 requests: want at most 3 dumps, at least 47 merged, some delayed", s)
	}
}

// notification returns a datagram holding one message of type typ with
// body b, as the kernel would send it.
func notification(typ uint16, b []byte) []byte {
	msg := make([]byte, unix.NLMSG_HDRLEN+len(b))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	copy(msg[unix.NLMSG_HDRLEN:], b)
	return msg
}

// TestIntegrationForeignDatagram: a process with CAP_NET_ADMIN over the
// namespace sends a well-formed NEWLINK straight to the source's socket.
// It is dropped and counted, never handed on; kernel events around it are.
func TestIntegrationForeignDatagram(t *testing.T) {
	ns := nstest.New(t)
	rec := newRecorder()
	src := startSource(t, ns, rec)

	forged := notification(rtmNewLink, linkBytes(t, vethMessage())) // eth0.100
	sendTo(t, ns.Path, src.pid, forged)

	a, _ := ns.AddVeth(t, "real0", "real1")
	rec.waitFor(t, "NEWLINK real0", func(ev *event.Event) bool { return ev.Type == event.NewLink && ev.Link.Index == a })
	rec.mu.Lock()
	for _, ev := range rec.evs {
		if ev.Type.IsLink() && ev.Link.Name == "eth0.100" {
			t.Errorf("the forged NEWLINK was handed on: %+v", ev.Link)
		}
	}
	rec.mu.Unlock()
	if s := src.Stats(); s.Foreign != 1 || s.DecodeErrors != 0 {
		t.Errorf("stats = %+v, want 1 foreign datagram, no decode errors", s)
	}
}

// TestIntegrationUndecodableNotification: a notification that cannot be
// decoded, or a datagram whose lengths do not add up, means a change may be
// lost: the source counts it and dumps everything again (SYNC resync), as
// after an overflow.
func TestIntegrationUndecodableNotification(t *testing.T) {
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"short NEWLINK", notification(rtmNewLink, make([]byte, 8))},
		{"bad length", append(binary.NativeEndian.AppendUint32(nil, 1000), make([]byte, 28)...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns := nstest.New(t)
			src, err := Open(Config{NetNS: ns.Path})
			if err != nil {
				t.Fatal(err)
			}
			// Before Run, so that nothing else touches the reader's state.
			rec := newRecorder()
			var ev event.Event
			src.datagram(tt.data, time.Now(), rec, &ev)
			if s := src.Stats(); s.DecodeErrors != 1 || s.Events != 0 {
				t.Fatalf("stats = %+v, want 1 decode error and no event", s)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, rec) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				src.Close()
			}()
			sync := rec.waitFor(t, "SYNC resync", func(ev *event.Event) bool { return ev.Type == event.Sync })
			if sync.Sync.Reason != event.ReasonResync || sync.Sync.Links != 1 {
				t.Errorf("SYNC = %+v, want reason resync with lo", sync.Sync)
			}
		})
	}
}
