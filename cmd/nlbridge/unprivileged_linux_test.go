//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	// t.TempDir's parent is private to root; nobody must reach the binary.
	dir, err := os.MkdirTemp("", "nlbridge-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nlbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "nlbridge.yaml")
	if err := os.WriteFile(conf, []byte("host: sidecar\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET, // created as root, then entered as nobody
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		Pdeathsig:  syscall.SIGKILL,
	}
	// Pdeathsig fires when the thread that forked the child ends, and this
	// test ends threads (nstest.DialIn). Fork from a locked thread that
	// lives until the child has exited.
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("nlbridge's log:\n%s", stderr.String())
		}
	})

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
	resp, err := nc.Request("nlbridge.sidecar.dump", nil, 10*time.Second)
	if err != nil {
		t.Fatalf("dump request: %v", err)
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nlbridge did not exit within 10s of SIGTERM")
	}
	if log := stderr.String(); strings.Contains(log, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", log)
	}
}
