//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// The edge tests run the real bridge on a namespace of their own against
// kernel behaviour that a naive rtnetlink listener gets wrong: bridge port
// notifications, IPv6 address flushes and duplicate address detection,
// renames, links that leave the namespace, veth pairs dying together, and
// bursts. Each ends with the same checks (see edge.finish): seq without
// gaps, no DELLINK for a device that did not leave, and a consumer that
// applies every message in order equal to the kernel.

// edgePre is the subject prefix of the edge tests' host.
const edgePre = "netlink.edge."

// edge is one edge test's rig: the watched namespace, the bridge and a
// collector of everything it publishes.
type edge struct {
	t      *testing.T
	ns     *nstest.NS
	events *collector
	stop   func() error
	lo     uint32 // the loopback's index, whose MTU fences the stream
	fences int
}

// startEdge runs the bridge on ns with JSON encoding and a NATS server of
// its own, and waits for the startup dump.
func startEdge(t *testing.T, ns *nstest.NS) *edge {
	t.Helper()
	srv := startServer(t)
	events := collect(t, connect(t, srv), "netlink.>")
	cfg := testConfig("edge", ns, srv.ClientURL())
	cfg.Encoding = config.EncodingJSON
	stop := runBridge(t, context.Background(), cfg)
	events.waitFor(0, "the startup SYNC", func(m msg) bool { return m.subject == edgePre+"sync" })
	return &edge{t: t, ns: ns, events: events, stop: stop, lo: ns.Index(t, "lo")}
}

// mark returns the position of the next message, for waitFor.
func (e *edge) mark() int { return len(e.events.all()) }

// fence makes the kernel announce a change and waits for it: every
// notification the kernel queued before it has then been received. The
// change is the loopback's MTU (announced whether the link is up or not;
// an alias is announced only on links that are up).
func (e *edge) fence() {
	e.t.Helper()
	e.fences++
	mtu := uint32(65536 - e.fences)
	from := e.mark()
	e.ns.SetMTU(e.t, e.lo, mtu)
	e.events.waitFor(from, fmt.Sprintf("the fence: NEWLINK lo mtu %d", mtu), func(m msg) bool {
		return isLink(m, "NEWLINK", e.lo) && m.obj("link")["mtu"] == float64(mtu)
	})
}

// finish waits until the kernel has settled and the stream has caught up
// with it, stops the bridge, and checks everything it published: seq has
// no gaps, no DELLINK was published for a device that did not leave
// (reentered counts, per index, how often the test brought a link that
// had left back into the namespace), and a consumer that applies every
// message in order equals the kernel.
func (e *edge) finish(reentered map[uint32]int) []msg {
	e.t.Helper()
	e.ns.WaitSettled(e.t, 5*time.Second)
	e.fence()
	if err := e.stop(); err != nil {
		e.t.Fatalf("run: %v", err)
	}
	all := e.events.all()
	checkSeq(e.t, all)
	checkDellinks(e.t, e.ns, all, reentered)
	checkConverged(e.t, e.ns, all)
	checkConvergedStrict(e.t, e.ns, all)
	return all
}

// isLink reports whether m is a link event of type typ for index.
func isLink(m msg, typ string, index uint32) bool {
	return m.str("type") == typ && m.obj("link")["index"] == float64(index)
}

// isAddr reports whether m is an address event of type typ for address
// on the link index.
func isAddr(m msg, typ string, index uint32, address string) bool {
	a := m.obj("addr")
	return m.str("type") == typ && a["index"] == float64(index) && a["address"] == address
}

// isLinkLocal reports whether m is an address event of type typ for an
// IPv6 link-local address on the link index.
func isLinkLocal(m msg, typ string, index uint32) bool {
	a := m.obj("addr")
	addr, _ := a["address"].(string)
	return m.str("type") == typ && a["index"] == float64(index) && strings.HasPrefix(addr, "fe80:")
}

// isLinkLocalReady reports whether m announces the link-local address of
// the link index after DAD. The kernel announces an automatic link-local
// address only then, but a dump shows it while it is tentative.
func isLinkLocalReady(m msg, index uint32) bool {
	return isLinkLocal(m, "NEWADDR", index) && !hasFlag(m.obj("addr"), "tentative")
}

// hasFlag reports whether the link or address object o lists flag.
func hasFlag(o map[string]any, flag string) bool {
	flags, _ := o["flags"].([]any)
	return slices.Contains(flags, any(flag))
}

// describe lists the messages about the given link indexes, one a line,
// to show in the test log what the kernel sent.
func describe(msgs []msg, indexes ...uint32) string {
	var b strings.Builder
	for _, m := range msgs {
		var o map[string]any
		var what string
		switch m.str("type") {
		case "NEWLINK", "DELLINK":
			o = m.obj("link")
			what = fmt.Sprintf("%v master=%v running=%v", o["name"], o["master"], o["running"])
		case "NEWADDR", "DELADDR":
			o = m.obj("addr")
			what = fmt.Sprintf("%v/%v %v", o["address"], o["prefix_len"], o["flags"])
		default:
			continue
		}
		if slices.Contains(indexes, uint32(o["index"].(float64))) {
			fmt.Fprintf(&b, "\n\tseq %v %s %v on %s: %s", m.num("seq"), m.str("type"), o["index"], m.subject, what)
		}
	}
	return b.String()
}

// checkSeq checks that the messages are every message of one run, in
// order: one boot, seq 1, 2, 3 … without gaps.
func checkSeq(t *testing.T, msgs []msg) {
	t.Helper()
	for i, m := range msgs {
		if m.num("seq") != float64(i+1) || m.str("boot") != msgs[0].str("boot") {
			t.Fatalf("message %d (%s) has seq %v boot %s, want seq %d boot %s: a gap or reordering",
				i, m.subject, m.num("seq"), m.str("boot"), i+1, msgs[0].str("boot"))
		}
	}
}

// checkDellinks checks that every DELLINK was published for a device that
// really left the namespace (deleted, moved away, or taken with its
// namespace). Interface indexes are not reused while the namespace lives,
// so for each index:
//   - a DELLINK followed later by a NEWLINK of the same index means that
//     the device came back: that is right only as often as the test brought
//     it back (reentered[index]); otherwise the DELLINK was published for a
//     device that never left, as a bridge port release must not be;
//   - a device that exists at the end must not have a DELLINK as its last
//     link event.
func checkDellinks(t *testing.T, ns *nstest.NS, msgs []msg, reentered map[uint32]int) {
	t.Helper()
	links, err := ns.Conn().Link.List()
	if err != nil {
		t.Fatal(err)
	}
	present := map[uint32]string{}
	for _, l := range links {
		present[l.Index] = l.Attributes.Name
	}
	type history struct {
		returns int      // DELLINKs followed by a NEWLINK
		open    bool     // the last link event was a DELLINK
		dels    []string // the DELLINKs, for the error message
	}
	h := map[uint32]*history{}
	for _, m := range msgs {
		typ := m.str("type")
		if typ != "NEWLINK" && typ != "DELLINK" {
			continue
		}
		i := uint32(m.obj("link")["index"].(float64))
		if h[i] == nil {
			h[i] = &history{}
		}
		switch {
		case typ == "DELLINK":
			h[i].open = true
			h[i].dels = append(h[i].dels, fmt.Sprintf("seq %v on %s", m.num("seq"), m.subject))
		case h[i].open:
			h[i].open = false
			h[i].returns++
		}
	}
	for i, x := range h {
		if x.returns != reentered[i] {
			t.Errorf("link %d: %d of its DELLINKs (%s) were followed by a NEWLINK, but it came back into the namespace %d times: a DELLINK was published for a device that had not left",
				i, x.returns, strings.Join(x.dels, ", "), reentered[i])
		}
		if name, ok := present[i]; ok && x.open {
			t.Errorf("link %d (%s) is in the kernel, but its last link event was a DELLINK (%s)", i, name, strings.Join(x.dels, ", "))
		}
	}
}

// edgeLink is what the strict consumer keeps of a link.
type edgeLink struct {
	name    string
	master  uint32 // 0 for none
	enabled bool
	mtu     uint32
	kind    string
}

// edgeAddr is what the strict consumer keeps of an address.
type edgeAddr struct {
	label string
	flags string // the stable flags of addrFlagNames that it has, sorted
}

// edgeState is what the strict consumer holds.
type edgeState struct {
	links map[uint32]edgeLink
	addrs map[string]edgeAddr // by "index id", see consumerAddrKey
}

// addrFlagNames are the address flags the strict comparison looks at, by
// their names on the wire (README) and their IFA_F_* bits. Lifetime flags
// (deprecated) are left out: the kernel's clock moves them.
var addrFlagNames = []struct {
	name string
	bit  uint32
}{
	{"secondary", unix.IFA_F_SECONDARY}, {"nodad", unix.IFA_F_NODAD}, {"dadfailed", unix.IFA_F_DADFAILED},
	{"tentative", unix.IFA_F_TENTATIVE}, {"permanent", unix.IFA_F_PERMANENT},
}

// stableFlags returns the flags of addrFlagNames that pass keeps, sorted.
func stableFlags(keep func(name string, bit uint32) bool) string {
	var names []string
	for _, f := range addrFlagNames {
		if keep(f.name, f.bit) {
			names = append(names, f.name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// applyStrict applies msgs in order with NEW as upsert and DEL as remove,
// and nothing else: unlike apply (and the README's rule), a DELLINK does not
// remove the link's addresses, so the stream must delete each of them. The
// kernel sends their DELADDRs before the DELLINK, so consumers that follow
// the rule and consumers that do not both converge.
func applyStrict(msgs []msg) edgeState {
	s := edgeState{links: map[uint32]edgeLink{}, addrs: map[string]edgeAddr{}}
	for _, m := range msgs {
		switch m.str("type") {
		case "NEWLINK":
			l := m.obj("link")
			master, _ := l["master"].(float64)
			s.links[uint32(l["index"].(float64))] = edgeLink{
				name: l["name"].(string), master: uint32(master), enabled: l["enabled"] == true,
				mtu: uint32(l["mtu"].(float64)), kind: l["kind"].(string),
			}
		case "DELLINK":
			delete(s.links, uint32(m.obj("link")["index"].(float64)))
		case "NEWADDR", "DELADDR":
			a := m.obj("addr")
			key := consumerAddrKey(a)
			if m.str("type") == "DELADDR" {
				delete(s.addrs, key)
				continue
			}
			label, _ := a["label"].(string)
			s.addrs[key] = edgeAddr{label: label, flags: stableFlags(func(name string, _ uint32) bool { return hasFlag(a, name) })}
		}
	}
	return s
}

// checkConvergedStrict compares the strict consumer's state with the
// kernel's: links by index with name, master, IFF_UP, MTU and kind;
// addresses with label and stable flags.
func checkConvergedStrict(t *testing.T, ns *nstest.NS, msgs []msg) {
	t.Helper()
	got := applyStrict(msgs)
	want := edgeState{links: map[uint32]edgeLink{}, addrs: map[string]edgeAddr{}}
	links, err := ns.Conn().Link.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		var master uint32
		if l.Attributes.Master != nil {
			master = *l.Attributes.Master
		}
		var kind string
		if l.Attributes.Info != nil {
			kind = l.Attributes.Info.Kind
		}
		want.links[l.Index] = edgeLink{
			name: l.Attributes.Name, master: master, enabled: l.Flags&unix.IFF_UP != 0, mtu: l.Attributes.MTU, kind: kind,
		}
	}
	addrs, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		flags := a.Attributes.Flags | uint32(a.Flags)
		want.addrs[kernelAddrKey(a)] = edgeAddr{
			label: a.Attributes.Label,
			flags: stableFlags(func(_ string, bit uint32) bool { return flags&bit != 0 }),
		}
	}
	for i, w := range want.links {
		if g, ok := got.links[i]; !ok {
			t.Errorf("strict consumer: link %d %+v is in the kernel but not in the consumer", i, w)
		} else if g != w {
			t.Errorf("strict consumer: link %d = %+v, kernel's = %+v", i, g, w)
		}
	}
	for i, g := range got.links {
		if _, ok := want.links[i]; !ok {
			t.Errorf("strict consumer: link %d %+v is in the consumer but not in the kernel", i, g)
		}
	}
	for k, w := range want.addrs {
		if g, ok := got.addrs[k]; !ok {
			t.Errorf("strict consumer: address %s %+v is in the kernel but not in the consumer", k, w)
		} else if g != w {
			t.Errorf("strict consumer: address %s = %+v, kernel's = %+v", k, g, w)
		}
	}
	for k, g := range got.addrs {
		if _, ok := want.addrs[k]; !ok {
			t.Errorf("strict consumer: address %s %+v is in the consumer but not in the kernel", k, g)
		}
	}
}

// TestIntegrationEdgeBridgePort enslaves and releases bridge ports, down
// and running, and deletes a bridge with a port enslaved. The kernel sends
// AF_BRIDGE RTM_NEWLINK/RTM_DELLINK notifications for the port's bridge
// state; none may be published as the device's own DELLINK, and the
// device's NEWLINKs carry the master and then none.
func TestIntegrationEdgeBridgePort(t *testing.T) {
	ns := nstest.New(t)
	e := startEdge(t, ns)

	br := ns.AddBridge(t, "br0")
	v0, v0p := ns.AddVeth(t, "v0", "v0p") // a port with carrier
	v1, _ := ns.AddVeth(t, "v1", "v1p")   // a port that stays down
	ns.FastDAD(t, br, v0, v0p)
	for _, i := range []uint32{br, v0, v0p} {
		ns.SetUp(t, i, true)
	}
	e.events.waitFor(0, "v0 running", func(m msg) bool {
		return isLink(m, "NEWLINK", v0) && m.obj("link")["running"] == true && m.obj("link")["carrier"] == true
	})

	enslaved := func(index uint32, name string, from int, running bool) int {
		t.Helper()
		return e.events.waitFor(from, name+" enslaved to br0", func(m msg) bool {
			l := m.obj("link")
			return isLink(m, "NEWLINK", index) && l["master"] == float64(br) && (!running || l["running"] == true)
		})
	}
	released := func(index uint32, name string, from int, running bool) int {
		t.Helper()
		return e.events.waitFor(from, name+" released from br0", func(m msg) bool {
			l := m.obj("link")
			return isLink(m, "NEWLINK", index) && l["master"] == nil && (!running || l["running"] == true)
		})
	}

	// A port that is down.
	from := e.mark()
	ns.SetMaster(t, v1, br)
	at := enslaved(v1, "v1", from, false)
	ns.SetMaster(t, v1, 0)
	released(v1, "v1", at+1, false)

	// A port that is up and running, twice.
	for range 2 {
		from = e.mark()
		ns.SetMaster(t, v0, br)
		at = enslaved(v0, "v0", from, true)
		ns.SetMaster(t, v0, 0)
		released(v0, "v0", at+1, true)
	}

	// Deleting the bridge releases its port, which lives on.
	from = e.mark()
	ns.SetMaster(t, v0, br)
	at = enslaved(v0, "v0", from, true)
	ns.DelLink(t, br)
	e.events.waitFor(at+1, "DELLINK br0", func(m msg) bool {
		return isLink(m, "DELLINK", br) && m.subject == edgePre+"link.br0.del"
	})
	released(v0, "v0", at+1, true)

	all := e.finish(nil)
	for _, m := range all {
		if m.str("type") == "DELLINK" && !isLink(m, "DELLINK", br) {
			t.Errorf("DELLINK seq %v on %s: only br0 was deleted (an AF_BRIDGE port notification must not look like a deletion)", m.num("seq"), m.subject)
		}
	}
	t.Logf("messages about br0, v0 and v1:%s", describe(all, br, v0, v1))
}

// TestIntegrationEdgeIPv6 checks two things the kernel does to IPv6
// addresses on its own: setting a link down flushes them (DELADDR, even
// for permanent nodad addresses; IPv4 addresses stay), and an address
// added with duplicate address detection is announced tentative and again
// when DAD has succeeded.
func TestIntegrationEdgeIPv6(t *testing.T) {
	ns := nstest.New(t)
	v0, v0p := ns.AddVeth(t, "v0", "v0p")
	w0, w0p := ns.AddVeth(t, "w0", "w0p")
	ns.FastDAD(t, v0, v0p, w0, w0p)
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("2001:db8::1/64"))
	ns.AddAddr(t, v0p, netip.MustParsePrefix("2001:db8::2/64"))
	e := startEdge(t, ns)

	// Down flushes IPv6, the link-local address included.
	ns.SetUp(t, v0, true)
	ns.SetUp(t, v0p, true)
	e.events.waitFor(0, "v0's link-local address", func(m msg) bool { return isLinkLocalReady(m, v0) })
	from := e.mark()
	ns.SetUp(t, v0, false)
	e.events.waitFor(from, "DELADDR 2001:db8::1", func(m msg) bool {
		return isAddr(m, "DELADDR", v0, "2001:db8::1") && m.subject == edgePre+"addr.v0.del"
	})
	e.events.waitFor(from, "DELADDR of v0's link-local address", func(m msg) bool { return isLinkLocal(m, "DELADDR", v0) })
	addrs, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, a := range addrs {
		if a.Index == v0 {
			left = append(left, a.Attributes.Address.String())
		}
	}
	if !slices.Equal(left, []string{"192.0.2.1"}) {
		t.Errorf("after v0 went down the kernel has %v on it, want only 192.0.2.1 (IPv6 flushed, IPv4 kept)", left)
	}
	t.Logf("v0 down: the kernel sent:%s", describe(e.events.all()[from:], v0))

	// Tentative, then preferred.
	ns.SetUp(t, w0, true)
	ns.SetUp(t, w0p, true)
	e.events.waitFor(0, "w0 running", func(m msg) bool { return isLink(m, "NEWLINK", w0) && m.obj("link")["running"] == true })
	from = e.mark()
	p := netip.MustParsePrefix("2001:db8:2::1/64")
	ns.AddAddrDAD(t, w0, p)
	deadline := time.Now().Add(5 * time.Second)
	for tentative := true; tentative; {
		addrs, err := ns.Conn().Address.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.Index == w0 && a.Attributes.Address.Equal(p.Addr().AsSlice()) {
				tentative = (a.Attributes.Flags|uint32(a.Flags))&unix.IFA_F_TENTATIVE != 0
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on w0 is still tentative after 5 s", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	at := e.events.waitFor(from, "NEWADDR 2001:db8:2::1 tentative", func(m msg) bool {
		return isAddr(m, "NEWADDR", w0, "2001:db8:2::1") && hasFlag(m.obj("addr"), "tentative")
	})
	e.events.waitFor(at+1, "NEWADDR 2001:db8:2::1 no longer tentative", func(m msg) bool {
		return isAddr(m, "NEWADDR", w0, "2001:db8:2::1") && !hasFlag(m.obj("addr"), "tentative")
	})
	t.Logf("2001:db8:2::1 added with DAD: the kernel sent:%s", describe(e.events.all()[from:], w0))

	e.finish(nil)
}

// TestIntegrationEdgeRename renames a link: the kernel keeps its index and
// sends a NEWLINK with the new name, which nlbridge publishes on the new
// name's subject; every later event of the link uses the new name.
func TestIntegrationEdgeRename(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "v0", "v0p")
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("2001:db8::1/64"))
	e := startEdge(t, ns)

	ns.SetUp(t, v0, true)
	at := e.events.waitFor(0, "v0 up", func(m msg) bool { return isLink(m, "NEWLINK", v0) && m.obj("link")["enabled"] == true })
	ns.SetUp(t, v0, false) // a link must be down to be renamed
	e.events.waitFor(at+1, "v0 down", func(m msg) bool { return isLink(m, "NEWLINK", v0) && m.obj("link")["enabled"] == false })
	e.events.waitFor(at+1, "v0's IPv6 address flushed", func(m msg) bool { return isAddr(m, "DELADDR", v0, "2001:db8::1") })

	from := e.mark()
	ns.Rename(t, v0, "v0.renamed")
	const tok = "v0=2Erenamed"
	renamed := e.events.waitFor(from, "NEWLINK of the renamed link", func(m msg) bool {
		return isLink(m, "NEWLINK", v0) && m.subject == edgePre+"link."+tok+".new" && m.obj("link")["name"] == "v0.renamed"
	})
	newAddr := func(typ, address, label string) {
		t.Helper()
		suffix := ".new"
		if typ == "DELADDR" {
			suffix = ".del"
		}
		e.events.waitFor(from, typ+" "+address+" on the new name", func(m msg) bool {
			a := m.obj("addr")
			l, _ := a["label"].(string)
			return isAddr(m, typ, v0, address) && m.subject == edgePre+"addr."+tok+suffix && a["ifname"] == "v0.renamed" && l == label
		})
	}
	// The kernel renames IPv4 labels that were the old name and announces
	// those addresses again.
	newAddr("NEWADDR", "192.0.2.1", "v0.renamed")
	ns.AddAddr(t, v0, netip.MustParsePrefix("198.51.100.1/24"))
	newAddr("NEWADDR", "198.51.100.1", "v0.renamed")
	ns.AddAddr(t, v0, netip.MustParsePrefix("2001:db8:9::1/64"))
	newAddr("NEWADDR", "2001:db8:9::1", "")
	ns.DelAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	newAddr("DELADDR", "192.0.2.1", "v0.renamed")

	all := e.finish(nil)
	for _, m := range all[renamed:] {
		if strings.HasPrefix(m.subject, edgePre+"link.v0.") || strings.HasPrefix(m.subject, edgePre+"addr.v0.") {
			t.Errorf("seq %v on %s after the rename: the old name", m.num("seq"), m.subject)
		}
	}
	t.Logf("after the rename:%s", describe(all[from:], v0))
}

// TestIntegrationEdgeNetNSMove moves a link out of the watched namespace
// and back, and destroys a namespace that holds the peer of a local veth.
// Leaving the namespace is a DELLINK there, which must be published;
// coming back is a NEWLINK with the same index.
func TestIntegrationEdgeNetNSMove(t *testing.T) {
	ns := nstest.New(t)
	other := nstest.New(t)
	v0, v0p := ns.AddVeth(t, "v0", "v0p")
	ns.FastDAD(t, v0, v0p)
	ns.AddAddr(t, v0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, v0, netip.MustParsePrefix("2001:db8::1/64"))
	ns.SetUp(t, v0, true)
	ns.SetUp(t, v0p, true)
	e := startEdge(t, ns)
	e.events.waitFor(0, "v0's link-local address", func(m msg) bool { return isLinkLocalReady(m, v0) })

	// Out.
	from := e.mark()
	there := ns.MoveTo(t, v0, other)
	e.events.waitFor(from, "DELLINK v0 (moved away)", func(m msg) bool {
		return isLink(m, "DELLINK", v0) && m.subject == edgePre+"link.v0.del"
	})
	t.Logf("v0 moved to another namespace: the kernel sent:%s", describe(e.events.all()[from:], v0, v0p))

	// And back: the index is free, so the link keeps it.
	from = e.mark()
	if back := other.MoveTo(t, there, ns); back != v0 {
		t.Fatalf("v0 came back as index %d, want %d", back, v0)
	}
	e.events.waitFor(from, "NEWLINK v0 (moved back)", func(m msg) bool {
		return isLink(m, "NEWLINK", v0) && m.subject == edgePre+"link.v0.new"
	})

	// A veth whose peer is in a namespace that goes away: the kernel
	// deletes the pair, this end too.
	gone := nstest.New(t)
	x0, x0p := ns.AddVethPeerIn(t, "x0", "x0p", gone)
	ns.FastDAD(t, x0)
	gone.FastDAD(t, x0p)
	ns.AddAddr(t, x0, netip.MustParsePrefix("198.51.100.1/24"))
	ns.AddAddr(t, x0, netip.MustParsePrefix("2001:db8:1::1/64"))
	ns.SetUp(t, x0, true)
	gone.SetUp(t, x0p, true)
	ns.WaitSettled(t, 5*time.Second)
	e.events.waitFor(from, "x0's link-local address", func(m msg) bool { return isLinkLocalReady(m, x0) })
	from = e.mark()
	gone.Close()
	e.events.waitFor(from, "DELLINK x0 (its peer's namespace was destroyed)", func(m msg) bool {
		return isLink(m, "DELLINK", x0) && m.subject == edgePre+"link.x0.del"
	})
	t.Logf("the namespace of x0's peer was destroyed: the kernel sent:%s", describe(e.events.all()[from:], x0))

	e.finish(map[uint32]int{v0: 1})
}

// TestIntegrationEdgeForeignPeer checks the parent of a veth end whose
// peer is in another namespace: the kernel sends IFLA_LINK with the peer's
// index in that namespace, flagged by IFLA_LINK_NETNSID, so the index means
// nothing here (or names an unrelated link). The README defines parent as
// the peer's index, which consumers look up on this host: a link whose
// peer is elsewhere must have no parent.
func TestIntegrationEdgeForeignPeer(t *testing.T) {
	ns := nstest.New(t)
	other := nstest.New(t)
	a0, a0p := ns.AddVeth(t, "a0", "a0p")
	x0, x0p := ns.AddVethPeerIn(t, "x0", "x0p", other) // born with its peer elsewhere
	// Links of the other namespace's own, so that a0p gets there an index
	// other than a0's (the kernel leaves IFLA_LINK out when it equals the
	// link's own index).
	other.AddVeth(t, "o0", "o0p")
	ns.FastDAD(t, a0, a0p)
	ns.SetUp(t, a0, true)
	ns.SetUp(t, a0p, true)
	e := startEdge(t, ns)
	e.events.waitFor(0, "a0 running", func(m msg) bool { return isLink(m, "NEWLINK", a0) && m.obj("link")["running"] == true })

	from := e.mark()
	there := ns.MoveTo(t, a0p, other) // a0's peer leaves
	moved := e.events.waitFor(from, "NEWLINK a0 without carrier", func(m msg) bool {
		return isLink(m, "NEWLINK", a0) && m.obj("link")["carrier"] == false
	})
	all := e.finish(nil)

	check := func(m msg, peer uint32) {
		t.Helper()
		l := m.obj("link")
		p, ok := l["parent"].(float64)
		if !ok {
			return
		}
		here := "no link here"
		if i := slices.IndexFunc(all, func(o msg) bool { return isLink(o, "NEWLINK", uint32(p)) }); i >= 0 {
			here = "link " + all[i].obj("link")["name"].(string) + " here"
		}
		t.Errorf("seq %v NEWLINK %v: parent %v, but its peer is index %d in another namespace (IFLA_LINK_NETNSID); %v is %s",
			m.num("seq"), l["name"], p, peer, p, here)
	}
	for _, m := range all {
		if isLink(m, "NEWLINK", x0) {
			check(m, x0p)
		}
	}
	for _, m := range all[moved:] {
		if isLink(m, "NEWLINK", a0) {
			check(m, there)
		}
	}
}

// TestIntegrationEdgeVethPeerDelete deletes one end of a veth pair, which
// deletes the other: both DELLINKs are published, and every address of
// both ends is deleted by a DELADDR before its link's DELLINK, so that even
// a consumer that does not remove a deleted link's addresses drops them.
func TestIntegrationEdgeVethPeerDelete(t *testing.T) {
	ns := nstest.New(t)
	v0, v0p := ns.AddVeth(t, "v0", "v0p")
	ns.FastDAD(t, v0, v0p)
	for i, p := range []string{"192.0.2.1/24", "2001:db8::1/64", "192.0.2.2/24", "2001:db8::2/64"} {
		ns.AddAddr(t, []uint32{v0, v0p}[i/2], netip.MustParsePrefix(p))
	}
	ns.SetUp(t, v0, true)
	ns.SetUp(t, v0p, true)
	e := startEdge(t, ns)
	ns.WaitSettled(t, 5*time.Second)
	for _, i := range []uint32{v0, v0p} {
		e.events.waitFor(0, fmt.Sprintf("link %d's link-local address", i), func(m msg) bool { return isLinkLocalReady(m, i) })
	}
	before, err := ns.Conn().Address.List()
	if err != nil {
		t.Fatal(err)
	}

	from := e.mark()
	ns.DelLink(t, v0p)
	for _, name := range []string{"v0", "v0p"} {
		e.events.waitFor(from, "DELLINK "+name, func(m msg) bool {
			return m.str("type") == "DELLINK" && m.subject == edgePre+"link."+name+".del"
		})
	}
	all := e.finish(nil)
	after := all[from:]
	t.Logf("v0p deleted: the kernel sent:%s", describe(after, v0, v0p))

	for _, a := range before {
		if a.Index != v0 && a.Index != v0p {
			continue
		}
		addr := a.Attributes.Address.String()
		del := slices.IndexFunc(after, func(m msg) bool { return isAddr(m, "DELADDR", a.Index, addr) })
		dellink := slices.IndexFunc(after, func(m msg) bool { return isLink(m, "DELLINK", a.Index) })
		if del < 0 || del > dellink {
			t.Errorf("address %s of link %d: DELADDR at %d, DELLINK at %d; want a DELADDR before the DELLINK", addr, a.Index, del, dellink)
		}
	}
}

// TestIntegrationEdgeManyLinks creates 200 veth pairs with four addresses
// each in one `ip -batch`, then deletes them all in another (as one device
// group, which the kernel unregisters in one go), while the bridge runs.
// If the burst overflows the socket buffer, the resync must still leave the
// consumer equal to the kernel.
func TestIntegrationEdgeManyLinks(t *testing.T) {
	const pairs = 200
	ns := nstest.New(t)
	e := startEdge(t, ns)

	from := e.mark()
	ns.AddVethPairs(t, "m", pairs)
	last := fmt.Sprintf("2001:db8:%x::2", pairs-1)
	e.events.waitFor(from, "NEWADDR "+last, func(m msg) bool {
		return m.str("type") == "NEWADDR" && m.obj("addr")["address"] == last
	})
	created := e.mark()
	ns.DelVethPairs(t, "m", pairs)
	for _, name := range []string{fmt.Sprintf("ma%d", pairs-1), fmt.Sprintf("mb%d", pairs-1)} {
		e.events.waitFor(created, "DELLINK "+name, func(m msg) bool {
			return m.str("type") == "DELLINK" && m.subject == edgePre+"link."+name+".del"
		})
	}

	all := e.finish(nil)
	newLinks, delLinks := map[float64]bool{}, map[float64]bool{}
	var newAddrs int
	for _, m := range all[from:] {
		switch m.str("type") {
		case "NEWLINK":
			newLinks[m.obj("link")["index"].(float64)] = true
		case "DELLINK":
			delLinks[m.obj("link")["index"].(float64)] = true
		case "NEWADDR":
			newAddrs++
		}
	}
	delete(newLinks, float64(e.lo)) // the fence
	for _, m := range all {
		if m.str("type") == "SYNC" && m.str("reason") != "startup" {
			t.Logf("seq %v: a %s dump (the burst overflowed the socket buffer)", m.num("seq"), m.str("reason"))
		}
	}
	if len(newLinks) != 2*pairs || len(delLinks) != 2*pairs || newAddrs < 4*pairs {
		t.Errorf("NEWLINK for %d links, DELLINK for %d, %d NEWADDR; want %d, %d, at least %d",
			len(newLinks), len(delLinks), newAddrs, 2*pairs, 2*pairs, 4*pairs)
	}
}
