//go:build linux

package nstest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"golang.org/x/sys/unix"
)

// Close closes the namespace before the test ends: the rtnetlink connection
// and the descriptor were its last references, so the kernel destroys it
// (asynchronously, in its netns cleanup work) and deletes its links, and
// with them the other end of every veth pair that crossed into it. After
// Close, ns must not be used and ns.Path names nothing. The cleanup that New
// registered closes both again, which is harmless.
func (ns *NS) Close() {
	ns.conn.Close()
	ns.file.Close()
}

// MoveTo moves the link with the given index into the namespace other
// (RTM_NEWLINK with IFLA_NET_NS_FD) and returns its index there, which is
// the same unless other already uses it. The link keeps its name, so other
// must not hold a link of that name.
func (ns *NS) MoveTo(t testing.TB, index uint32, other *NS) uint32 {
	t.Helper()
	name := ns.Link(t, index).Attributes.Name
	err := ns.conn.Link.Set(&rtnetlink.LinkMessage{
		Index:      index,
		Attributes: &rtnetlink.LinkAttributes{NetNS: rtnetlink.NetNSForFD(uint32(other.file.Fd()))},
	})
	if err != nil {
		t.Fatalf("nstest: move link %d (%s) to another namespace: %v", index, name, err)
	}
	return other.Index(t, name)
}

// AddVethPeerIn creates a veth pair whose end name is in ns and whose end
// peer is in the namespace other, and returns the index of each end in its
// own namespace.
func (ns *NS) AddVethPeerIn(t testing.TB, name, peer string, other *NS) (uint32, uint32) {
	t.Helper()
	err := ns.conn.Link.New(&rtnetlink.LinkMessage{
		Attributes: &rtnetlink.LinkAttributes{
			Name: name,
			Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{
				PeerInfo: &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{
					Name:  peer,
					NetNS: rtnetlink.NetNSForFD(uint32(other.file.Fd())),
				}},
			}},
		},
	})
	if err != nil {
		t.Fatalf("nstest: add veth %s with peer %s in another namespace: %v", name, peer, err)
	}
	return ns.Index(t, name), other.Index(t, peer)
}

// AddAddrDAD adds an IPv6 address to a link without IFA_F_NODAD, so that
// the kernel runs duplicate address detection: the address is tentative
// until DAD succeeds (when the link is up with carrier).
func (ns *NS) AddAddrDAD(t testing.TB, index uint32, p netip.Prefix) {
	t.Helper()
	if !p.Addr().Is6() {
		t.Fatalf("nstest: AddAddrDAD %s: DAD is for IPv6 addresses", p)
	}
	m := addrMessage(index, p)
	m.Attributes.Flags = 0
	if err := ns.conn.Address.New(m); err != nil {
		t.Fatalf("nstest: add address %s to link %d: %v", p, index, err)
	}
}

// DelVethPairs deletes the n veth pairs that AddVethPairs made with the
// same prefix, with one `ip -batch` run. It puts the first end of each pair
// in a device group and deletes the group, which the kernel does in one
// go, each pair's other end with it: all the notifications come in one
// burst, and it takes milliseconds where deleting the links one by one
// waits for an RCU grace period each (some 15 ms).
func (ns *NS) DelVethPairs(t testing.TB, prefix string, n int) {
	t.Helper()
	const group = 4242
	var batch bytes.Buffer
	for i := range n {
		fmt.Fprintf(&batch, "link set %sa%d group %d\n", prefix, i, group)
	}
	fmt.Fprintf(&batch, "link delete group %d\n", group)
	if _, err := ns.Command("ip", &batch, "-batch", "-"); err != nil {
		t.Fatalf("nstest: %v", err)
	}
}

// FastDAD makes IPv6 duplicate address detection on the given links take
// tens of milliseconds instead of up to two seconds: no random delay before
// the first probe (router_solicitation_delay 0) and 50 ms between probes
// (retrans_time_ms). DAD still runs and addresses are still tentative
// until it ends. Set it before the link comes up.
func (ns *NS) FastDAD(t testing.TB, indexes ...uint32) {
	t.Helper()
	for _, i := range indexes {
		name := ns.Link(t, i).Attributes.Name
		ns.Sysctl(t, "net/ipv6/conf/"+name+"/router_solicitation_delay", "0")
		ns.Sysctl(t, "net/ipv6/neigh/"+name+"/retrans_time_ms", "50")
	}
}

// Sysctl writes value to /proc/sys/<key> inside the namespace (key in path
// form, such as net/ipv6/conf/v0/dad_transmits, so that interface names
// with dots stay whole). Only per-namespace keys may be written: net.core
// and other global keys would change the host.
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if !strings.HasPrefix(key, "net/ipv4/") && !strings.HasPrefix(key, "net/ipv6/") {
		t.Fatalf("nstest: sysctl %s: only net/ipv4 and net/ipv6 keys are per namespace", key)
	}
	path := filepath.Join("/proc/sys", filepath.Clean("/"+key))
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine. /proc/sys/net
		// shows the namespace of the thread that opens the file.
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.file.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- os.WriteFile(path, []byte(value), 0)
	}()
	if err := <-errc; err != nil {
		t.Fatalf("nstest: sysctl %s=%s: %v", key, value, err)
	}
}

// WaitSettled waits, for up to timeout, until the kernel has finished the
// work that it does on links and addresses after the request that caused
// it, and fails t if it does not: every link's operational state follows
// its carrier (the link watch work has run), every up link with carrier
// and a hardware address has its IPv6 link-local address, and no IPv6
// address is still tentative (duplicate address detection has ended; the
// kernel announces an automatic link-local address only when it has).
// After that, the kernel changes nothing on its own.
func (ns *NS) WaitSettled(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why, err := ns.unsettled()
		if err != nil {
			t.Fatalf("nstest: %v", err)
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nstest: the kernel did not settle in %v: %s", timeout, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unsettled says what the kernel is still working on, or "" when nothing.
func (ns *NS) unsettled() (string, error) {
	links, err := ns.conn.Link.List()
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	addrs, err := ns.conn.Address.List()
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	var why []string
	linkLocal := map[uint32]bool{}
	for _, a := range addrs {
		flags := a.Attributes.Flags | uint32(a.Flags)
		if flags&unix.IFA_F_TENTATIVE != 0 && flags&unix.IFA_F_DADFAILED == 0 {
			why = append(why, fmt.Sprintf("address %s on link %d is tentative", a.Attributes.Address, a.Index))
		}
		if a.Family == unix.AF_INET6 && a.Attributes.Address.IsLinkLocalUnicast() {
			linkLocal[a.Index] = true
		}
	}
	for _, l := range links {
		up := l.Flags&unix.IFF_UP != 0
		carrier := l.Attributes.Carrier != nil && *l.Attributes.Carrier != 0
		state := l.Attributes.OperationalState
		operUp := state == rtnetlink.OperStateUp || state == rtnetlink.OperStateUnknown
		switch {
		case !up:
		case carrier && !operUp:
			why = append(why, fmt.Sprintf("link %s has carrier but operational state %d", l.Attributes.Name, state))
		case !carrier && state == rtnetlink.OperStateUp:
			why = append(why, fmt.Sprintf("link %s has no carrier but is operationally up", l.Attributes.Name))
		case carrier && l.Flags&unix.IFF_LOOPBACK == 0 && hasMAC(l.Attributes.Address) && !linkLocal[l.Index]:
			why = append(why, fmt.Sprintf("link %s is up with carrier but has no IPv6 link-local address yet", l.Attributes.Name))
		}
	}
	return strings.Join(why, "; "), nil
}

// hasMAC reports whether a is an Ethernet address that is not all zeros,
// from which the kernel derives a link-local address.
func hasMAC(a net.HardwareAddr) bool {
	return len(a) == 6 && !slices.Equal(a, make(net.HardwareAddr, 6))
}
