//go:build linux

package source

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// waitUntil polls ok until it holds, or fails after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what func() string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
	}
}

// TestIntegrationBatchedReceiveStrandsNothing: the source reads up to
// recvBatch datagrams per receive and, when a receive returns fewer, waits
// for the socket without reading it again. Bursts of datagrams of every
// size around the batch (queued before the reader runs: GOMAXPROCS 1 and
// a sender that does not yield) must all be read, with nothing after them
// to wake the reader: one left in the socket would never be counted.
// Datagrams sent by a process are counted as foreign and dropped, which
// makes them a clean count of what was read.
func TestIntegrationBatchedReceiveStrandsNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ns := nstest.New(t)
	src := startSource(t, ns, HandlerFunc(func(*event.Event) {}))

	f, err := os.Open(ns.Path)
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
	to := unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: src.pid}
	forged := notification(rtmNewLink, linkBytes(t, vethMessage()))
	send := func(k int) {
		var errno unix.Errno
		err := raw.Write(func(fd uintptr) bool {
			for range k {
				_, _, errno = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&forged[0])), uintptr(len(forged)),
					0, uintptr(unsafe.Pointer(&to)), unix.SizeofSockaddrNetlink)
				if errno != 0 {
					return true
				}
			}
			return true
		})
		if err != nil || errno != 0 {
			t.Fatalf("send: %v %v", err, errno)
		}
	}
	var want uint64
	for _, k := range []int{1, recvBatch - 1, recvBatch, recvBatch + 1, 2 * recvBatch, 2*recvBatch + 1, 1, 100, 3} {
		send(k)
		want += uint64(k)
		waitUntil(t, 3*time.Second,
			func() string {
				return fmt.Sprintf("burst of %d: %d of %d datagrams read", k, src.Stats().Foreign, want)
			},
			func() bool { return src.Stats().Foreign >= want })
	}
	// Nothing more arrives later, either.
	time.Sleep(50 * time.Millisecond)
	if s := src.Stats(); s.Foreign != want || s.Overflows != 0 {
		t.Errorf("stats = %+v, want %d foreign datagrams and no overflow", s, want)
	}
}

// TestIntegrationBatchedReceiveKernelEvents: kernel notifications in
// bursts (veth pairs created by one `ip -batch`, read by a handler that is
// sometimes slow, so that they pile up) and one at a time (each waited
// for before the next is made) all reach the handler, in order, with no
// overflow.
func TestIntegrationBatchedReceiveKernelEvents(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ns := nstest.New(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	var mtus []uint32
	var n int
	src := startSourceConfig(t, Config{NetNS: ns.Path, ReceiveBuffer: 4 << 20}, HandlerFunc(func(ev *event.Event) {
		if ev.Type != event.NewLink {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if n++; n%25 == 0 {
			time.Sleep(2 * time.Millisecond) // the socket fills meanwhile
		}
		seen[ev.Link.Name] = true
		if ev.Link.Name == "single0" {
			mtus = append(mtus, ev.Link.MTU)
		}
	}))
	idx, _ := ns.AddVeth(t, "single0", "single1")
	const pairs = 150
	for round := range 3 {
		var batch strings.Builder
		for i := range pairs {
			fmt.Fprintf(&batch, "link add b%d_%d type veth peer name c%d_%d\n", round, i, round, i)
		}
		if out, err := ns.Command("ip", strings.NewReader(batch.String()), "-batch", "-"); err != nil {
			t.Fatalf("ip -batch: %v: %s", err, out)
		}
		waitUntil(t, 5*time.Second, func() string {
			mu.Lock()
			defer mu.Unlock()
			var missing []string
			for i := range pairs {
				for _, name := range []string{fmt.Sprintf("b%d_%d", round, i), fmt.Sprintf("c%d_%d", round, i)} {
					if !seen[name] {
						missing = append(missing, name)
					}
				}
			}
			return fmt.Sprintf("burst %d: NEWLINK missing for %d links, such as %v", round, len(missing), missing[:min(len(missing), 5)])
		}, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for i := range pairs {
				if !seen[fmt.Sprintf("b%d_%d", round, i)] || !seen[fmt.Sprintf("c%d_%d", round, i)] {
					return false
				}
			}
			return true
		})
		// Single changes, each alone in the socket.
		for i := range 5 {
			mtu := uint32(1400 + 10*round + i)
			ns.SetMTU(t, idx, mtu)
			waitUntil(t, 3*time.Second, func() string { return fmt.Sprintf("MTU %d of single0 not read", mtu) }, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(mtus) > 0 && mtus[len(mtus)-1] == mtu
			})
		}
	}
	if s := src.Stats(); s.Overflows != 0 || s.DecodeErrors != 0 {
		t.Errorf("stats = %+v, want no overflow and no decode error", s)
	}
}
