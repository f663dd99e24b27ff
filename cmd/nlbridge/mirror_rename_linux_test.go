//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// TestIntegrationMirrorBucketRenames: links with addresses renamed many
// times, in chains, back and forth, swapping names and taking names that
// others just left, reach a bucket Mirror as renames. Its callback is
// told each link and address changed (its name), never removed and added
// again: nothing is deleted in the namespace.
func TestIntegrationMirrorBucketRenames(t *testing.T) {
	ns := nstest.New(t)
	var links []uint32
	for i, p := range []string{"a", "b", "c", "d", "e", "f"} {
		index, _ := ns.AddVeth(t, p+"0", p+"1")
		links = append(links, index)
		for j := range 3 {
			ns.AddAddr(t, index, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.1/24", i, j)))
		}
	}
	srv := jetStreamServer(t, 0, t.TempDir())
	runBridge(t, context.Background(), testConfig("renames", ns, srv.ClientURL()))
	md := mirrorMode{name: "bucket", bucket: true}
	m, changes := md.mirror(t, srv.ClientURL())
	waitMirror(t, ns, m, changes, "renames", 10*time.Second)
	removed := func() int { return changes.count("mirror.LinkRemoved") + changes.count("mirror.AddrRemoved") }
	if n := removed(); n != 0 {
		t.Fatalf("%d removals before any rename", n)
	}

	a, b, c, d, e, f := links[0], links[1], links[2], links[3], links[4], links[5]
	for round := range 40 {
		// A chain, and back.
		ns.Rename(t, a, "x0")
		ns.Rename(t, a, "y0")
		ns.Rename(t, a, "a0")
		// Two names swapped through a third.
		bn, cn := ns.Link(t, b).Attributes.Name, ns.Link(t, c).Attributes.Name
		ns.Rename(t, b, "tmp0")
		ns.Rename(t, c, bn)
		ns.Rename(t, b, cn)
		// A new name each round.
		ns.Rename(t, d, fmt.Sprintf("d%d", round+100))
		// A name taken as soon as it is left, and a chain through it.
		en := ns.Link(t, e).Attributes.Name
		ns.Rename(t, e, fmt.Sprintf("e%d", round+100))
		ns.Rename(t, f, en)
		ns.Rename(t, f, fmt.Sprintf("f%d", round+100))
		if round%4 == 3 {
			time.Sleep(30 * time.Millisecond) // the writer's next batch
		}
	}
	took := waitMirror(t, ns, m, changes, "renames", 10*time.Second)
	t.Logf("converged %v after the renames; changes: %d links changed, %d addresses changed", took,
		changes.count("mirror.LinkChanged"), changes.count("mirror.AddrChanged"))
	if n := removed(); n != 0 {
		t.Errorf("the callback was told of %d links removed and %d addresses removed; nothing was deleted",
			changes.count("mirror.LinkRemoved"), changes.count("mirror.AddrRemoved"))
	}
	if changes.count("mirror.LinkChanged") == 0 {
		t.Error("the callback was told of no rename")
	}
}
