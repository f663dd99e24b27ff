package natsconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// testUserTimeout is the TCP_USER_TIMEOUT of the test connections.
const testUserTimeout = 8 * time.Second

// connPair dials a listener on 127.0.0.1 through the dialer nlbridge uses
// and returns both ends.
func connPair(t *testing.T) (client *writeConn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := NewDialer(5*time.Second, testUserTimeout).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	wc, ok := c.(*writeConn)
	if !ok {
		t.Fatalf("dialer returned %T, want *writeConn", c)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close() })
	return wc, s
}

// TestWriteConnRoundTrip writes more than a socket buffer holds while the
// peer reads slowly, so writes both complete at once and wait for room,
// with nats.go's pattern of a deadline set and cleared around each write:
// everything arrives, in order.
func TestWriteConnRoundTrip(t *testing.T) {
	c, s := connPair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		got <- b
	}()
	for off := 0; off < len(want); off += 300 << 10 {
		end := min(off+300<<10, len(want))
		if err := c.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Write(want[off:end])
		if err != nil || n != end-off {
			t.Fatalf("Write(%d bytes) = %d, %v", end-off, n, err)
		}
		if err := c.SetWriteDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written in order", len(b), len(want))
	}
}

// TestWriteConnDeadline: a write to a peer that reads nothing fills the
// socket and then fails at its deadline with a timeout, not hanging; a
// deadline already past fails a write at once; clearing the deadline makes
// writes work again once the peer reads.
func TestWriteConnDeadline(t *testing.T) {
	c, s := connPair(t)
	if err := c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := c.Write(make([]byte, 64<<20))
		res <- result{n, err}
	}()
	var n int
	var err error
	select {
	case r := <-res:
		n, err = r.n, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("a write to a stalled peer ignores its deadline")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a stalled peer = %d, %v; want a deadline error", n, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v is not a net.Error timeout", err)
	}
	if n == 0 || n >= 64<<20 {
		t.Errorf("wrote %d bytes before the deadline, want some but not all", n)
	}
	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write after a past deadline: %v, want a deadline error", err)
	}

	// Drain what was written, then write again without a deadline.
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.CopyN(io.Discard, s, int64(n)) }()
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("after"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Write after clearing the deadline: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write after clearing the deadline hangs")
	}
}

// TestWriteConnClosedPeer: writing to a connection the peer closed fails
// with an error, as net.Conn does, instead of hanging.
func TestWriteConnClosedPeer(t *testing.T) {
	c, s := connPair(t)
	s.Close()
	var err error
	for range 100 {
		if _, err = c.Write(make([]byte, 64<<10)); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Errorf("error %v is not a *net.OpError for write", err)
	}
}

func TestDialerRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if c, err := NewDialer(time.Second, testUserTimeout).Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
}

// TestWriteConnOnlyWritePath: writeConn has no other way to write than
// its Write (an embedded *net.TCPConn would lend it ReadFrom, which io.Copy
// prefers, and which writes around Write's deadline and MSG_NOSIGNAL). So
// io.Copy into it with a write deadline already past fails at once and
// sends nothing, as Write does; once the deadline is cleared, it sends
// everything.
func TestWriteConnOnlyWritePath(t *testing.T) {
	c, s := connPair(t)
	type (
		closeWriter interface{ CloseWrite() error }
		syscaller   interface {
			SyscallConn() (syscall.RawConn, error)
		}
	)
	var conn net.Conn = c
	_, readerFrom := conn.(io.ReaderFrom)
	_, writerTo := conn.(io.WriterTo)
	_, closeWrite := conn.(closeWriter)
	_, syscallConn := conn.(syscaller)
	for name, ok := range map[string]bool{"io.ReaderFrom": readerFrom, "io.WriterTo": writerTo,
		"CloseWrite": closeWrite, "SyscallConn": syscallConn} {
		if ok {
			t.Errorf("writeConn implements %s: a way to the socket around Write", name)
		}
	}

	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	// Only an io.Reader, so that io.Copy does not use the source's WriteTo.
	src := struct{ io.Reader }{bytes.NewReader([]byte("bypass"))}
	if n, err := io.Copy(c, src); !errors.Is(err, os.ErrDeadlineExceeded) || n != 0 {
		t.Errorf("io.Copy with a past write deadline = %d, %v; want 0 and a deadline error from Write", n, err)
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789"), 100<<10)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		got <- b
	}()
	if n, err := io.Copy(c, struct{ io.Reader }{bytes.NewReader(want)}); err != nil || n != int64(len(want)) {
		t.Fatalf("io.Copy = %d, %v; want %d bytes", n, err, len(want))
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("peer read %d bytes (%.16q), want the %d copied (%.16q)", len(b), b, len(want), want)
	}
}

// TestWriteConnRead: Read returns what the peer wrote, waiting for it when
// none is there yet; a read deadline ends a waiting Read with a timeout,
// and a closed peer gives io.EOF, as a net.Conn's Read does.
func TestWriteConnRead(t *testing.T) {
	c, s := connPair(t)
	want := []byte("INFO {}\r\nPING\r\nPONG\r\n")
	go func() {
		for i := range want {
			time.Sleep(time.Millisecond) // the reader waits for most bytes
			if _, err := s.Write(want[i : i+1]); err != nil {
				return
			}
		}
	}()
	var got []byte
	buf := make([]byte, 64)
	for tries := 0; len(got) < len(want); tries++ {
		if tries > 10*len(want) {
			t.Fatalf("read %q in %d calls, want %q", got, tries, want)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("Read after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}

	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing to read past its deadline = %d, %v; want a timeout", n, err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > 5*time.Second {
		t.Errorf("Read returned after %v, want at the 20 ms deadline", d)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got = got[:0]
	for tries := 0; ; tries++ {
		if tries > 10 {
			t.Fatalf("no io.EOF after the peer closed, in %d reads", tries)
		}
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
		}
	}
	if string(got) != "+OK\r\n" {
		t.Errorf("read %q before EOF, want %q", got, "+OK\r\n")
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}
