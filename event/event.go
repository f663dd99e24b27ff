// Package event defines the value that every stage of nlbridge shares: the
// source decodes kernel messages into Events, the encoder turns them into
// bytes and the sink publishes them. The source never knows the wire format
// and the sink never knows netlink.
package event

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// SchemaVersion is the value of the "v" field of every published message. It
// changes only when a field changes meaning or is removed.
const SchemaVersion = 1

// Type says what happened. Its String form is the "type" field on the wire.
type Type uint8

// The event types. Sync is not a kernel event: it closes every dump. Begin
// opens one; it tells the sink what the dump is for and is never published.
const (
	NewLink Type = iota + 1
	DelLink
	NewAddr
	DelAddr
	Sync
	Begin
)

var typeNames = [...]string{
	NewLink: "NEWLINK",
	DelLink: "DELLINK",
	NewAddr: "NEWADDR",
	DelAddr: "DELADDR",
	Sync:    "SYNC",
	Begin:   "BEGIN",
}

// String returns the wire name of t, such as "NEWLINK".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, bool) {
	for t, name := range typeNames {
		if name != "" && name == s {
			return Type(t), true
		}
	}
	return 0, false
}

// IsLink reports whether t is NEWLINK or DELLINK.
func (t Type) IsLink() bool { return t == NewLink || t == DelLink }

// IsAddr reports whether t is NEWADDR or DELADDR.
func (t Type) IsAddr() bool { return t == NewAddr || t == DelAddr }

// IsDel reports whether t removes an object (DELLINK or DELADDR).
func (t Type) IsDel() bool { return t == DelLink || t == DelAddr }

// Event is one published message. Exactly one of Link, Addr and Sync is
// meaningful, as Type says. The values are embedded rather than pointed to so
// that decoding an event allocates as little as possible.
type Event struct {
	Type Type
	// Time is when nlbridge read the message from the kernel.
	Time time.Time
	// Dump is true on messages that are part of a dump rather than a change.
	Dump bool

	// Host, Boot and Seq are stamped by the sink as it publishes.
	Host string
	Boot string
	Seq  uint64

	// Changed marks, on a NEWLINK or NEWADDR that updates an object already
	// published, which published fields differ: bit i names LinkFields[i]
	// or AddrFields[i]. Zero on new objects and on dump messages.
	Changed uint32

	Link Link
	Addr Addr
	Sync SyncInfo // on Begin and Sync
}

// LinkFields names the link fields that Event.Changed can mark, by bit.
var LinkFields = []string{"name", "kind", "state", "enabled", "running", "mtu", "mac",
	"master", "parent", "alias", "carrier", "flags"}

// AddrFields names the address fields that Event.Changed can mark, by bit.
// The fields of Addr.ID never change; an IPv6 address's peer and prefix
// length are not among them, and can.
var AddrFields = []string{"ifname", "peer", "broadcast", "scope", "label", "flags",
	"valid_lft", "preferred_lft", "prefix_len"}

// Link is the state of one network interface, as the kernel reported it.
type Link struct {
	Index uint32
	Name  string
	// Kind is the driver kind from IFLA_LINKINFO (veth, bridge, vxlan …),
	// empty for devices that have none (loopback, most physical NICs).
	Kind string
	// State is the operational state (RFC 2863), see OperState.
	State OperState
	// Flags are the IFF_* device flags; Enabled and Running derive from them.
	Flags  uint32
	MTU    uint32
	MAC    net.HardwareAddr
	Master uint32 // index of the master device, 0 for none
	Parent uint32 // IFLA_LINK: the lower or peer device index, 0 for none
	Alias  string
	// Carrier is IFLA_CARRIER; the kernel sends it on every link message.
	Carrier bool
}

// Enabled reports IFF_UP: the device is administratively up.
func (l *Link) Enabled() bool { return l.Flags&IFFUp != 0 }

// Running reports IFF_RUNNING: the device is operationally up.
func (l *Link) Running() bool { return l.Flags&IFFRunning != 0 }

// Family is an address family.
type Family uint8

// The address families nlbridge reports, with the values of AF_INET and
// AF_INET6 on Linux.
const (
	Inet  Family = 2
	Inet6 Family = 10
)

// String returns "inet" or "inet6" as ip(8) prints them.
func (f Family) String() string {
	switch f {
	case Inet:
		return "inet"
	case Inet6:
		return "inet6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// Forever is the lifetime value the kernel uses for addresses that never
// expire; such lifetimes are left out on the wire.
const Forever = ^uint32(0)

// Addr is one interface address.
type Addr struct {
	Index  uint32
	Ifname string
	Family Family
	// Address is the local address (IFA_LOCAL, or IFA_ADDRESS when there is
	// no IFA_LOCAL, as for IPv6).
	Address netip.Addr
	// Peer is the remote end of a point-to-point address: IFA_ADDRESS when
	// it differs from IFA_LOCAL. Invalid when there is none.
	Peer      netip.Addr
	PrefixLen uint8
	Broadcast netip.Addr // IPv4 only, invalid when unset
	Scope     uint8      // RT_SCOPE_*, see ScopeName
	Label     string
	Flags     uint32 // IFA_F_*, from IFA_FLAGS when present
	// ValidLft and PreferredLft are lifetimes in seconds; Forever means the
	// address does not expire.
	ValidLft     uint32
	PreferredLft uint32
}

// ID returns the identity of a within its interface as ip(8) writes the
// address: "192.0.2.1/24" for IPv4, "10.9.0.1 peer 10.9.0.2/32" for IPv4
// with a peer (the prefix length is the peer's), and "2001:db8::1" for
// IPv6, without a zone. Consumers key addresses by Index and ID.
//
// It follows the kernel: IPv4 addresses are told apart by local address,
// prefix length and peer (10.9.0.1 may be on one interface once per peer),
// IPv6 addresses by address alone (the kernel refuses the same address
// twice whatever the prefix length, and "ip addr replace" changes the peer
// in place).
// Family decides the form: any family but Inet6 takes the IPv4 one.
func (a *Addr) ID() string {
	var b [64]byte // room for the longest IPv4 form; IPv6 ones fit too
	return string(a.AppendID(b[:0]))
}

// AppendID appends a.ID() to b and returns the extended slice.
func (a *Addr) AppendID(b []byte) []byte {
	b = a.Address.WithZone("").AppendTo(b)
	if a.Family == Inet6 {
		return b
	}
	if a.Peer.IsValid() {
		b = a.Peer.WithZone("").AppendTo(append(b, " peer "...))
	}
	return strconv.AppendUint(append(b, '/'), uint64(a.PrefixLen), 10)
}

// Reason says why a dump happened; it is the "reason" field of SYNC.
type Reason string

// The reasons for a dump.
const (
	ReasonStartup Reason = "startup"
	ReasonRequest Reason = "request"
	// ReasonResync follows a dump that nlbridge made by itself because a
	// notification was lost: the kernel reported that it dropped messages
	// (a netlink overflow), or one could not be decoded. Only the
	// differences from what was published are published.
	ReasonResync Reason = "resync"
	// ReasonReconnect follows the reconciliation after nlbridge
	// (re)connected to NATS: what changed while it could not publish.
	ReasonReconnect Reason = "reconnect"
)

// Full reports whether a dump for reason r publishes every object (startup
// and request dumps) rather than only the differences from what was
// published (resync).
func (r Reason) Full() bool { return r == ReasonStartup || r == ReasonRequest }

// ErrNoInterface says that a dump was asked for an interface that does not
// exist, or that vanished before its dump ran. The source returns it,
// wrapped; the sink's dump service answers it with a 404. Match it with
// errors.Is.
var ErrNoInterface = errors.New("no such interface")

// SyncInfo describes a dump: on Begin, what it is for; on the SYNC marker
// published after it, what it held.
type SyncInfo struct {
	Reason Reason
	// Interface narrows a dump to one interface name; empty for all.
	Interface string
	Links     int // links in the dump
	Addrs     int // addresses in the dump
	// FirstSeq is the seq of the dump's first message, stamped by the sink.
	FirstSeq uint64
}
