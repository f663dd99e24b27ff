//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// TestRelay runs the relay as the benchmark does, on a namespace of its
// own, against a server that pings every 100 ms and drops a client after
// two unanswered pings: each link change arrives as one whole netlink
// message, and still does a second later, so the pings were answered.
// Every variant: a blocking call, the poller, and nats.go's client.
func TestRelay(t *testing.T) {
	nstest.SkipUnlessRoot(t)
	bin := filepath.Join(t.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	for _, args := range [][]string{nil, {"-poller"}, {"-natsgo"}} {
		t.Run(strings.Join(append([]string{"relay"}, args...), " "), func(t *testing.T) { testRelay(t, bin, args...) })
	}
}

func testRelay(t *testing.T, bin string, args ...string) {
	ns := nstest.New(t)
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.PingInterval, opts.MaxPingsOut = 100*time.Millisecond, 2
	srv := natsserver.RunServer(&opts)
	t.Cleanup(srv.Shutdown)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	msgs := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe("relay.test", msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-netns", ns.Path, "-server", strings.TrimPrefix(srv.ClientURL(), "nats://"), "-subject", "relay.test"}, args...)...)
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// The relay is connected once the server counts two clients.
	for deadline := time.Now().Add(10 * time.Second); srv.NumClients() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not connect within 10 s: %s", stderr.String())
		}
	}

	// waitLink waits for the NEWLINK of name, checking that every message
	// on the way is one whole netlink message.
	waitLink := func(name string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m := <-msgs:
				var msg netlink.Message
				if err := msg.UnmarshalBinary(m.Data); err != nil || int(msg.Header.Length) != len(m.Data) {
					t.Fatalf("payload of %d bytes is not one netlink message (%v, header length %d)", len(m.Data), err, msg.Header.Length)
				}
				if msg.Header.Type == unix.RTM_NEWLINK && bytes.Contains(msg.Data, append([]byte(name), 0)) {
					return
				}
			case <-timeout:
				t.Fatalf("no NEWLINK of %s within 10 s (relay: %s)", name, stderr.String())
			}
		}
	}
	ns.AddVeth(t, "ra0", "rb0")
	waitLink("ra0")
	time.Sleep(time.Second) // ten pings
	ns.AddVeth(t, "ra1", "rb1")
	waitLink("ra1")
	if cmd.ProcessState != nil || srv.NumClients() != 2 {
		t.Fatalf("the relay's connection is gone after a second of pings: %s", stderr.String())
	}
}

func TestDialNATSRefusesBadAddress(t *testing.T) {
	for _, addr := range []string{"localhost:4222", "[::1]:4222", "127.0.0.1", "127.0.0.1:x"} {
		if _, err := dialNATS(addr); err == nil || !strings.Contains(err.Error(), "want IPv4 host:port") {
			t.Errorf("dialNATS(%q) = %v, want an error saying it wants IPv4 host:port", addr, err)
		}
	}
}
