//go:build linux

// Package nstest gives integration tests a network namespace of their own,
// with helpers that change its links and addresses through rtnetlink. The
// namespace lives only as long as the test holds its file descriptor: it is
// never mounted, so nothing is left behind even when a test fails or the
// process dies, and the host's own interfaces are never touched.
package nstest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NS is a fresh network namespace with an rtnetlink connection inside it.
type NS struct {
	// Path names the namespace for code that opens it, as nlbridge's
	// netlink.netns setting does; it is valid while the test runs.
	Path string
	file *os.File
	conn *rtnetlink.Conn
}

// SkipUnlessRoot skips t unless the test runs as root, saying why.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (CI runs the tests as root)")
	}
}

// New creates a network namespace that is destroyed when t ends.
func New(t testing.TB) *NS {
	t.Helper()
	SkipUnlessRoot(t)
	f, err := Unshare()
	if err != nil {
		t.Fatalf("nstest: create network namespace: %v", err)
	}
	conn, err := rtnetlink.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		f.Close()
		t.Fatalf("nstest: dial rtnetlink in namespace: %v", err)
	}
	ns := &NS{Path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), file: f, conn: conn}
	t.Cleanup(func() {
		conn.Close()
		f.Close() // the last reference: the kernel deletes the namespace and its links
	})
	return ns
}

// Open opens the existing namespace at path (such as /proc/PID/ns/net) for
// the rest of the test; the namespace belongs to whoever made it.
func Open(t testing.TB, path string) *NS {
	t.Helper()
	SkipUnlessRoot(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	conn, err := rtnetlink.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		f.Close()
		t.Fatalf("nstest: dial rtnetlink in %s: %v", path, err)
	}
	t.Cleanup(func() {
		conn.Close()
		f.Close()
	})
	return &NS{Path: path, file: f, conn: conn}
}

// Unshare creates a network namespace on a locked thread, keeps a
// descriptor to it and puts the thread back where it was. The namespace
// lives as long as the descriptor (and whatever else holds it); New wraps
// it for tests, and the benchmark command uses it directly.
func Unshare() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	f, openErr := os.Open("/proc/thread-self/ns/net")
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the new namespace: never reuse it.
		runtime.LockOSThread()
		return nil, fmt.Errorf("setns back: %w", err)
	}
	return f, openErr
}

// Conn returns the rtnetlink connection inside the namespace.
func (ns *NS) Conn() *rtnetlink.Conn { return ns.conn }

// Index returns the index of the link named name.
func (ns *NS) Index(t testing.TB, name string) uint32 {
	t.Helper()
	links, err := ns.conn.Link.List()
	if err != nil {
		t.Fatalf("nstest: list links: %v", err)
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == name {
			return l.Index
		}
	}
	t.Fatalf("nstest: no link named %q", name)
	return 0
}

// VethRequest is the RTM_NEWLINK request that creates the veth pair name
// and peer.
func VethRequest(name, peer string) *rtnetlink.LinkMessage {
	return &rtnetlink.LinkMessage{
		Attributes: &rtnetlink.LinkAttributes{
			Name: name,
			Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{
				PeerInfo: &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: peer}},
			}},
		},
	}
}

// AddVeth creates a veth pair and returns the indexes of both ends.
func (ns *NS) AddVeth(t testing.TB, name, peer string) (uint32, uint32) {
	t.Helper()
	if err := ns.conn.Link.New(VethRequest(name, peer)); err != nil {
		t.Fatalf("nstest: add veth %s/%s: %v", name, peer, err)
	}
	return ns.Index(t, name), ns.Index(t, peer)
}

// AddBridge creates a bridge and returns its index.
func (ns *NS) AddBridge(t testing.TB, name string) uint32 {
	t.Helper()
	err := ns.conn.Link.New(&rtnetlink.LinkMessage{
		Attributes: &rtnetlink.LinkAttributes{
			Name: name,
			Info: &rtnetlink.LinkInfo{Kind: "bridge"},
		},
	})
	if err != nil {
		t.Fatalf("nstest: add bridge %s: %v", name, err)
	}
	return ns.Index(t, name)
}

// SetUp sets the link administratively up or down.
func (ns *NS) SetUp(t testing.TB, index uint32, up bool) {
	t.Helper()
	flags := uint32(0)
	if up {
		flags = unix.IFF_UP
	}
	if err := ns.conn.Link.Set(&rtnetlink.LinkMessage{Index: index, Flags: flags, Change: unix.IFF_UP}); err != nil {
		t.Fatalf("nstest: set link %d up=%v: %v", index, up, err)
	}
}

// SetMTU changes a link's MTU.
func (ns *NS) SetMTU(t testing.TB, index, mtu uint32) {
	t.Helper()
	if err := ns.conn.Link.Set(&rtnetlink.LinkMessage{Index: index, Attributes: &rtnetlink.LinkAttributes{MTU: mtu}}); err != nil {
		t.Fatalf("nstest: set link %d mtu %d: %v", index, mtu, err)
	}
}

// Rename renames a link, which must be down.
func (ns *NS) Rename(t testing.TB, index uint32, name string) {
	t.Helper()
	if err := ns.conn.Link.Set(&rtnetlink.LinkMessage{Index: index, Attributes: &rtnetlink.LinkAttributes{Name: name}}); err != nil {
		t.Fatalf("nstest: rename link %d to %q: %v", index, name, err)
	}
}

// SetMaster enslaves a link to master, or releases it when master is 0.
func (ns *NS) SetMaster(t testing.TB, index, master uint32) {
	t.Helper()
	var err error
	if master == 0 {
		err = ns.conn.Link.RemoveMaster(index)
	} else {
		err = ns.conn.Link.SetMaster(index, master, nil)
	}
	if err != nil {
		t.Fatalf("nstest: set master of %d to %d: %v", index, master, err)
	}
}

// DelLink deletes a link.
func (ns *NS) DelLink(t testing.TB, index uint32) {
	t.Helper()
	if err := ns.conn.Link.Delete(index); err != nil {
		t.Fatalf("nstest: delete link %d: %v", index, err)
	}
}

// addrMessage builds the message that adds or deletes p on a link. IPv6
// addresses get IFA_F_NODAD so that they are usable at once.
func addrMessage(index uint32, p netip.Prefix) *rtnetlink.AddressMessage {
	ip := net.IP(p.Addr().AsSlice())
	m := &rtnetlink.AddressMessage{
		PrefixLength: uint8(p.Bits()),
		Index:        index,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip},
	}
	if p.Addr().Is4() {
		m.Family = unix.AF_INET
		m.Attributes.Local = ip
		if p.Bits() < 31 {
			b := p.Masked().Addr().As4()
			host := ^uint32(0) >> p.Bits()
			for i := range 4 {
				b[i] |= byte(host >> (8 * (3 - i)))
			}
			m.Attributes.Broadcast = net.IP(b[:])
		}
	} else {
		m.Family = unix.AF_INET6
		m.Attributes.Flags = unix.IFA_F_NODAD
	}
	return m
}

// AddAddr adds an address to a link (IPv4 with its broadcast address).
func (ns *NS) AddAddr(t testing.TB, index uint32, p netip.Prefix) {
	t.Helper()
	if err := ns.conn.Address.New(addrMessage(index, p)); err != nil {
		t.Fatalf("nstest: add address %s to link %d: %v", p, index, err)
	}
}

// DelAddr deletes an address from a link.
func (ns *NS) DelAddr(t testing.TB, index uint32, p netip.Prefix) {
	t.Helper()
	if err := ns.conn.Address.Delete(addrMessage(index, p)); err != nil {
		t.Fatalf("nstest: delete address %s from link %d: %v", p, index, err)
	}
}

// Link returns the kernel's current message for the link with index i.
func (ns *NS) Link(t testing.TB, i uint32) rtnetlink.LinkMessage {
	t.Helper()
	l, err := ns.conn.Link.Get(i)
	if err != nil {
		t.Fatalf("nstest: get link %d: %v", i, err)
	}
	return l
}

// DialIn dials addr from inside the network namespace at path, so that a
// test can reach a server listening on the loopback of another namespace.
// The socket keeps its namespace; the thread that made it is discarded.
func DialIn(path, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, so no other
		// goroutine ever runs in the other namespace.
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		c, err := net.Dial(network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Command returns cmd's output after running it inside the namespace, as
// `ip netns exec` would: the child is forked from a thread that entered
// the namespace, and that thread is discarded afterwards.
func (ns *NS) Command(name string, stdin io.Reader, args ...string) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Setns(int(ns.file.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		cmd := exec.Command(name, args...)
		cmd.Stdin = stdin
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			err = fmt.Errorf("%s %v: %w: %s", name, args, err, stderr.Bytes())
		}
		ch <- result{out, err}
	}()
	r := <-ch
	return r.out, r.err
}

// AddVethPairs creates n veth pairs named <prefix>a<i> and <prefix>b<i>,
// each end with an IPv4 and an IPv6 address, with one `ip -batch` run.
func (ns *NS) AddVethPairs(t testing.TB, prefix string, n int) {
	t.Helper()
	if _, err := ns.Command("ip", bytes.NewReader(VethPairsBatch(prefix, 0, n)), "-batch", "-"); err != nil {
		t.Fatalf("nstest: %v", err)
	}
}

// VethPairsBatch is the `ip -batch` input that creates the veth pairs
// <prefix>a<i> and <prefix>b<i> for i from from to to-1, each end with an
// IPv4 address (10.x.y.1/30 and .2) and an IPv6 address (2001:db8:i::1/64
// and ::2, nodad so that they are usable at once).
func VethPairsBatch(prefix string, from, to int) []byte {
	var b bytes.Buffer
	for i := from; i < to; i++ {
		a, p := fmt.Sprintf("%sa%d", prefix, i), fmt.Sprintf("%sb%d", prefix, i)
		fmt.Fprintf(&b, "link add %s type veth peer name %s\n", a, p)
		fmt.Fprintf(&b, "address add 10.%d.%d.1/30 dev %s\n", i>>8&0xff, i&0xff, a)
		fmt.Fprintf(&b, "address add 10.%d.%d.2/30 dev %s\n", i>>8&0xff, i&0xff, p)
		fmt.Fprintf(&b, "address add 2001:db8:%x::1/64 dev %s nodad\n", i, a)
		fmt.Fprintf(&b, "address add 2001:db8:%x::2/64 dev %s nodad\n", i, p)
	}
	return b.Bytes()
}
