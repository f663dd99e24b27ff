//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// TestIntegrationShutdownUndelivered kills the NATS server, changes the
// namespace, then sends SIGTERM: nlbridge read the changes but could not
// publish them, so it must say how many were not delivered and exit 1,
// not 0 (which says that every event read reached the server).
func TestIntegrationShutdownUndelivered(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.undelivered.>")
	conf := fmt.Sprintf("host: undelivered\nnetlink:\n  netns: %s\nnats:\n  servers: [%s]\n", ns.Path, srv.ClientURL())
	c := startChild(t, conf, nil)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	// Let the server confirm the startup dump (a flush at most every
	// 200 ms while publishing): it was delivered, and is not counted.
	time.Sleep(time.Second)

	srv.Shutdown()
	srv.WaitForShutdown()
	waitLog(t, c, "disconnected from NATS")
	// Six objects, none published: four links and two addresses.
	a0, _ := ns.AddVeth(t, "u0", "u1")
	a2, _ := ns.AddVeth(t, "u2", "u3")
	ns.AddAddr(t, a0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, a2, netip.MustParsePrefix("198.51.100.1/24"))
	waitLog(t, c, "publish failed")
	time.Sleep(500 * time.Millisecond) // the rest is read too

	c.signal(t, syscall.SIGTERM)
	err := c.wait(10 * time.Second)
	if errors.Is(err, errTimeout) {
		t.Fatal("nlbridge did not exit within 10s of SIGTERM")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit after SIGTERM with undelivered events: %v, want exit status 1", err)
	}
	log := c.stderr.String()
	for _, want := range []string{"events not delivered", "undelivered=6 unpublished=6 unconfirmed=0",
		"6 events not delivered to NATS"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	if testing.Verbose() {
		t.Logf("nlbridge's log:\n%s", log)
	}
}

// waitLog waits until the child's log holds s.
func waitLog(t *testing.T, c *child, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(c.stderr.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nlbridge did not log %q within 10s", s)
		}
	}
}

// waitChild is events.waitFor for a message that child c publishes: when
// none comes within timeout, c gets SIGQUIT, whose dump of its goroutines
// says where it is stuck, and the test fails with it.
func waitChild(t *testing.T, c *child, events *collector, from int, what string, timeout time.Duration, ok func(msg) bool) int {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		msgs := events.all()
		for i := from; i < len(msgs); i++ {
			if ok(msgs[i]) {
				return i
			}
		}
		if time.Now().After(deadline) {
			c.signal(t, syscall.SIGQUIT)
			c.wait(5 * time.Second)
			t.Fatalf("timed out waiting for %s; got %d messages; nlbridge's log and goroutines:\n%s", what, len(msgs)-from,
				c.stderr.String())
		}
		select {
		case <-events.signal:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
