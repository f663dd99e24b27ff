package source

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
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
	grave [graveSize]struct {
		index uint32
		name  string
	} // recently deleted links, a ring
	gravePos int
}

func newDecoder() *decoder {
	return &decoder{names: make(map[uint32]string)}
}

// decode decodes one netlink message into ev. It returns errSkip for
// messages that are valid but not published (bridge port notifications,
// other families and types), and a descriptive error for messages that
// cannot be decoded.
func (d *decoder) decode(m netlink.Message, ev *event.Event) error {
	switch m.Header.Type {
	case rtmNewLink, rtmDelLink:
		// Bridge port notifications (family AF_BRIDGE) describe the port's
		// bridge state, not the device: an RTM_DELLINK of that family means
		// the port left its bridge while the device lives on. Check the
		// family before decoding so that they cost nothing.
		if len(m.Data) > 0 && m.Data[0] == afBridge {
			return errSkip
		}
		var lm rtnetlink.LinkMessage
		if err := lm.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("decode link message: %w", err)
		}
		return d.link(uint16(m.Header.Type), &lm, ev)
	case rtmNewAddr, rtmDelAddr:
		var am rtnetlink.AddressMessage
		if err := am.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("decode address message: %w", err)
		}
		return d.addr(uint16(m.Header.Type), &am, ev)
	}
	return errSkip
}

// link fills ev from a decoded link message and updates the name table.
func (d *decoder) link(typ uint16, m *rtnetlink.LinkMessage, ev *event.Event) error {
	if m.Family != afUnspec {
		return errSkip // AF_BRIDGE port notifications, see decode
	}
	a := m.Attributes
	if a == nil || a.Name == "" {
		return fmt.Errorf("link message for index %d has no name", m.Index)
	}
	if m.Index == 0 {
		return fmt.Errorf("link message for %q has index 0", a.Name)
	}
	ev.Type = event.NewLink
	if typ == rtmDelLink {
		ev.Type = event.DelLink
	}
	l := &ev.Link
	*l = event.Link{
		Index: m.Index,
		Name:  a.Name,
		State: event.OperState(a.OperationalState),
		Flags: m.Flags,
		MTU:   a.MTU,
	}
	if a.Info != nil {
		l.Kind = a.Info.Kind
	}
	if len(a.Address) > 0 {
		// The attribute aliases the receive buffer, which is reused.
		l.MAC = append(net.HardwareAddr(nil), a.Address...)
	}
	if a.Master != nil {
		l.Master = *a.Master
	}
	if a.Type != m.Index {
		l.Parent = a.Type // rtnetlink names IFLA_LINK "Type"
	}
	if a.Alias != nil {
		l.Alias = *a.Alias
	}
	if a.Carrier != nil {
		l.Carrier = *a.Carrier != 0
	}

	if ev.Type == event.DelLink {
		delete(d.names, m.Index)
		g := &d.grave[d.gravePos]
		g.index, g.name = m.Index, a.Name
		d.gravePos = (d.gravePos + 1) % graveSize
	} else if d.names[m.Index] != a.Name {
		d.names[m.Index] = a.Name
	}
	return nil
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

// addr fills ev from a decoded address message.
func (d *decoder) addr(typ uint16, m *rtnetlink.AddressMessage, ev *event.Event) error {
	var fam event.Family
	switch m.Family {
	case afInet:
		fam = event.Inet
	case afInet6:
		fam = event.Inet6
	default:
		return errSkip
	}
	a := m.Attributes
	if a == nil {
		return fmt.Errorf("address message for index %d has no attributes", m.Index)
	}
	// IFA_LOCAL is the local address where the kernel gives it (IPv4, and
	// point-to-point IPv6); IFA_ADDRESS is then the peer. IPv6 otherwise
	// sends only IFA_ADDRESS.
	local, peer := a.Local, a.Address
	if local == nil {
		local, peer = a.Address, nil
	}
	addr, ok := ipAddr(local, fam)
	if !ok {
		return fmt.Errorf("address message for index %d has no valid %s address", m.Index, fam)
	}
	if m.PrefixLength > uint8(addr.BitLen()) {
		return fmt.Errorf("address message for %s has prefix length %d", addr, m.PrefixLength)
	}
	ev.Type = event.NewAddr
	if typ == rtmDelAddr {
		ev.Type = event.DelAddr
	}
	x := &ev.Addr
	*x = event.Addr{
		Index:        m.Index,
		Family:       fam,
		Address:      addr,
		PrefixLen:    m.PrefixLength,
		Scope:        m.Scope,
		Label:        a.Label,
		Flags:        uint32(m.Flags),
		ValidLft:     a.CacheInfo.Valid,
		PreferredLft: a.CacheInfo.Preferred,
	}
	if a.Flags != 0 {
		x.Flags = a.Flags // IFA_FLAGS holds all 32 bits; the header only 8
	}
	if a.CacheInfo == (rtnetlink.CacheInfo{}) {
		// No IFA_CACHEINFO: the kernel always sends it, so this is a
		// hand-made message; treat the address as permanent.
		x.ValidLft, x.PreferredLft = event.Forever, event.Forever
	}
	if p, ok := ipAddr(peer, fam); ok && p != addr {
		x.Peer = p
	}
	if b, ok := ipAddr(a.Broadcast, fam); ok && fam == event.Inet {
		x.Broadcast = b
	}
	if name, ok := d.name(m.Index); ok {
		x.Ifname = name
	}
	return nil
}

// ipAddr converts a decoded IP of family fam, rejecting a mismatch.
func ipAddr(ip net.IP, fam event.Family) (netip.Addr, bool) {
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
