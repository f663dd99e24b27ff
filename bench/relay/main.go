//go:build linux

// Command relay is the least any bridge from rtnetlink to NATS can do, the
// reference that `go run ./bench` measures nlbridge against: it reads each
// rtnetlink datagram of the link and address groups and writes its
// messages, undecoded, as NATS PUB lines, all messages of one datagram in
// one blocking write(2), and nothing else.
//
//	relay -netns PATH -server HOST:PORT -subject SUBJECT [-poller | -natsgo]
//
// Its netlink socket is opened in the network namespace PATH; its TCP
// connection to the server is made in its own namespace. It needs
// CAP_SYS_ADMIN (setns) and CAP_NET_ADMIN (SO_RCVBUFFORCE).
//
// Nothing of the Go runtime runs per event: the netlink socket and the TCP
// socket are blocking, and each is read by a goroutine locked to its own
// thread with raw system calls, which keep the thread's P and never wake
// the runtime's monitor thread; the garbage collector is off, and nothing
// is allocated per event. The bench starts it with
// GODEBUG=asyncpreemptoff=1, so that the monitor thread does not signal
// those threads every 10 ms either. A server PING is answered on the
// second thread; a write lock keeps its PONG out of a PUB.
//
// Two variants tell where a bridge's cost beyond the relay's comes from.
// With -poller the relay waits for netlink through the runtime's poller, as
// nlbridge does. With -natsgo it is the least a bridge built on nats.go
// can do: it waits as -poller does and publishes each message, undecoded
// and without headers, with nats.go's Publish over the connection nlbridge
// uses (internal/natsconn), on one P with the collector on, as nlbridge
// runs; nats.go's flusher goroutine writes, as it does for nlbridge.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/internal/natsconn"
)

// receiveBuffer is nlbridge's default netlink receive buffer, so that both
// lose events, if at all, under the same bursts.
const receiveBuffer = 4 << 20

func main() {
	netns := flag.String("netns", "", "network namespace file (such as /proc/PID/ns/net) whose rtnetlink events to relay")
	server := flag.String("server", "", "NATS server, host:port (IPv4)")
	subject := flag.String("subject", "relay", "subject of every PUB")
	poller := flag.Bool("poller", false, "wait for netlink through the Go runtime's poller, as nlbridge does, instead of in a blocking recvfrom")
	natsgo := flag.Bool("natsgo", false, "publish through nats.go, on nlbridge's connection (internal/natsconn), one message per kernel message, on one P with the collector on; netlink through the poller")
	flag.Parse()
	if *netns == "" || *server == "" || *subject == "" {
		fmt.Fprintln(os.Stderr, "relay: want -netns, -server and -subject")
		os.Exit(2)
	}
	var err error
	if *natsgo {
		err = runNATSGo(*netns, *server, *subject)
	} else {
		err = run(*netns, *server, *subject, *poller)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run(netns, server, subject string, poller bool) error {
	// Nothing is allocated per event; a collection would have to stop
	// threads that sit in raw system calls.
	debug.SetGCPercent(-1)
	nl, err := openNetlink(netns)
	if err != nil {
		return err
	}
	fd, err := dialNATS(server)
	if err != nil {
		return err
	}
	r := &relay{nl: nl, fd: fd, subject: subject}
	if poller {
		if err := unix.SetNonblock(nl, true); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		// The runtime polls only descriptors it knows, through os.File.
		f := os.NewFile(uintptr(nl), "netlink")
		if r.rc, err = f.SyscallConn(); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
	}
	errs := make(chan error, 2)
	go func() { errs <- r.pong() }()
	go func() { errs <- r.relay() }()
	return <-errs
}

// openNetlink opens a blocking NETLINK_ROUTE socket in the namespace at
// path, joined to the link and IPv4/IPv6 address groups.
func openNetlink(path string) (int, error) {
	runtime.LockOSThread() // this thread enters the namespace and comes back
	defer runtime.UnlockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open own namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open namespace: %w", err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("enter namespace %s: %w", path, err)
	}
	fd, serr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// This thread must not run anything else: leave it locked, and
		// the runtime ends it with its goroutine.
		runtime.LockOSThread()
		return -1, fmt.Errorf("leave namespace: %w", err)
	}
	if serr != nil {
		return -1, fmt.Errorf("netlink socket: %w", serr)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink bind: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink receive buffer: %w", err)
	}
	return fd, nil
}

// dialNATS connects a blocking TCP socket to the server at addr (IPv4
// host:port), with TCP_NODELAY as every NATS client sets, and makes the
// handshake: the server's INFO, then CONNECT and a PING answered by PONG.
func dialNATS(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return -1, fmt.Errorf("server %q: want IPv4 host:port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tcp socket: %w", err)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	var in []byte
	line := func() (string, error) {
		buf := make([]byte, 4096)
		for {
			if i := bytes.Index(in, []byte("\r\n")); i >= 0 {
				l := string(in[:i])
				in = in[i+2:]
				return l, nil
			}
			n, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return "", fmt.Errorf("read from %s: %v (%d bytes)", addr, err, n)
			}
			in = append(in, buf[:n]...)
		}
	}
	if l, err := line(); err != nil || !bytes.HasPrefix([]byte(l), []byte("INFO ")) {
		unix.Close(fd)
		return -1, fmt.Errorf("handshake: want INFO, got %q (%v)", l, err)
	}
	hello := []byte(`CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"relay","lang":"go","version":"0","protocol":1}` + "\r\nPING\r\n")
	if err := writeAll(fd, hello); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("handshake: %w", err)
	}
	for {
		l, err := line()
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("handshake: %w", err)
		}
		switch {
		case l == "PONG":
			return fd, nil
		case bytes.HasPrefix([]byte(l), []byte("-ERR")):
			unix.Close(fd)
			return -1, fmt.Errorf("handshake: server says %s", l)
		}
	}
}

// relay holds the two sockets.
type relay struct {
	nl, fd  int
	subject string
	// rc, when set, waits for the netlink socket through the runtime's
	// poller (-poller): nlbridge's way, on a P of its own.
	rc syscall.RawConn
	// wmu makes each write to fd whole: a blocking write that waits for
	// buffer space gives up the socket's lock, and a PONG could land in
	// the middle of a PUB.
	wmu sync.Mutex
}

// relay reads datagrams from the netlink socket and writes each one's
// messages as PUB lines in one write. It returns on a socket error.
func (r *relay) relay() error {
	if r.rc == nil {
		runtime.LockOSThread() // its raw blocking call holds this thread
	}
	buf := make([]byte, 1<<20)
	out := make([]byte, 0, 1<<21)
	for {
		n, err := receive(r.nl, r.rc, buf)
		if err != nil {
			return err
		}
		out = out[:0]
		eachMessage(buf[:n], func(m []byte) error {
			out = append(out, "PUB "...)
			out = append(out, r.subject...)
			out = append(out, ' ')
			out = strconv.AppendInt(out, int64(len(m)), 10)
			out = append(out, "\r\n"...)
			out = append(out, m...)
			out = append(out, "\r\n"...)
			return nil
		})
		if len(out) == 0 {
			continue
		}
		r.wmu.Lock()
		err = writeAll(r.fd, out)
		r.wmu.Unlock()
		if err != nil {
			return err
		}
	}
}

// pong reads what the server sends and answers each PING. It returns on
// a socket error or a server error.
func (r *relay) pong() error {
	runtime.LockOSThread()
	buf := make([]byte, 64<<10)
	var in []byte
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(r.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return fmt.Errorf("nats read: %w", e)
		case n == 0:
			return errors.New("the server closed the connection")
		}
		in = append(in, buf[:n]...)
		for {
			i := bytes.Index(in, []byte("\r\n"))
			if i < 0 {
				break
			}
			l := in[:i]
			switch {
			case bytes.Equal(l, []byte("PING")):
				r.wmu.Lock()
				err := writeAll(r.fd, []byte("PONG\r\n"))
				r.wmu.Unlock()
				if err != nil {
					return err
				}
			case bytes.HasPrefix(l, []byte("-ERR")):
				return fmt.Errorf("server says %s", l)
			}
			in = in[i+2:]
		}
		in = append(in[:0:0], in...) // keep only the unfinished line
	}
}

// writeAll writes p with blocking write(2) calls: one, unless a signal
// cuts it short.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			p = p[n:]
		case unix.EINTR:
		default:
			return fmt.Errorf("nats write: %w", syscall.Errno(e))
		}
	}
	return nil
}

// runNATSGo is the relay of -natsgo: netlink read through the poller, each
// message published with nats.go.
func runNATSGo(netns, server, subject string) error {
	runtime.GOMAXPROCS(1)
	nl, err := openNetlink(netns)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(nl, true); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	rc, err := os.NewFile(uintptr(nl), "netlink").SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	nc, err := nats.Connect("nats://"+server, nats.Name("relay-natsgo"),
		nats.SetCustomDialer(natsconn.NewDialer(nats.DefaultTimeout, 0)), nats.MaxReconnects(0))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := receive(nl, rc, buf)
		if err != nil {
			return err
		}
		if err := eachMessage(buf[:n], func(m []byte) error { return nc.Publish(subject, m) }); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
}

// receive reads one datagram from the netlink socket nl into buf and
// returns its length: with a raw blocking call when rc is nil, else
// through the runtime's poller (rc). It returns 0 when there is nothing to
// relay: a signal cut the call short, or the kernel dropped notifications
// (ENOBUFS; the bench counts what arrives).
func receive(nl int, rc syscall.RawConn, buf []byte) (int, error) {
	var n uintptr
	var e syscall.Errno
	if rc == nil {
		n, _, e = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(nl), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_TRUNC, 0, 0)
	} else if err := rc.Read(func(fd uintptr) bool {
		n, _, e = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		return e != unix.EAGAIN
	}); err != nil {
		return 0, fmt.Errorf("netlink recv: %w", err)
	}
	switch e {
	case 0:
	case unix.EINTR, unix.ENOBUFS:
		return 0, nil
	default:
		return 0, fmt.Errorf("netlink recv: %w", e)
	}
	if int(n) > len(buf) {
		return 0, fmt.Errorf("netlink datagram of %d bytes, buffer %d", n, len(buf))
	}
	return int(n), nil
}

// eachMessage calls f with each whole netlink message of the datagram b,
// until f fails.
func eachMessage(b []byte, f func(m []byte) error) error {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(*(*uint32)(unsafe.Pointer(&b[0])))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		if err := f(b[:l]); err != nil {
			return err
		}
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return nil
}
