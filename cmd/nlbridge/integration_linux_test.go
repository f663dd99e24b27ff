//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/sink"
)

// TestIntegrationPipeline runs the whole bridge on a namespace of its own
// and a real NATS server, in both encodings, and checks the startup dump,
// live events, bridge port handling, dump requests and the final state.
func TestIntegrationPipeline(t *testing.T) {
	for _, enc := range []config.Encoding{config.EncodingJSON, config.EncodingCBOR} {
		t.Run(string(enc), func(t *testing.T) { testPipeline(t, enc) })
	}
}

func testPipeline(t *testing.T, enc config.Encoding) {
	ns := nstest.New(t)
	// One link with a name that needs escaping, with addresses, before start.
	v0, v0p := ns.AddVeth(t, "v0.1", "v0p")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("2001:db8::1/64"))

	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.>")

	cfg := config.Default()
	cfg.Host = "itest.example"
	cfg.NATS.Name = "nlbridge-itest"
	cfg.NATS.Servers = []string{srv.ClientURL()}
	cfg.Netlink.NetNS = ns.Path
	cfg.Encoding = enc
	stop := runBridge(t, context.Background(), cfg)

	const pre = "netlink.itest=2Eexample."
	// The startup dump: lo (down, without addresses in a new namespace),
	// v0.1 with two addresses, v0p, then SYNC.
	syncAt := events.waitFor(0, "startup SYNC", func(m msg) bool { return m.subject == pre+"sync" })
	dump := events.all()[:syncAt+1]
	// The connection carries its configured name (nats server report
	// connections shows it).
	connz, err := srv.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range connz.Conns {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, "nlbridge-itest") {
		t.Errorf("connection names %q, want one named nlbridge-itest", names)
	}

	boot := dump[0].str("boot")
	if len(boot) != 16 {
		t.Errorf("boot = %q, want 16 hex digits", boot)
	}
	for i, m := range dump {
		if got := m.num("seq"); got != float64(i+1) {
			t.Errorf("message %d (%s) has seq %v, want %d", i, m.subject, got, i+1)
		}
		if m.str("host") != "itest.example" || m.str("boot") != boot || m.num("v") != 1 {
			t.Errorf("message %s header = %v", m.subject, m.doc)
		}
		if m.subject != pre+"sync" && m.doc["dump"] != true {
			t.Errorf("startup message %s has dump=%v, want true", m.subject, m.doc["dump"])
		}
	}
	subjects := make([]string, 0, len(dump))
	for _, m := range dump {
		subjects = append(subjects, m.subject)
	}
	for _, want := range []string{
		pre + "link.lo.new", pre + "link.v0=2E1.new", pre + "link.v0p.new",
		pre + "addr.v0=2E1.new",
	} {
		if !slices.Contains(subjects, want) {
			t.Errorf("startup dump has no %s; got %v", want, subjects)
		}
	}
	marker := dump[syncAt]
	if marker.str("type") != "SYNC" || marker.str("reason") != "startup" || marker.num("first_seq") != 1 {
		t.Errorf("startup SYNC = %v", marker.doc)
	}
	if links := count(dump, "NEWLINK"); marker.num("links") != float64(links) || links != 3 {
		t.Errorf("SYNC says %v links; the dump had %d, want 3", marker.num("links"), links)
	}
	if addrs := count(dump, "NEWADDR"); marker.num("addrs") != float64(addrs) || addrs != 2 {
		t.Errorf("SYNC says %v addresses; the dump had %d, want 2", marker.num("addrs"), addrs)
	}
	// The exact payload of one link and one address.
	for _, m := range dump {
		switch m.subject {
		case pre + "link.v0=2E1.new":
			l := ns.Link(t, v0)
			wantLink := map[string]any{
				"index": float64(v0), "name": "v0.1", "kind": "veth", "state": "down",
				"enabled": false, "running": false, "mtu": float64(1500),
				"mac": l.Attributes.Address.String(), "parent": float64(v0p), "carrier": false,
				"flags": []any{"broadcast", "multicast"},
			}
			checkObj(t, m.subject, m.obj("link"), wantLink)
		case pre + "addr.v0=2E1.new":
			a := m.obj("addr")
			if a["family"] != "inet" {
				continue
			}
			checkObj(t, m.subject, a, map[string]any{
				"index": float64(v0), "id": "192.0.2.1/24", "ifname": "v0.1", "family": "inet", "address": "192.0.2.1",
				"prefix_len": float64(24), "broadcast": "192.0.2.255", "scope": "global",
				"label": "v0.1", "flags": []any{"permanent"},
			})
		}
	}

	// Live events: a bridge, a port enslaved and released, addresses.
	from := len(events.all())
	br := ns.AddBridge(t, "br0")
	events.waitFor(from, "NEWLINK br0", func(m msg) bool {
		return m.subject == pre+"link.br0.new" && m.obj("link")["kind"] == "bridge" && m.doc["dump"] == false
	})
	ns.SetUp(t, v0, true)
	ns.SetMaster(t, v0, br)
	events.waitFor(from, "v0.1 enslaved to br0", func(m msg) bool {
		return m.subject == pre+"link.v0=2E1.new" && m.obj("link")["master"] == float64(br)
	})
	ns.SetMaster(t, v0, 0)
	events.waitFor(from, "v0.1 released from br0", func(m msg) bool {
		return m.subject == pre+"link.v0=2E1.new" && m.obj("link")["master"] == nil && m.obj("link")["enabled"] == true
	})
	ns.AddAddr(t, v0p, netip.MustParsePrefix("2001:db8:1::2/64"))
	events.waitFor(from, "NEWADDR 2001:db8:1::2", func(m msg) bool {
		a := m.obj("addr")
		return m.subject == pre+"addr.v0p.new" && a["address"] == "2001:db8:1::2" && a["family"] == "inet6" &&
			a["ifname"] == "v0p" && a["prefix_len"] == float64(64)
	})
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	events.waitFor(from, "DELADDR 192.0.2.1", func(m msg) bool {
		return m.subject == pre+"addr.v0=2E1.del" && m.obj("addr")["address"] == "192.0.2.1"
	})

	// A dump request for this host, then one for the fleet.
	for _, subject := range []string{"nlbridge.itest=2Eexample.dump", "nlbridge.dump"} {
		from = len(events.all())
		resp, err := nc.Request(subject, nil, 10*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subject, err)
		}
		if code := resp.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Fatalf("request %s: error %s %s", subject, code, resp.Header.Get(micro.ErrorHeader))
		}
		var reply sink.DumpReply
		if err := json.Unmarshal(resp.Data, &reply); err != nil {
			t.Fatalf("reply %q: %v", resp.Data, err)
		}
		// The reply comes after the server has everything, so the
		// messages from first_seq to last_seq are already on their way.
		at := events.waitFor(from, "the requested dump's SYNC", func(m msg) bool { return m.num("seq") == float64(reply.LastSeq) })
		got := events.all()
		last := got[at]
		if last.subject != pre+"sync" || last.str("reason") != "request" || last.num("first_seq") != float64(reply.FirstSeq) {
			t.Errorf("message at last_seq %d = %s %v, want the SYNC of the request", reply.LastSeq, last.subject, last.doc)
		}
		var links, addrs int
		for _, m := range got {
			if s := uint64(m.num("seq")); s >= reply.FirstSeq && s < reply.LastSeq && m.doc["dump"] == true {
				if strings.Contains(m.subject, ".link.") {
					links++
				} else {
					addrs++
				}
			}
		}
		if reply.Host != "itest.example" || reply.Boot != boot || reply.Links != links || reply.Addrs != addrs || links != 4 {
			t.Errorf("reply = %+v; the dump had %d links (want 4) and %d addresses", reply, links, addrs)
		}
	}

	// A bad request gets an error reply, and the bridge carries on.
	resp, err := nc.Request("nlbridge.dump", []byte("{not json"), 5*time.Second)
	if err != nil {
		t.Fatalf("bad request: %v", err)
	}
	if code := resp.Header.Get(micro.ErrorCodeHeader); code != "400" {
		t.Errorf("bad request: error code %q (%s), want 400", code, resp.Header.Get(micro.ErrorHeader))
	}

	// Deleting one end of a veth pair deletes both.
	from = len(events.all())
	ns.DelLink(t, v0)
	for _, name := range []string{"v0=2E1", "v0p"} {
		events.waitFor(from, "DELLINK "+name, func(m msg) bool { return m.subject == pre+"link."+name+".del" })
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}

	all := events.all()
	// Every message that reached us is in seq order without gaps.
	for i, m := range all {
		if m.num("seq") != float64(i+1) {
			t.Fatalf("message %d has seq %v: gap or reordering", i, m.num("seq"))
		}
	}
	// No DELLINK for a device that still exists: only the deleted pair.
	for _, m := range all {
		if strings.HasSuffix(m.subject, ".del") && strings.Contains(m.subject, ".link.") &&
			m.subject != pre+"link.v0=2E1.del" && m.subject != pre+"link.v0p.del" {
			t.Errorf("unexpected DELLINK on %s (a bridge port release must not look like a deletion)", m.subject)
		}
	}
	// A consumer that applies every message in order equals the kernel.
	checkConverged(t, ns, all)
}

func count(msgs []msg, typ string) int {
	n := 0
	for _, m := range msgs {
		if m.str("type") == typ {
			n++
		}
	}
	return n
}

// checkObj compares got with want key by key, and reports keys in got that
// want does not expect (lifetimes excepted: the kernel's clock moves).
func checkObj(t *testing.T, where string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: %s = %v, want %v", where, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && k != "valid_lft" && k != "preferred_lft" {
			t.Errorf("%s: unexpected key %s = %v", where, k, got[k])
		}
	}
}

// state is what a consumer holds after applying events in order.
type state struct {
	links map[float64]string // index → name
	addrs map[string]bool    // "index id", see consumerAddrKey
}

func apply(msgs []msg) state {
	s := state{links: map[float64]string{}, addrs: map[string]bool{}}
	for _, m := range msgs {
		switch m.str("type") {
		case "NEWLINK":
			s.links[m.obj("link")["index"].(float64)] = m.obj("link")["name"].(string)
		case "DELLINK":
			index := m.obj("link")["index"].(float64)
			delete(s.links, index)
			// A deleted link's addresses go with it.
			prefix := fmt.Sprintf("%d ", uint32(index))
			for k := range s.addrs {
				if strings.HasPrefix(k, prefix) {
					delete(s.addrs, k)
				}
			}
		case "NEWADDR", "DELADDR":
			key := consumerAddrKey(m.obj("addr"))
			s.addrs[key] = m.str("type") == "NEWADDR"
			if !s.addrs[key] {
				delete(s.addrs, key)
			}
		}
	}
	return s
}

// kernelState reads the namespace's links and addresses as a consumer
// would hold them.
func kernelState(t *testing.T, ns *nstest.NS) state {
	t.Helper()
	links, err := ns.Conn().Link.List()
	if err != nil {
		t.Fatal(err)
	}
	want := state{links: map[float64]string{}, addrs: map[string]bool{}}
	for _, l := range links {
		want.links[float64(l.Index)] = l.Attributes.Name
	}
	addrs, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		want.addrs[kernelAddrKey(a)] = true
	}
	return want
}

// consumerAddrKey is the key of a published address, as the README tells
// consumers to key them: its index and id.
func consumerAddrKey(a map[string]any) string {
	return fmt.Sprintf("%d %s", uint32(a["index"].(float64)), a["id"])
}

// kernelAddrKey names an address the kernel lists as consumerAddrKey does,
// from what tells the kernel's addresses apart (net/ipv4/devinet.c
// find_matching_ifa, net/ipv6/addrconf.c ipv6_chk_same_addr): for IPv4 the
// local address, the prefix length and the peer ("index local/len", or
// "index local peer peer/len"); for IPv6 the address alone ("index
// address"). IPv4 messages carry the local address in IFA_LOCAL and the
// peer, or the local address again, in IFA_ADDRESS; IPv6 ones carry the
// address in IFA_ADDRESS, or in IFA_LOCAL when IFA_ADDRESS is a peer.
func kernelAddrKey(a rtnetlink.AddressMessage) string {
	local, peer := a.Attributes.Local, a.Attributes.Address
	if local == nil {
		local = peer
	}
	l, _ := netip.AddrFromSlice(local)
	p, _ := netip.AddrFromSlice(peer)
	l, p = l.Unmap(), p.Unmap()
	switch {
	case a.Family == unix.AF_INET6:
		return fmt.Sprintf("%d %v", a.Index, l)
	case p.IsValid() && p != l:
		return fmt.Sprintf("%d %v peer %v/%d", a.Index, l, p, a.PrefixLength)
	}
	return fmt.Sprintf("%d %v/%d", a.Index, l, a.PrefixLength)
}

func (s state) equal(o state) bool {
	return fmt.Sprint(s.links) == fmt.Sprint(o.links) && fmt.Sprint(s.addrs) == fmt.Sprint(o.addrs)
}

// checkConverged compares the consumer's state with the kernel's.
func checkConverged(t *testing.T, ns *nstest.NS, msgs []msg) {
	t.Helper()
	got, want := apply(msgs), kernelState(t, ns)
	if fmt.Sprint(got.links) != fmt.Sprint(want.links) {
		t.Errorf("consumer's links = %v, kernel's = %v", got.links, want.links)
	}
	if fmt.Sprint(got.addrs) != fmt.Sprint(want.addrs) {
		t.Errorf("consumer's addresses = %v, kernel's = %v", got.addrs, want.addrs)
	}
}

// waitConverged waits until a consumer applying everything received so far
// equals the kernel, and returns how long that took.
func waitConverged(t *testing.T, ns *nstest.NS, c *collector, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if apply(c.all()).equal(kernelState(t, ns)) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			checkConverged(t, ns, c.all())
			t.Fatalf("the consumer did not converge within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationMicroService checks that the dump service is discoverable
// the way `nats micro ls` finds it.
func TestIntegrationMicroService(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	nc := connect(t, srv)
	cfg := testConfig("svc", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	runBridge(t, context.Background(), cfg)

	var info micro.Info
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := nc.Request("$SRV.INFO.nlbridge", nil, time.Second)
		if err == nil {
			if err := json.Unmarshal(resp.Data, &info); err != nil {
				t.Fatalf("INFO reply %q: %v", resp.Data, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no INFO reply: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var subjects []string
	for _, ep := range info.Endpoints {
		subjects = append(subjects, ep.Subject)
		if ep.QueueGroup != "" {
			t.Errorf("endpoint %s has queue group %q: a fleet-wide request would reach one bridge only", ep.Name, ep.QueueGroup)
		}
	}
	slices.Sort(subjects)
	if info.Name != "nlbridge" || info.Metadata["host"] != "svc" || !slices.Equal(subjects, []string{"nlbridge.dump", "nlbridge.svc.dump"}) {
		t.Errorf("INFO = %+v, endpoints %v", info, subjects)
	}
	_ = nats.ErrTimeout
}

// testConfig is the default configuration with the host name, the
// namespace to watch and the NATS server a test uses.
func testConfig(host string, ns *nstest.NS, server string) config.Config {
	cfg := config.Default()
	cfg.Host = host
	cfg.NATS.Servers = []string{server}
	cfg.Netlink.NetNS = ns.Path
	return cfg
}
