package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/netlink"

	"github.com/nlbridge/nlbridge/event"
)

// rtnetlink message types and families, spelled out so that this file
// builds on every OS (it is pure and tested without a kernel).
const (
	rtmNewLink = 16
	rtmDelLink = 17
	rtmGetLink = 18
	rtmNewAddr = 20
	rtmDelAddr = 21
	rtmGetAddr = 22

	afUnspec = 0
	afInet   = 2
	afBridge = 7
	afInet6  = 10
)

// graveSize is how many deleted links the decoder remembers, so that address
// deletions that the kernel sends after the DELLINK still carry a name.
// Interface indexes are not reused until they wrap, so an old entry is never
// wrong, only eventually forgotten.
const graveSize = 256

// errSkip is not an error: the message is valid but is not an event that
// nlbridge publishes.
var errSkip = errors.New("not published")

// decoder turns rtnetlink messages into events and keeps the index→name
// table that address events need (address messages carry no interface name).
// It is not safe for concurrent use: the goroutine that owns the socket owns
// the decoder.
type decoder struct {
	names map[uint32]string // live links by index
	kinds map[string]string // link kinds seen, to share their strings
	grave [graveSize]struct {
		index uint32
		name  string
	} // recently deleted links, a ring
	gravePos int
}

func newDecoder() *decoder {
	return &decoder{names: make(map[uint32]string), kinds: make(map[string]string)}
}

// decode decodes one netlink message into ev. It returns errSkip for
// messages that are valid but not published (bridge port notifications,
// other families and types), and a descriptive error for messages that
// cannot be decoded.
func (d *decoder) decode(m netlink.Message, ev *event.Event) error {
	switch m.Header.Type {
	case rtmNewLink, rtmDelLink:
		if err := d.link(uint16(m.Header.Type), m.Data, ev); err != nil {
			return fmt.Errorf("decode link message: %w", err)
		}
		return nil
	case rtmNewAddr, rtmDelAddr:
		if err := d.addr(uint16(m.Header.Type), m.Data, ev); err != nil {
			return fmt.Errorf("decode address message: %w", err)
		}
		return nil
	}
	return errSkip
}

// Link attributes that nlbridge reads (linux/if_link.h).
const (
	iflaAddress   = 1
	iflaIfname    = 3
	iflaMTU       = 4
	iflaLink      = 5
	iflaMaster    = 10
	iflaOperstate = 16
	iflaLinkinfo  = 18
	iflaIfalias   = 20
	iflaCarrier   = 33
	iflaLinkNetns = 37 // IFLA_LINK_NETNSID: IFLA_LINK is in another namespace
	iflaInfoKind  = 1

	// nlaTypeMask clears NLA_F_NESTED and NLA_F_NET_BYTEORDER.
	nlaTypeMask = 0x3fff
)

// link decodes an ifinfomsg and its attributes into ev and updates the name
// table. It reads only the attributes nlbridge publishes and walks them in
// place: rtnetlink.LinkMessage and netlink.AttributeDecoder copy every
// attribute, statistics included, some forty allocations for one veth
// message, where this needs one (the MAC address). The tests build their
// messages with rtnetlink, so both read the same bytes the same way.
func (d *decoder) link(typ uint16, b []byte, ev *event.Event) error {
	if len(b) < 16 {
		return fmt.Errorf("%d bytes, want at least 16", len(b))
	}
	// Bridge port notifications (family AF_BRIDGE) describe the port's
	// bridge state, not the device: an RTM_DELLINK of that family means the
	// port left its bridge while the device lives on. Other families are
	// per-protocol details of the same kind.
	if b[0] != afUnspec {
		return errSkip
	}
	l := &ev.Link
	*l = event.Link{
		Index: binary.NativeEndian.Uint32(b[4:8]),
		Flags: binary.NativeEndian.Uint32(b[8:12]),
	}
	if l.Index == 0 {
		return errors.New("index 0")
	}
	var name []byte
	foreignParent := false
	a := attrs{b: b[16:]}
	for a.next() {
		switch a.typ {
		case iflaIfname:
			name = cstring(a.data)
		case iflaMTU:
			l.MTU = a.u32()
		case iflaAddress:
			l.MAC = append(net.HardwareAddr(nil), a.data...) // the buffer is reused
		case iflaOperstate:
			l.State = event.OperState(a.u8())
		case iflaMaster:
			l.Master = a.u32()
		case iflaLink:
			l.Parent = a.u32()
		case iflaIfalias:
			l.Alias = string(cstring(a.data))
		case iflaCarrier:
			l.Carrier = a.u8() != 0
		case iflaLinkNetns:
			foreignParent = true
		case iflaLinkinfo:
			n := attrs{b: a.data}
			for n.next() {
				if n.typ == iflaInfoKind {
					l.Kind = d.kind(cstring(n.data))
				}
			}
			if n.err != nil {
				a.err = fmt.Errorf("IFLA_LINKINFO: %w", n.err)
			}
		}
	}
	if a.err != nil {
		return fmt.Errorf("link %d: %w", l.Index, a.err)
	}
	if len(name) == 0 {
		return fmt.Errorf("link %d has no name", l.Index)
	}
	// Most messages are about links whose name is known: reuse it.
	if old, ok := d.names[l.Index]; ok && old == string(name) {
		l.Name = old
	} else {
		l.Name = string(name)
	}
	if l.Parent == l.Index || foreignParent {
		// Loopback and some tunnels name themselves; and an index in
		// another namespace (a veth peer moved away) would name some other
		// link here.
		l.Parent = 0
	}
	ev.Type = event.NewLink
	if typ == rtmDelLink {
		ev.Type = event.DelLink
		delete(d.names, l.Index)
		g := &d.grave[d.gravePos]
		g.index, g.name = l.Index, l.Name
		d.gravePos = (d.gravePos + 1) % graveSize
	} else {
		d.names[l.Index] = l.Name
	}
	return nil
}

// kind returns b as a string, shared between all links of that kind.
// Kinds are driver names, a small set, so the table stays small; it is
// capped all the same, against a kernel that sends nonsense.
func (d *decoder) kind(b []byte) string {
	if k, ok := d.kinds[string(b)]; ok {
		return k
	}
	k := string(b)
	if len(d.kinds) < 256 {
		d.kinds[k] = k
	}
	return k
}

// attrs walks netlink attributes in place (struct nlattr: length, type,
// payload padded to 4 bytes). next stops at the end or at the first
// malformed attribute, which it reports in err.
type attrs struct {
	b    []byte
	typ  uint16
	data []byte
	err  error
}

func (a *attrs) next() bool {
	if len(a.b) == 0 || a.err != nil {
		return false
	}
	if len(a.b) < 4 {
		a.err = fmt.Errorf("%d stray bytes after the attributes", len(a.b))
		return false
	}
	l := int(binary.NativeEndian.Uint16(a.b[0:2]))
	if l < 4 || l > len(a.b) {
		a.err = fmt.Errorf("attribute length %d with %d bytes left", l, len(a.b))
		return false
	}
	a.typ = binary.NativeEndian.Uint16(a.b[2:4]) & nlaTypeMask
	a.data = a.b[4:l]
	a.b = a.b[min((l+3)&^3, len(a.b)):]
	return true
}

func (a *attrs) u32() uint32 {
	if len(a.data) != 4 {
		a.err = fmt.Errorf("attribute %d: %d bytes, want 4", a.typ, len(a.data))
		return 0
	}
	return binary.NativeEndian.Uint32(a.data)
}

func (a *attrs) u8() uint8 {
	if len(a.data) != 1 {
		a.err = fmt.Errorf("attribute %d: %d bytes, want 1", a.typ, len(a.data))
		return 0
	}
	return a.data[0]
}

// cstring returns b up to its first NUL.
func cstring(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// name returns the name of the link with index i, live or recently deleted.
func (d *decoder) name(i uint32) (string, bool) {
	if n, ok := d.names[i]; ok {
		return n, true
	}
	// Newest first: an index is only reused after wrapping, but be exact.
	for k := range graveSize {
		g := &d.grave[(d.gravePos-1-k+2*graveSize)%graveSize]
		if g.index == i && g.name != "" {
			return g.name, true
		}
	}
	return "", false
}

// Address attributes that nlbridge reads (linux/if_addr.h).
const (
	ifaAddress   = 1
	ifaLocal     = 2
	ifaLabel     = 3
	ifaBroadcast = 4
	ifaCacheinfo = 6
	ifaFlags     = 8
)

// addr decodes an ifaddrmsg and its attributes into ev, in place like link.
func (d *decoder) addr(typ uint16, b []byte, ev *event.Event) error {
	if len(b) < 8 {
		return fmt.Errorf("%d bytes, want at least 8", len(b))
	}
	var fam event.Family
	switch b[0] {
	case afInet:
		fam = event.Inet
	case afInet6:
		fam = event.Inet6
	default:
		return errSkip // other families (MPLS, MCTP …) are not published
	}
	x := &ev.Addr
	*x = event.Addr{
		Index:        binary.NativeEndian.Uint32(b[4:8]),
		Family:       fam,
		PrefixLen:    b[1],
		Flags:        uint32(b[2]),
		Scope:        b[3],
		ValidLft:     event.Forever,
		PreferredLft: event.Forever,
	}
	var local, address, broadcast []byte
	a := attrs{b: b[8:]}
	for a.next() {
		switch a.typ {
		case ifaAddress:
			address = a.data
		case ifaLocal:
			local = a.data
		case ifaBroadcast:
			broadcast = a.data
		case ifaLabel:
			x.Label = string(cstring(a.data))
		case ifaFlags:
			x.Flags = a.u32() // all 32 bits; the header has only 8
		case ifaCacheinfo:
			// struct ifa_cacheinfo: preferred, valid, created, updated.
			if len(a.data) < 8 {
				a.err = fmt.Errorf("IFA_CACHEINFO: %d bytes, want 16", len(a.data))
				break
			}
			x.PreferredLft = binary.NativeEndian.Uint32(a.data[0:4])
			x.ValidLft = binary.NativeEndian.Uint32(a.data[4:8])
		}
	}
	if a.err != nil {
		return fmt.Errorf("address on link %d: %w", x.Index, a.err)
	}
	// IFA_LOCAL is the local address where the kernel gives it (IPv4, and
	// point-to-point IPv6); IFA_ADDRESS is then the peer. IPv6 otherwise
	// sends only IFA_ADDRESS.
	peer := address
	if local == nil {
		local, peer = address, nil
	}
	var ok bool
	if x.Address, ok = ipAddr(local, fam); !ok {
		return fmt.Errorf("address on link %d has no valid %s address", x.Index, fam)
	}
	if x.PrefixLen > uint8(x.Address.BitLen()) {
		return fmt.Errorf("address %s has prefix length %d", x.Address, x.PrefixLen)
	}
	if p, ok := ipAddr(peer, fam); ok && p != x.Address {
		x.Peer = p
	}
	if br, ok := ipAddr(broadcast, fam); ok && fam == event.Inet {
		x.Broadcast = br
	}
	if name, ok := d.name(x.Index); ok {
		x.Ifname = name
	}
	ev.Type = event.NewAddr
	if typ == rtmDelAddr {
		ev.Type = event.DelAddr
	}
	return nil
}

// ipAddr converts the bytes of an IP address of family fam, rejecting a
// mismatch.
func ipAddr(ip []byte, fam event.Family) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	if fam == event.Inet {
		if !a.Is4() {
			return netip.Addr{}, false
		}
	} else if !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}
