//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is the nlbridge binary running as a process of its own, for tests
// that signal it (SIGSTOP, SIGTERM) or run it as another user.
type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startChild builds nlbridge and runs it with config as its configuration
// file, in a directory that any user can read, until the test ends.
func startChild(t *testing.T, config string, attr *syscall.SysProcAttr) *child {
	t.Helper()
	// t.TempDir's parent is private to root; other users must reach these.
	dir, err := os.MkdirTemp("", "nlbridge-test-")
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
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(bin, "run", "--config", conf), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	c.cmd.Stderr = c.stderr
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Pdeathsig = syscall.SIGKILL
	c.cmd.SysProcAttr = attr
	// Pdeathsig fires when the thread that forked the child ends, and tests
	// end threads (nstest). Fork from a locked thread that lives until the
	// child has exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.exited <- c.cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start nlbridge: %v", err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.wait(10 * time.Second)
		if t.Failed() {
			t.Logf("nlbridge's log:\n%s", c.stderr.String())
		}
	})
	return c
}

// signal sends sig to the child.
func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the child to exit and returns how it did, or an error if
// it has not after timeout. It may be called more than once.
func (c *child) wait(timeout time.Duration) error {
	select {
	case err := <-c.exited:
		c.exited <- err
		return err
	case <-time.After(timeout):
		return errTimeout
	}
}

var errTimeout = os.ErrDeadlineExceeded
