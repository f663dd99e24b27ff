package event

import "strconv"

// OperState is a link's operational state (IF_OPER_*, RFC 2863).
type OperState uint8

// The operational states, with the kernel's values.
const (
	OperUnknown OperState = iota
	OperNotPresent
	OperDown
	OperLowerLayerDown
	OperTesting
	OperDormant
	OperUp
)

var operNames = [...]string{
	OperUnknown:        "unknown",
	OperNotPresent:     "notpresent",
	OperDown:           "down",
	OperLowerLayerDown: "lowerlayerdown",
	OperTesting:        "testing",
	OperDormant:        "dormant",
	OperUp:             "up",
}

// String returns the lower-case name of s, such as "up" or
// "lowerlayerdown"; values the kernel may add later print as numbers.
func (s OperState) String() string {
	if int(s) < len(operNames) {
		return operNames[s]
	}
	return strconv.Itoa(int(s))
}

// FlagName pairs a flag bit with the lower-case name nlbridge publishes.
type FlagName struct {
	Bit  uint32
	Name string
}

// Device flags (IFF_*) that Link.Enabled and Link.Running read.
const (
	IFFUp      = 0x1
	IFFRunning = 0x40
)

// LinkFlags names the IFF_* device flags in bit order, as ip(8) names them
// but in lower case.
var LinkFlags = []FlagName{
	{0x1, "up"},
	{0x2, "broadcast"},
	{0x4, "debug"},
	{0x8, "loopback"},
	{0x10, "pointopoint"},
	{0x20, "notrailers"},
	{0x40, "running"},
	{0x80, "noarp"},
	{0x100, "promisc"},
	{0x200, "allmulti"},
	{0x400, "master"},
	{0x800, "slave"},
	{0x1000, "multicast"},
	{0x2000, "portsel"},
	{0x4000, "automedia"},
	{0x8000, "dynamic"},
	{0x10000, "lower_up"},
	{0x20000, "dormant"},
	{0x40000, "echo"},
}

// AddrFlags names the IFA_F_* address flags in bit order. Bit 0x01 is
// "secondary" for IPv4 and "temporary" for IPv6, as ip(8) prints it; see
// AddrFlagName.
var AddrFlags = []FlagName{
	{0x01, "secondary"},
	{0x02, "nodad"},
	{0x04, "optimistic"},
	{0x08, "dadfailed"},
	{0x10, "homeaddress"},
	{0x20, "deprecated"},
	{0x40, "tentative"},
	{0x80, "permanent"},
	{0x100, "managetempaddr"},
	{0x200, "noprefixroute"},
	{0x400, "mcautojoin"},
	{0x800, "stable-privacy"},
}

// AddrFlagName returns the name of one IFA_F_* flag for family f.
func AddrFlagName(fl FlagName, f Family) string {
	if fl.Bit == 0x01 && f == Inet6 {
		return "temporary"
	}
	return fl.Name
}

// ScopeName returns the name of an address scope as ip(8) prints it
// ("global", "site", "link", "host", "nowhere"), or its number.
func ScopeName(scope uint8) string {
	switch scope {
	case 0:
		return "global"
	case 200:
		return "site"
	case 253:
		return "link"
	case 254:
		return "host"
	case 255:
		return "nowhere"
	}
	return strconv.Itoa(int(scope))
}
