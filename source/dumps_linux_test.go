//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// queueLen is the number of requests waiting for a dump.
func (n *Netlink) queueLen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queued)
}

// TestIntegrationNarrowedDump: a dump of one interface asks the kernel for
// that link and its addresses only, so it reads a handful of messages
// whatever the namespace holds, and publishes exactly that interface. An
// interface that does not exist, or vanishes before its dump runs, fails
// with ErrNoInterface; full dumps are still accepted by the strictly
// checking socket.
func TestIntegrationNarrowedDump(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "n", 500) // 1,000 links, 2,000 addresses
	rec := newRecorder()
	// The interval is long enough for the request for na9 below to be
	// queued behind it on a loaded machine.
	src := startSourceConfig(t, Config{NetNS: ns.Path, ReceiveBuffer: 4 << 20, MinDumpInterval: 2 * time.Second}, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	full, err := src.Dump(ctx, event.ReasonRequest, "")
	if err != nil {
		t.Fatalf("full Dump: %v", err)
	}
	if full.Sync.Links != 1001 || full.Sync.Addrs != 2000 {
		t.Fatalf("full dump: %d links, %d addresses; want 1001 and 2000", full.Sync.Links, full.Sync.Addrs)
	}

	rec.mu.Lock()
	from := len(rec.evs)
	rec.mu.Unlock()
	before := src.Stats().Messages
	marker, err := src.Dump(ctx, event.ReasonRequest, "na7")
	if err != nil {
		t.Fatalf("Dump na7: %v", err)
	}
	read := src.Stats().Messages - before
	t.Logf("narrowed dump read %d kernel messages", read)
	if read > 6 {
		t.Errorf("narrowed dump read %d kernel messages, want at most 6 (link, ack, 2 addresses, done)", read)
	}
	if marker.Sync.Interface != "na7" || marker.Sync.Links != 1 || marker.Sync.Addrs != 2 {
		t.Errorf("marker = %+v, want na7 with 1 link and 2 addresses", marker.Sync)
	}
	rec.mu.Lock()
	evs := append([]event.Event(nil), rec.evs[from:]...)
	rec.mu.Unlock()
	var got []string
	for _, ev := range evs {
		switch {
		case ev.Type == event.Begin:
			got = append(got, "BEGIN "+ev.Sync.Interface)
		case ev.Type == event.Sync:
			got = append(got, "SYNC "+ev.Sync.Interface)
		case !ev.Dump:
			t.Errorf("notification %+v during a quiet dump", ev)
		case ev.Type.IsLink():
			got = append(got, ev.Type.String()+" "+ev.Link.Name)
		default:
			got = append(got, fmt.Sprintf("%s %s %s/%d", ev.Type, ev.Addr.Ifname, ev.Addr.Address, ev.Addr.PrefixLen))
		}
	}
	want := []string{"BEGIN na7", "NEWLINK na7", "NEWADDR na7 10.0.7.1/30", "NEWADDR na7 2001:db8:7::1/64", "SYNC na7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("narrowed dump handed on\n%q\nwant\n%q", got, want)
	}

	start := time.Now()
	if _, err := src.Dump(ctx, event.ReasonRequest, "nosuch0"); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Dump of a missing interface: err = %v, want ErrNoInterface", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Dump of a missing interface took %v, want an immediate answer", took)
	}

	// Gone between the request and its dump: the request waits for the
	// minimum interval, meanwhile the link goes.
	idx := ns.Index(t, "na9")
	res := make(chan error, 1)
	go func() {
		_, err := src.Dump(ctx, event.ReasonRequest, "na9")
		res <- err
	}()
	for src.queueLen() == 0 {
		select {
		case err := <-res:
			t.Fatalf("the dump of na9 was not queued: it ended at once, with %v", err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	ns.DelLink(t, idx)
	if err := <-res; !errors.Is(err, ErrNoInterface) {
		t.Errorf("Dump of an interface deleted while queued: err = %v, want ErrNoInterface", err)
	}
	if s := src.Stats(); s.DumpFailures != 0 {
		t.Errorf("DumpFailures = %d: a missing interface is no failure", s.DumpFailures)
	}
}

// TestIntegrationDumpQueue: requests whose caller has gone leave the queue;
// every request waiting when a dump starts shares it, a full dump when
// they name different interfaces; and a resync waits neither for the
// minimum interval nor behind requests, and answers those waiting.
func TestIntegrationDumpQueue(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVethPairs(t, "q", 3)
	var mu sync.Mutex
	var syncs []event.SyncInfo
	// Long enough for what the test queues behind it to be queued on a
	// loaded machine.
	const interval = time.Second
	src := startSourceConfig(t, Config{NetNS: ns.Path, MinDumpInterval: interval}, HandlerFunc(func(ev *event.Event) {
		if ev.Type == event.Sync {
			mu.Lock()
			syncs = append(syncs, ev.Sync)
			mu.Unlock()
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := src.Dump(ctx, event.ReasonRequest, ""); err != nil {
		t.Fatal(err)
	}

	// Callers that give up: nothing of them stays queued.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if _, err := src.Dump(c, event.ReasonRequest, fmt.Sprintf("qa%d", i%3)); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("abandoned Dump: err = %v, want DeadlineExceeded", err)
			}
		}()
	}
	wg.Wait()
	if n := src.queueLen(); n != 0 {
		t.Errorf("%d abandoned requests still queued", n)
	}

	// Requests for different interfaces and for everything share one full
	// dump.
	time.Sleep(interval)
	if _, err := src.Dump(ctx, event.ReasonRequest, ""); err != nil {
		t.Fatal(err)
	}
	dumps := src.Stats().Dumps
	markers := make(chan event.Event, 7)
	for _, name := range []string{"qa0", "qa1", "qb2", "", "qa0", "qb1", "lo"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := src.Dump(ctx, event.ReasonRequest, name)
			if err != nil {
				t.Errorf("Dump %q: %v", name, err)
			}
			markers <- m
		}()
	}
	wg.Wait()
	close(markers)
	for m := range markers {
		if m.Sync.Interface != "" || m.Sync.Links != 7 {
			t.Errorf("marker %+v, want the full dump's", m.Sync)
		}
	}
	if n := src.Stats().Dumps - dumps; n != 1 {
		t.Errorf("7 waiting requests were answered by %d dumps, want 1", n)
	}

	// A resync while a request waits for the minimum interval: it starts
	// at once, full, and answers the request too.
	mu.Lock()
	seen := len(syncs)
	mu.Unlock()
	res := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := src.Dump(ctx, event.ReasonRequest, "qa1")
		res <- err
	}()
	for src.queueLen() == 0 {
		select {
		case err := <-res:
			t.Fatalf("the request for qa1 was not queued: it ended at once, with %v", err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	src.queueResync()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("request waiting with a resync answered after %v, want well before the minimum interval", took)
	}
	mu.Lock()
	got := append([]event.SyncInfo(nil), syncs[seen:]...)
	mu.Unlock()
	if len(got) != 1 || got[0].Interface != "" || got[0].Reason != event.ReasonRequest || got[0].Links != 7 {
		t.Errorf("SYNCs %+v, want one full dump", got)
	}
	if s := src.Stats(); s.Resyncs != 1 {
		t.Errorf("Resyncs = %d, want 1", s.Resyncs)
	}
}

// view applies events as a consumer does, dumps included: objects that a
// full dump's last attempt (after its last Begin) did not show are gone at
// its SYNC, as the sink publishes them deleted.
type view struct {
	links, addrs map[string]bool
	seen         map[string]bool // since the last Begin; nil outside dumps
	full         bool
	// Counted since the last Begin, for the SYNC counts.
	dumpLinks, dumpAddrs int
	begins, syncs        int
	countErrs            []string
}

func newView() *view { return &view{links: map[string]bool{}, addrs: map[string]bool{}} }

func linkKey(l event.Link) string { return fmt.Sprint(l.Index) }
func addrKey(a event.Addr) string { return fmt.Sprintf("%d %s/%d", a.Index, a.Address, a.PrefixLen) }

func (v *view) apply(ev *event.Event) {
	switch ev.Type {
	case event.Begin:
		v.begins++
		v.seen, v.full = map[string]bool{}, ev.Sync.Reason.Full() || ev.Sync.Reason == event.ReasonResync
		v.dumpLinks, v.dumpAddrs = 0, 0
		return
	case event.Sync:
		v.syncs++
		if ev.Sync.Links != v.dumpLinks || ev.Sync.Addrs != v.dumpAddrs {
			v.countErrs = append(v.countErrs, fmt.Sprintf("SYNC %d says %d links, %d addresses; its last attempt had %d and %d",
				v.syncs, ev.Sync.Links, ev.Sync.Addrs, v.dumpLinks, v.dumpAddrs))
		}
		if v.seen != nil && v.full && ev.Sync.Interface == "" {
			for k := range v.links {
				if !v.seen["l"+k] {
					delete(v.links, k)
				}
			}
			for k := range v.addrs {
				if !v.seen["a"+k] {
					delete(v.addrs, k)
				}
			}
		}
		v.seen = nil
		return
	}
	if ev.Dump {
		if ev.Type.IsLink() {
			v.dumpLinks++
		} else {
			v.dumpAddrs++
		}
	}
	k, m, prefix := addrKey(ev.Addr), v.addrs, "a"
	if ev.Type.IsLink() {
		k, m, prefix = linkKey(ev.Link), v.links, "l"
	}
	if ev.Type.IsDel() {
		delete(m, k)
		if ev.Type == event.DelLink {
			for ak := range v.addrs {
				if idx, _, _ := cut(ak); idx == k {
					delete(v.addrs, ak)
				}
			}
		}
		if v.seen != nil {
			delete(v.seen, prefix+k)
		}
		return
	}
	m[k] = true
	if v.seen != nil {
		v.seen[prefix+k] = true
	}
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// kernelView lists the namespace's links and addresses as view keys.
func kernelView(t *testing.T, ns *nstest.NS) (links, addrs map[string]bool) {
	t.Helper()
	links, addrs = map[string]bool{}, map[string]bool{}
	ls, err := ns.Conn().Link.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		links[fmt.Sprint(l.Index)] = true
	}
	as, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.Attributes.Address)
		addrs[fmt.Sprintf("%d %s/%d", a.Index, ip.Unmap(), a.PrefixLength)] = true
	}
	return links, addrs
}

// TestIntegrationRepairRetried: startup and resync dumps that fail (here
// every interrupted dump fails, as maxDumpAttempts is 1, and the tables
// change all the time) are tried again until they succeed: once the churn
// stops, the startup Dump returns, a resync SYNC comes, and a consumer of
// the events holds the kernel's links and addresses.
func TestIntegrationRepairRetried(t *testing.T) {
	old := maxDumpAttempts
	maxDumpAttempts = 1
	t.Cleanup(func() { maxDumpAttempts = old })

	ns := nstest.New(t)
	ns.AddVethPairs(t, "r", 150)
	var mu sync.Mutex
	v := newView()
	src := startSourceConfig(t, Config{NetNS: ns.Path, ReceiveBuffer: 8 << 20}, HandlerFunc(func(ev *event.Event) {
		if ev.Dump {
			time.Sleep(20 * time.Microsecond) // a slow reader: dumps last long enough to be interrupted
		}
		mu.Lock()
		v.apply(ev)
		mu.Unlock()
	}))

	churn, stopChurn := context.WithCancel(context.Background())
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		c := ns.Conn()
		for i := 0; churn.Err() == nil; i++ {
			name, peer := fmt.Sprintf("c%d", i%4), fmt.Sprintf("d%d", i%4)
			if err := c.Link.New(nstest.VethRequest(name, peer)); err != nil {
				t.Errorf("churn: add %s: %v", name, err)
				return
			}
			links, err := c.Link.List()
			if err != nil {
				t.Errorf("churn: %v", err)
				return
			}
			for _, l := range links {
				if l.Attributes.Name == name {
					if err := c.Link.Delete(l.Index); err != nil {
						t.Errorf("churn: delete %s: %v", name, err)
						return
					}
				}
			}
		}
	}()
	defer func() { stopChurn(); <-churned }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	startup := make(chan error, 1)
	go func() {
		_, err := src.Dump(ctx, event.ReasonStartup, "")
		startup <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for src.Stats().DumpFailures < 2 {
		select {
		case err := <-startup:
			t.Fatalf("startup Dump returned %v during the churn, before failing twice (stats %+v)", err, src.Stats())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dump failed under churn: stats %+v", src.Stats())
		}
	}
	src.queueResync()
	for f := src.Stats().DumpFailures; src.Stats().DumpFailures < f+2; {
		time.Sleep(10 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatalf("the resync did not fail under churn: stats %+v", src.Stats())
		}
	}
	stopChurn()
	<-churned
	if err := <-startup; err != nil {
		t.Fatalf("startup Dump: %v", err)
	}
	for src.Stats().Resyncs == 0 {
		time.Sleep(10 * time.Millisecond)
		if time.Now().After(deadline.Add(15 * time.Second)) {
			t.Fatalf("no resync after the churn stopped: stats %+v", src.Stats())
		}
	}
	s := src.Stats()
	t.Logf("stats %+v", s)
	klinks, kaddrs := kernelView(t, ns)
	mu.Lock()
	defer mu.Unlock()
	for _, e := range v.countErrs {
		t.Error(e)
	}
	if fmt.Sprint(v.links) != fmt.Sprint(klinks) || fmt.Sprint(v.addrs) != fmt.Sprint(kaddrs) {
		t.Errorf("consumer holds %d links, %d addresses; the kernel %d and %d", len(v.links), len(v.addrs), len(klinks), len(kaddrs))
	}
	if s.DumpFailures < 4 || s.Dumps < 1 {
		t.Errorf("stats %+v: want at least 4 failures and a dump", s)
	}
}
