//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// netNS is a network namespace that the benchmark made for itself. It is
// never mounted: it lives as long as the process holds file, so nothing is
// left behind even if the benchmark dies, and the host's links are never
// touched. Close releases it; the kernel then deletes its links.
type netNS struct {
	// path names the namespace for nlbridge's netlink.netns setting.
	path string
	// file is the descriptor that keeps the namespace alive.
	file *os.File
	// conn is an rtnetlink connection inside the namespace.
	conn *rtnetlink.Conn
}

// newNetNS creates a namespace, as internal/nstest does, without a test.
func newNetNS() (*netNS, error) {
	f, err := nstest.Unshare()
	if err != nil {
		return nil, fmt.Errorf("create network namespace: %w", err)
	}
	conn, err := rtnetlink.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dial rtnetlink in namespace: %w", err)
	}
	return &netNS{path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), file: f, conn: conn}, nil
}

// Close closes the rtnetlink connection and the last descriptor of the
// namespace. It may be called more than once.
func (ns *netNS) Close() {
	ns.conn.Close()
	ns.file.Close()
}

// command runs name inside the namespace, as `ip netns exec` would, and
// returns its standard output. It is killed after timeout.
func (ns *netNS) command(ctx context.Context, timeout time.Duration, stdin io.Reader, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	p, err := startProc(ns, name, cmd)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timeout %v)", ctx.Err(), timeout)
		}
		return nil, fmt.Errorf("%s %v: %w: %s", name, args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// ipBatch runs `ip -batch -` inside the namespace with the given commands.
func (ns *netNS) ipBatch(ctx context.Context, timeout time.Duration, batch []byte) error {
	_, err := ns.command(ctx, timeout, bytes.NewReader(batch), "ip", "-batch", "-")
	return err
}

// addVeth creates a veth pair and returns the index of name.
func (ns *netNS) addVeth(name, peer string) (uint32, error) {
	if err := ns.conn.Link.New(nstest.VethRequest(name, peer)); err != nil {
		return 0, fmt.Errorf("add veth %s/%s: %w", name, peer, err)
	}
	links, err := ns.conn.Link.List()
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == name {
			return l.Index, nil
		}
	}
	return 0, fmt.Errorf("veth %s not found after creating it", name)
}

// setMTU changes a link's MTU with one rtnetlink request and waits for the
// kernel's acknowledgement.
func (ns *netNS) setMTU(index, mtu uint32) error {
	err := ns.conn.Link.Set(&rtnetlink.LinkMessage{Index: index, Attributes: &rtnetlink.LinkAttributes{MTU: mtu}})
	if err != nil {
		return fmt.Errorf("set link %d mtu %d: %w", index, mtu, err)
	}
	return nil
}

// counts returns how many links and addresses the namespace holds.
func (ns *netNS) counts() (links, addrs int, err error) {
	l, err := ns.conn.Link.List()
	if err != nil {
		return 0, 0, fmt.Errorf("list links: %w", err)
	}
	a, err := ns.conn.Address.List()
	if err != nil {
		return 0, 0, fmt.Errorf("list addresses: %w", err)
	}
	return len(l), len(a), nil
}

// burstBatch is the `ip -batch` input that creates n bare veth pairs named
// <prefix>a<i> and <prefix>b<i>.
func burstBatch(prefix string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "link add %sa%d type veth peer name %sb%d\n", prefix, i, prefix, i)
	}
	return b.Bytes()
}

// deleteBatch is the `ip -batch` input that deletes the n pairs that
// burstBatch or nstest.VethPairsBatch made: it puts one end of each in a device group
// and deletes the group, which the kernel does in one go (deleting links one
// by one waits for an RCU grace period each).
func deleteBatch(prefix string, n int) []byte {
	const group = 4242
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "link set %sa%d group %d\n", prefix, i, group)
	}
	fmt.Fprintf(&b, "link delete group %d\n", group)
	return b.Bytes()
}
