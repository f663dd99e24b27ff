// Package natsconn is the TCP connection nlbridge's NATS clients dial
// through on Linux: non-blocking system calls made directly, so that a
// process woken once per kernel event does not also wake the Go runtime's
// monitor thread (dialer says why).
package natsconn

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"
)

// dialer is the nats.go CustomDialer nlbridge connects through: a plain
// TCP dial whose connection writes with a non-blocking send(2), and reads
// with a non-blocking recvfrom(2), made directly, as the netlink reads are.
//
// Why: nats.go writes every flush through net.Conn.Write, a syscall the Go
// runtime announces to its monitor thread (sysmon), and sets and clears a
// write deadline around it (FlusherTimeout), two timer updates. For a
// bridge that wakes once per kernel event, a profile of a burst of veth
// creations put about a quarter of nlbridge's CPU in waking sysmon and in
// those deadlines. A write to a TCP socket in non-blocking mode never
// blocks: it copies what fits and reports EAGAIN for the rest, and only
// then does this connection wait for the socket through the runtime's
// poller, with the deadline set, like net.Conn does.
//
// Its sockets also have TCP_USER_TIMEOUT, when one is given (see
// NewDialer).
type dialer struct {
	net.Dialer
	userTimeout time.Duration
}

var _ nats.CustomDialer = (*dialer)(nil)

// NewDialer returns the nats.go CustomDialer described at dialer: dials
// time out after timeout, and, with userTimeout > 0, data that the peer's
// kernel does not acknowledge for userTimeout fails the connection
// (TCP_USER_TIMEOUT), where the kernel would otherwise retransmit for
// about 15 minutes.
func NewDialer(timeout, userTimeout time.Duration) nats.CustomDialer {
	return &dialer{Dialer: net.Dialer{Timeout: timeout}, userTimeout: userTimeout}
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	c, err := d.Dialer.Dial(network, address)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	if d.userTimeout > 0 {
		var serr error
		err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.userTimeout.Milliseconds()))
		})
		if err = cmp.Or(err, serr); err != nil {
			c.Close()
			return nil, fmt.Errorf("natsconn: set TCP_USER_TIMEOUT: %w", err)
		}
	}
	return &writeConn{tc: tc, raw: raw}, nil
}

// writeConn is a TCP connection whose Write makes the send(2) itself and
// keeps the write deadline to itself until a write has to wait, and whose
// Read makes the recvfrom(2) itself.
//
// It holds the *net.TCPConn rather than embedding it, and forwards only
// what net.Conn needs: an embedded one would also lend it ReadFrom
// (io.ReaderFrom, which io.Copy prefers to Write) and every other method
// that writes to the socket around Write, its deadline and MSG_NOSIGNAL.
type writeConn struct {
	tc  *net.TCPConn // reads, addresses, Close and the deadlines it holds
	raw syscall.RawConn

	mu       sync.Mutex
	deadline time.Time // the write deadline last set
	applied  bool      // the socket holds a deadline (set while waiting)
}

// SetWriteDeadline records t; the socket gets it only when a write waits.
func (c *writeConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.applied {
		c.applied = !t.IsZero()
		return c.tc.SetWriteDeadline(t)
	}
	return nil
}

var _ net.Conn = (*writeConn)(nil)

// Read reads from the socket with a recvfrom(2) made directly, and waits
// for data through the runtime's poller, with the read deadline in force,
// as net.Conn does.
//
// Why: a system call announced to the runtime wakes its monitor thread
// (sysmon) from the deep sleep it takes while nlbridge is idle, and sysmon
// then polls every 20 µs for a millisecond or more. nats.go reads every
// PONG and server PING through Read: in a burst of kernel events, those
// reads made nearly all of sysmon's wakeups, and sysmon took about 6% of
// nlbridge's CPU. A read from a non-blocking TCP socket never blocks.
func (c *writeConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
				unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				n = int(r)
				return true
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				rerr = os.NewSyscallError("recvfrom", e)
				return true
			}
		}
	})
	if err == nil {
		err = rerr
	}
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF // the server closed the connection
	}
	return n, nil
}

// Close closes the socket.
func (c *writeConn) Close() error { return c.tc.Close() }

// LocalAddr returns the local address.
func (c *writeConn) LocalAddr() net.Addr { return c.tc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *writeConn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// SetReadDeadline sets the read deadline on the socket.
func (c *writeConn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetDeadline sets the read deadline on the socket and records the write
// deadline.
func (c *writeConn) SetDeadline(t time.Time) error {
	if err := c.tc.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Write writes all of p, waiting for the socket when its buffer is full.
func (c *writeConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	deadline := c.deadline
	c.mu.Unlock()
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return 0, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			// send(2) with MSG_NOSIGNAL: a reset connection fails the
			// call with EPIPE and raises no SIGPIPE.
			r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n),
				unix.MSG_NOSIGNAL, 0, 0)
			switch e {
			case 0:
				n += int(r)
			case unix.EINTR:
			case unix.EAGAIN:
				// Wait through the poller, with the deadline in force.
				c.mu.Lock()
				if !c.applied && !c.deadline.IsZero() {
					if werr = c.tc.SetWriteDeadline(c.deadline); werr != nil {
						c.mu.Unlock()
						return true
					}
					c.applied = true
				}
				c.mu.Unlock()
				return false
			default:
				werr = os.NewSyscallError("send", e)
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}
