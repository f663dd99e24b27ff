package state

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/nlbridge/nlbridge/event"
)

// vethPairs returns the events that n veth pairs make as go run ./bench
// creates them (internal/nstest.VethPairsBatch): two links per pair, and on
// each an IPv4 address with its label and broadcast-less /30, and an IPv6
// /64; names and labels are separate strings, as the decoder makes them.
func vethPairs(n int) []event.Event {
	evs := make([]event.Event, 0, 6*n)
	now := event.Event{}.Time
	for i := range n {
		for end, side := range []string{"a", "b"} {
			index := uint32(2*i + end + 2)
			name := fmt.Sprintf("m%s%d", side, i)
			evs = append(evs, event.Event{Type: event.NewLink, Time: now, Link: event.Link{Index: index, Name: name,
				Kind: "veth", State: event.OperDown, Flags: 0x1002, MTU: 1500,
				MAC: net.HardwareAddr{0x02, 0, 0, byte(i >> 8), byte(i), byte(end)}, Parent: index ^ 1, Carrier: false}})
			v4 := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(end + 1)})
			v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: byte(end + 1)})
			evs = append(evs,
				event.Event{Type: event.NewAddr, Time: now, Addr: event.Addr{Index: index, Ifname: name, Family: event.Inet,
					Address: v4, PrefixLen: 30, Label: string([]byte(name)), Flags: 0x80,
					ValidLft: event.Forever, PreferredLft: event.Forever}},
				event.Event{Type: event.NewAddr, Time: now, Addr: event.Addr{Index: index, Ifname: name, Family: event.Inet6,
					Address: v6, PrefixLen: 64, Flags: 0x82, ValidLft: event.Forever, PreferredLft: event.Forever}})
		}
	}
	return evs
}

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkTableMemory reports the live heap that the table holds per
// published object (link or address), at 10,000 veth pairs: what its
// memory grows with on a host (go run ./bench measures the process).
func BenchmarkTableMemory(b *testing.B) {
	evs := vethPairs(10000)
	var perObject float64
	for b.Loop() {
		before := heapInUse()
		tb := New(nil)
		var out []event.Event
		for i := range evs {
			out, _ = tb.Apply(&evs[i], false, out[:0])
			for j := range out {
				tb.Published(&out[j], true)
			}
		}
		after := heapInUse()
		if l, a := tb.Len(); l+a != len(evs) {
			b.Fatalf("table holds %d links and %d addresses, want %d objects", l, a, len(evs))
		}
		perObject = float64(after-before) / float64(len(evs))
		runtime.KeepAlive(tb)
	}
	b.ReportMetric(perObject, "B/object")
}

// The table keeps addresses in a compact form: every value the decoder
// makes comes back as it went in, and so does its key.
func TestAddrValueRoundTrip(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	for _, a := range []event.Addr{
		{Index: 2, Ifname: "eth0", Family: event.Inet, Address: netip.MustParseAddr("192.0.2.1"), PrefixLen: 24,
			Broadcast: netip.MustParseAddr("192.0.2.255"), Label: "eth0:1", Flags: 0x80, ValidLft: event.Forever, PreferredLft: event.Forever},
		{Index: 3, Ifname: "tun0", Family: event.Inet, Address: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2"),
			PrefixLen: 32, Label: "tun0", Scope: 253, ValidLft: 3600, PreferredLft: 1800},
		{Index: 4, Ifname: "eth1", Family: event.Inet6, Address: netip.MustParseAddr("2001:db8::1"), PrefixLen: 64,
			Peer: netip.MustParseAddr("2001:db8::2"), Flags: 0x2c0, ValidLft: 86400, PreferredLft: 14400},
		{Index: 5, Ifname: "eth2", Family: event.Inet6, Address: mapped, PrefixLen: 128},
		{Index: 6, Ifname: "x", Family: event.Inet},
	} {
		var v addrValue
		v.set(&a)
		if got := v.get(); got != a {
			t.Errorf("set then get:\n got %+v\nwant %+v", got, a)
		}
		if got, want := v.key(), KeyOf(&a); got != want {
			t.Errorf("%v: key %+v, KeyOf %+v", a.Address, got, want)
		}
	}
	// An IPv4 address is not its IPv4-mapped IPv6 form, and a peer of
	// 0.0.0.0 is not no peer.
	v4 := event.Addr{Index: 1, Family: event.Inet, Address: netip.MustParseAddr("192.0.2.1"), PrefixLen: 32}
	v6 := event.Addr{Index: 1, Family: event.Inet6, Address: mapped, PrefixLen: 32}
	zero := v4
	zero.Peer = netip.IPv4Unspecified()
	if KeyOf(&v4) == KeyOf(&v6) || KeyOf(&v4) == KeyOf(&zero) {
		t.Errorf("distinct addresses share a key: %+v %+v %+v", KeyOf(&v4), KeyOf(&v6), KeyOf(&zero))
	}
}

// HeldAddrs yields the addresses consumers hold, of one link or of all.
func TestHeldAddrs(t *testing.T) {
	tb := New(nil)
	publish(tb, link(event.NewLink, 2, "eth0", 1500), true)
	publish(tb, link(event.NewLink, 3, "eth1", 1500), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.1/24"), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "2001:db8::1/64"), true)
	publish(tb, addr(event.NewAddr, 2, "eth0", "192.0.2.9/24"), false) // not published: not held
	publish(tb, addr(event.NewAddr, 3, "eth1", "198.51.100.1/24"), true)
	held := func(index uint32, all bool) []string {
		var got []string
		for a := range tb.HeldAddrs(index, all) {
			got = append(got, fmt.Sprintf("%d %s", a.Index, a.ID()))
		}
		slices.Sort(got)
		return got
	}
	if got, want := held(2, false), []string{"2 192.0.2.1/24", "2 2001:db8::1"}; !slices.Equal(got, want) {
		t.Errorf("HeldAddrs(2) = %v, want %v", got, want)
	}
	if got, want := held(0, true), []string{"2 192.0.2.1/24", "2 2001:db8::1", "3 198.51.100.1/24"}; !slices.Equal(got, want) {
		t.Errorf("HeldAddrs(all) = %v, want %v", got, want)
	}
}

// The entries stay within the allocator's size classes they were made
// for: one more field can cost 16 bytes per object on tens of thousands.
func TestEntrySizes(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want uintptr
	}{
		{"addrEntry", unsafe.Sizeof(addrEntry{}), 128},
		{"linkEntry", unsafe.Sizeof(linkEntry{}), 144},
		{"AddrKey", unsafe.Sizeof(AddrKey{}), 40},
	} {
		if tt.got > tt.want {
			t.Errorf("%s is %d bytes, want at most %d", tt.name, tt.got, tt.want)
		}
	}
}
