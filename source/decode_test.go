package source

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"

	"github.com/nlbridge/nlbridge/event"
)

func u32(v uint32) *uint32 { return &v }
func u8(v uint8) *uint8    { return &v }
func str(v string) *string { return &v }

var mac = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}

// vethMessage is a NEWLINK as the kernel sends it for an up veth.
func vethMessage() *rtnetlink.LinkMessage {
	return &rtnetlink.LinkMessage{
		Family: afUnspec,
		Type:   1, // ARPHRD_ETHER
		Index:  7,
		Flags:  0x1 | 0x2 | 0x40 | 0x1000 | 0x10000, // up broadcast running multicast lower_up
		Attributes: &rtnetlink.LinkAttributes{
			Name:             "eth0.100",
			MTU:              9000,
			Address:          mac,
			OperationalState: rtnetlink.OperStateUp,
			Info:             &rtnetlink.LinkInfo{Kind: "veth"},
			Master:           u32(3),
			Type:             8, // IFLA_LINK: the peer
			Alias:            str("uplink"),
			Carrier:          u8(1),
		},
	}
}

// linkBytes marshals a hand-made link message as the kernel would send it:
// rtnetlink's MarshalBinary leaves out the family and IFLA_CARRIER, so they
// are patched in here.
func linkBytes(tb testing.TB, m *rtnetlink.LinkMessage) []byte {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	b[0] = byte(m.Family)
	if m.Attributes != nil && m.Attributes.Carrier != nil {
		b = append(b, 5, 0, iflaCarrier, 0, *m.Attributes.Carrier, 0, 0, 0)
	}
	return b
}

// addrBytes marshals a hand-made address message as the kernel would send
// it: rtnetlink's MarshalBinary leaves out IFA_CACHEINFO, so it is appended
// here.
func addrBytes(tb testing.TB, m *rtnetlink.AddressMessage) []byte {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	if m.Attributes != nil && m.Attributes.CacheInfo != (rtnetlink.CacheInfo{}) {
		ci := m.Attributes.CacheInfo
		b = append(b, 20, 0, ifaCacheinfo, 0)
		for _, v := range []uint32{ci.Preferred, ci.Valid, ci.Created, ci.Updated} {
			b = binary.NativeEndian.AppendUint32(b, v)
		}
	}
	return b
}

func TestDecodeLink(t *testing.T) {
	want := event.Link{
		Index: 7, Name: "eth0.100", Kind: "veth", State: event.OperUp,
		Flags: 0x1 | 0x2 | 0x40 | 0x1000 | 0x10000, MTU: 9000, MAC: mac,
		Master: 3, Parent: 8, Alias: "uplink", Carrier: true,
	}
	d := newDecoder()
	var ev event.Event
	b := linkBytes(t, vethMessage())
	if err := d.decode(netlink.Message{Header: netlink.Header{Type: rtmNewLink}, Data: b}, &ev); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if ev.Type != event.NewLink || !reflect.DeepEqual(ev.Link, want) {
		t.Errorf("got %v %+v\nwant NEWLINK %+v", ev.Type, ev.Link, want)
	}
	if !ev.Link.Enabled() || !ev.Link.Running() {
		t.Errorf("Enabled, Running = %v, %v, want true, true", ev.Link.Enabled(), ev.Link.Running())
	}
	// The MAC must not alias the receive buffer, which is reused.
	for i := range b {
		b[i] = 0
	}
	if ev.Link.MAC.String() != mac.String() {
		t.Errorf("MAC changed with the receive buffer: %v", ev.Link.MAC)
	}
}

func TestDecodeLinkMinimal(t *testing.T) {
	// No kind, no master, IFLA_LINK equal to the index (as for loopback).
	m := &rtnetlink.LinkMessage{Index: 1, Flags: 0x8, Attributes: &rtnetlink.LinkAttributes{
		Name: "lo", MTU: 65536, Type: 1, OperationalState: rtnetlink.OperStateUnknown,
	}}
	var ev event.Event
	if err := newDecoder().link(rtmNewLink, linkBytes(t, m), &ev); err != nil {
		t.Fatal(err)
	}
	want := event.Link{Index: 1, Name: "lo", Flags: 0x8, MTU: 65536, State: event.OperUnknown}
	if !reflect.DeepEqual(ev.Link, want) {
		t.Errorf("got %+v, want %+v", ev.Link, want)
	}
}

func TestDecodeLinkErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  *rtnetlink.LinkMessage
		skip bool
	}{
		{"no attributes", &rtnetlink.LinkMessage{Index: 2}, false},
		{"no name", &rtnetlink.LinkMessage{Index: 2, Attributes: &rtnetlink.LinkAttributes{MTU: 1500}}, false},
		{"index 0", &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: "x"}}, false},
		{"bridge port", &rtnetlink.LinkMessage{Family: afBridge, Index: 2, Attributes: &rtnetlink.LinkAttributes{Name: "x"}}, true},
	}
	for _, tt := range tests {
		var ev event.Event
		err := newDecoder().link(rtmDelLink, linkBytes(t, tt.msg), &ev)
		if skipped := errors.Is(err, errSkip); err == nil || skipped != tt.skip {
			t.Errorf("%s: err = %v, want skip=%v", tt.name, err, tt.skip)
		}
	}
}

// A veth whose peer is in another namespace carries IFLA_LINK_NETNSID: its
// IFLA_LINK is an index there, not here, and is not published.
func TestDecodeForeignParent(t *testing.T) {
	b := append(linkBytes(t, vethMessage()), 8, 0, iflaLinkNetns, 0, 1, 0, 0, 0)
	var ev event.Event
	if err := newDecoder().link(rtmNewLink, b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Link.Parent != 0 {
		t.Errorf("parent = %d with IFLA_LINK_NETNSID, want 0", ev.Link.Parent)
	}
}

func TestDecodeLinkBadAttribute(t *testing.T) {
	b := linkBytes(t, vethMessage())
	for _, bad := range [][]byte{
		{6, 0, iflaMTU, 0, 1, 2, 0, 0}, // a 2-byte MTU
		{40, 0, iflaMTU, 0},            // longer than the message
		{2, 0},                         // shorter than an attribute header
	} {
		var ev event.Event
		err := newDecoder().link(rtmNewLink, append(append([]byte{}, b...), bad...), &ev)
		if err == nil || errors.Is(err, errSkip) {
			t.Errorf("attribute % x: err = %v, want a decode error", bad, err)
		}
	}
}

// A bridge port release is an RTM_DELLINK of family AF_BRIDGE while the
// device lives on: it must be skipped, and must not forget the name.
func TestDecodeBridgePortRelease(t *testing.T) {
	d := newDecoder()
	var ev event.Event
	if err := d.link(rtmNewLink, linkBytes(t, vethMessage()), &ev); err != nil {
		t.Fatal(err)
	}
	port := vethMessage()
	port.Family = afBridge
	b := linkBytes(t, port)
	if err := d.decode(netlink.Message{Header: netlink.Header{Type: rtmDelLink}, Data: b}, &ev); !errors.Is(err, errSkip) {
		t.Fatalf("AF_BRIDGE DELLINK: err = %v, want errSkip", err)
	}
	if name, ok := d.name(7); !ok || name != "eth0.100" {
		t.Errorf("name(7) = %q, %v after a bridge port release, want eth0.100", name, ok)
	}
}

func TestDecodeAddr(t *testing.T) {
	d := newDecoder()
	var lev event.Event
	if err := d.link(rtmNewLink, linkBytes(t, vethMessage()), &lev); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		typ  uint16
		msg  *rtnetlink.AddressMessage
		want event.Addr
	}{{
		name: "ipv4 with broadcast and label",
		typ:  rtmNewAddr,
		msg: &rtnetlink.AddressMessage{Family: afInet, PrefixLength: 24, Flags: 0x80, Scope: 0, Index: 7,
			Attributes: &rtnetlink.AddressAttributes{
				Address: net.IPv4(192, 0, 2, 1).To4(), Local: net.IPv4(192, 0, 2, 1).To4(),
				Broadcast: net.IPv4(192, 0, 2, 255).To4(), Label: "eth0.100:1", Flags: 0x80,
				CacheInfo: rtnetlink.CacheInfo{Valid: event.Forever, Preferred: event.Forever},
			}},
		want: event.Addr{Index: 7, Ifname: "eth0.100", Family: event.Inet, Address: netip.MustParseAddr("192.0.2.1"),
			PrefixLen: 24, Broadcast: netip.MustParseAddr("192.0.2.255"), Label: "eth0.100:1", Flags: 0x80,
			ValidLft: event.Forever, PreferredLft: event.Forever},
	}, {
		name: "ipv4 point-to-point",
		typ:  rtmNewAddr,
		msg: &rtnetlink.AddressMessage{Family: afInet, PrefixLength: 32, Index: 7,
			Attributes: &rtnetlink.AddressAttributes{
				Local: net.IPv4(10, 0, 0, 1).To4(), Address: net.IPv4(10, 0, 0, 2).To4(),
				CacheInfo: rtnetlink.CacheInfo{Valid: 100, Preferred: 50},
			}},
		want: event.Addr{Index: 7, Ifname: "eth0.100", Family: event.Inet, Address: netip.MustParseAddr("10.0.0.1"),
			Peer: netip.MustParseAddr("10.0.0.2"), PrefixLen: 32, ValidLft: 100, PreferredLft: 50},
	}, {
		name: "ipv6 tentative, flags beyond 8 bits",
		typ:  rtmNewAddr,
		msg: &rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Flags: 0x40, Scope: 253, Index: 7,
			Attributes: &rtnetlink.AddressAttributes{
				Address: net.ParseIP("fe80::1"), Flags: 0x40 | 0x800,
				CacheInfo: rtnetlink.CacheInfo{Valid: event.Forever, Preferred: event.Forever},
			}},
		want: event.Addr{Index: 7, Ifname: "eth0.100", Family: event.Inet6, Address: netip.MustParseAddr("fe80::1"),
			PrefixLen: 64, Scope: 253, Flags: 0x840, ValidLft: event.Forever, PreferredLft: event.Forever},
	}, {
		name: "unknown link: no name",
		typ:  rtmDelAddr,
		msg: &rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 128, Index: 99,
			Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("2001:db8::9")}},
		want: event.Addr{Index: 99, Family: event.Inet6, Address: netip.MustParseAddr("2001:db8::9"),
			PrefixLen: 128, ValidLft: event.Forever, PreferredLft: event.Forever},
	}}
	for _, tt := range tests {
		var ev event.Event
		if err := d.addr(tt.typ, addrBytes(t, tt.msg), &ev); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		wantType := event.NewAddr
		if tt.typ == rtmDelAddr {
			wantType = event.DelAddr
		}
		if ev.Type != wantType || !reflect.DeepEqual(ev.Addr, tt.want) {
			t.Errorf("%s:\n got %v %+v\nwant %v %+v", tt.name, ev.Type, ev.Addr, wantType, tt.want)
		}
		// And through decode, as the reader calls it.
		b := addrBytes(t, tt.msg)
		ev = event.Event{}
		if err := d.decode(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(tt.typ)}, Data: b}, &ev); err != nil {
			t.Errorf("%s: decode: %v", tt.name, err)
		} else if ev.Addr.Address != tt.want.Address || ev.Addr.Ifname != tt.want.Ifname {
			t.Errorf("%s: decoded from bytes: %+v", tt.name, ev.Addr)
		}
	}
}

func TestDecodeAddrErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  *rtnetlink.AddressMessage
		skip bool
	}{
		{"other family", &rtnetlink.AddressMessage{Family: 17, Index: 1}, true},
		{"no attributes", &rtnetlink.AddressMessage{Family: afInet, Index: 1}, false},
		{"ipv6 bytes in ipv4", &rtnetlink.AddressMessage{Family: afInet, Index: 1,
			Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("2001:db8::1")}}, false},
		{"prefix too long", &rtnetlink.AddressMessage{Family: afInet, Index: 1, PrefixLength: 33,
			Attributes: &rtnetlink.AddressAttributes{Address: net.IPv4(192, 0, 2, 1).To4()}}, false},
	}
	for _, tt := range tests {
		var ev event.Event
		err := newDecoder().addr(rtmNewAddr, addrBytes(t, tt.msg), &ev)
		if skipped := errors.Is(err, errSkip); err == nil || skipped != tt.skip {
			t.Errorf("%s: err = %v, want skip=%v", tt.name, err, tt.skip)
		}
	}
	// Raw messages that rtnetlink cannot build.
	for _, raw := range [][]byte{
		{afInet, 24, 0, 0, 1, 0, 0, 0, 6, 0, ifaLabel, 0, 'x', 0, 0, 0},   // no address at all
		{afInet, 24, 0, 0, 1, 0, 0, 0, 8, 0, ifaCacheinfo, 0, 1, 2, 3, 4}, // short IFA_CACHEINFO
		{afInet, 24, 0, 0, 1, 0, 0, 0, 6, 0, ifaFlags, 0, 1, 2, 0, 0},     // 2-byte IFA_FLAGS
		{afInet6, 64, 0, 0}, // short header
	} {
		var ev event.Event
		if err := newDecoder().addr(rtmNewAddr, raw, &ev); err == nil || errors.Is(err, errSkip) {
			t.Errorf("message % x: err = %v, want a decode error", raw, err)
		}
	}
}

// Address deletions can arrive after the DELLINK of their link: the name
// must still be known.
func TestDecodeNameAfterDelLink(t *testing.T) {
	d := newDecoder()
	var ev event.Event
	if err := d.link(rtmNewLink, linkBytes(t, vethMessage()), &ev); err != nil {
		t.Fatal(err)
	}
	if err := d.link(rtmDelLink, linkBytes(t, vethMessage()), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != event.DelLink {
		t.Fatalf("type = %v, want DELLINK", ev.Type)
	}
	if _, ok := d.names[7]; ok {
		t.Error("deleted link still in the live table")
	}
	del := &rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Index: 7,
		Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("2001:db8::1")}}
	if err := d.addr(rtmDelAddr, addrBytes(t, del), &ev); err != nil || ev.Addr.Ifname != "eth0.100" {
		t.Errorf("DELADDR after DELLINK: ifname %q, err %v, want eth0.100", ev.Addr.Ifname, err)
	}
	// The grave is bounded: after graveSize more deletions the name is gone.
	for i := range uint32(graveSize) {
		m := vethMessage()
		m.Index, m.Attributes.Name = 100+i, "x"
		if err := d.link(rtmDelLink, linkBytes(t, m), &ev); err != nil {
			t.Fatal(err)
		}
	}
	if name, ok := d.name(7); ok {
		t.Errorf("name(7) = %q after %d later deletions, want forgotten", name, graveSize)
	}
}

// A rename keeps the index and changes the name used for addresses.
func TestDecodeRename(t *testing.T) {
	d := newDecoder()
	var ev event.Event
	m := vethMessage()
	if err := d.link(rtmNewLink, linkBytes(t, m), &ev); err != nil {
		t.Fatal(err)
	}
	m.Attributes.Name = "uplink0"
	if err := d.link(rtmNewLink, linkBytes(t, m), &ev); err != nil {
		t.Fatal(err)
	}
	if name, _ := d.name(7); name != "uplink0" {
		t.Errorf("name(7) = %q after rename, want uplink0", name)
	}
}

// FuzzDecode feeds arbitrary bytes as every message type: decoding never
// panics, and either fails cleanly or yields an event of the right kind.
func FuzzDecode(f *testing.F) {
	f.Add(uint16(rtmNewLink), linkBytes(f, vethMessage()))
	a, _ := (&rtnetlink.AddressMessage{Family: afInet6, PrefixLength: 64, Index: 7,
		Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("2001:db8::1")}}).MarshalBinary()
	f.Add(uint16(rtmNewAddr), a)
	f.Add(uint16(rtmDelLink), []byte{afBridge, 0, 0, 0})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		d := newDecoder()
		var ev event.Event
		err := d.decode(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data}, &ev)
		if err != nil {
			return
		}
		switch typ {
		case rtmNewLink, rtmDelLink:
			if !ev.Type.IsLink() || ev.Link.Name == "" || ev.Link.Index == 0 {
				t.Fatalf("link message decoded to %+v", ev)
			}
		case rtmNewAddr, rtmDelAddr:
			if !ev.Type.IsAddr() || !ev.Addr.Address.IsValid() {
				t.Fatalf("address message decoded to %+v", ev)
			}
		default:
			t.Fatalf("message type %d decoded without error", typ)
		}
	})
}
