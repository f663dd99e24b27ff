package event

import (
	"net/netip"
	"testing"
)

func TestAddrID(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tt := range []struct {
		name string
		a    Addr
		want string
	}{
		{"inet", Addr{Family: Inet, Address: ip("192.0.2.1"), PrefixLen: 24}, "192.0.2.1/24"},
		{"inet host", Addr{Family: Inet, Address: ip("192.0.2.1"), PrefixLen: 32}, "192.0.2.1/32"},
		{"inet peer", Addr{Family: Inet, Address: ip("10.9.0.1"), Peer: ip("10.9.0.2"), PrefixLen: 32},
			"10.9.0.1 peer 10.9.0.2/32"},
		{"inet peer prefix", Addr{Family: Inet, Address: ip("10.9.0.1"), Peer: ip("10.9.1.0"), PrefixLen: 24},
			"10.9.0.1 peer 10.9.1.0/24"},
		{"inet zero prefix", Addr{Family: Inet, Address: ip("0.0.0.0"), PrefixLen: 0}, "0.0.0.0/0"},
		{"inet6", Addr{Family: Inet6, Address: ip("2001:db8::1"), PrefixLen: 64}, "2001:db8::1"},
		{"inet6 peer", Addr{Family: Inet6, Address: ip("2001:db8::1"), Peer: ip("2001:db8::2"), PrefixLen: 128},
			"2001:db8::1"},
		{"inet6 zone", Addr{Family: Inet6, Address: ip("fe80::1%veth0"), PrefixLen: 64}, "fe80::1"},
		{"inet6 longest", Addr{Family: Inet6, Address: ip("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), PrefixLen: 128},
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.ID(); got != tt.want {
				t.Errorf("ID() = %q, want %q", got, tt.want)
			}
			if got := string(tt.a.AppendID([]byte("x"))); got != "x"+tt.want {
				t.Errorf("AppendID(x) = %q, want %q", got, "x"+tt.want)
			}
		})
	}
}

// AppendID is on the encoders' hot path: it must not allocate.
func TestAppendIDAllocs(t *testing.T) {
	a := Addr{Family: Inet, Address: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2"), PrefixLen: 32}
	b := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { b = a.AppendID(b[:0]) }); n != 0 {
		t.Errorf("AppendID allocates %v times, want 0", n)
	}
	// ID allocates its string at most.
	var id string
	if n := testing.AllocsPerRun(100, func() { id = a.ID() }); n > 1 {
		t.Errorf("ID allocates %v times, want at most 1", n)
	}
	_ = id
}
