//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/sink"
)

// nsDialer dials NATS inside another network namespace.
type nsDialer struct{ path string }

func (d nsDialer) Dial(network, addr string) (net.Conn, error) {
	return nstest.DialIn(d.path, network, addr)
}

// TestIntegrationUnprivileged runs the nlbridge binary as user nobody, with
// no capabilities, in a network namespace of its own with the embedded NATS
// server, as a sidecar runs. It must dump, answer a request, and exit 0 on
// SIGTERM.
func TestIntegrationUnprivileged(t *testing.T) {
	nstest.SkipUnlessRoot(t)
	c := startChild(t, "host: sidecar\n", &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET, // created as root, then entered as nobody
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	})
	cmd := c.cmd
	netns := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	// A new namespace's loopback is down: bring it up to reach the server.
	// nlbridge publishes that change too (lo, 127.0.0.1 and ::1).
	ns := nstest.Open(t, netns)
	ns.SetUp(t, ns.Index(t, "lo"), true)
	var nc *nats.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		nc, err = nats.Connect("nats://127.0.0.1:4222", nats.SetCustomDialer(nsDialer{netns}))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot reach nlbridge's embedded server: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer nc.Close()

	events := collect(t, nc, "netlink.sidecar.>")
	// The server accepts clients a moment before nlbridge's own connection
	// has registered the dump service.
	var resp *nats.Msg
	for {
		var err error
		resp, err = nc.Request("nlbridge.sidecar.dump", nil, 10*time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			t.Fatalf("dump request: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var reply sink.DumpReply
	if err := json.Unmarshal(resp.Data, &reply); err != nil {
		t.Fatalf("reply %q: %v", resp.Data, err)
	}
	if reply.Links != 1 || reply.Addrs != 2 || reply.Host != "sidecar" {
		t.Errorf("reply = %+v, want 1 link (lo) with 2 addresses", reply)
	}
	events.waitFor(0, "the SYNC of the request", func(m msg) bool {
		return m.subject == "netlink.sidecar.sync" && m.str("reason") == "request"
	})

	c.signal(t, syscall.SIGTERM)
	if err := c.wait(10 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0 within 10s", err)
	}
	if log := c.stderr.String(); strings.Contains(log, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", log)
	}
}
