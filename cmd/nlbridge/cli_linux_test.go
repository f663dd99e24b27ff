//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// vethBlock is the text block of a veth end that is down, as dump and
// watch print it.
func vethBlock(t *testing.T, ns *nstest.NS, name string, index, peer uint32) string {
	mac := net.HardwareAddr(ns.Link(t, index).Attributes.Address).String()
	return fmt.Sprintf("results for %s(%d)\n"+
		"  type: NEWLINK\n"+
		"  state: DOWN\n"+
		"  running: no\n"+
		"  enabled: no\n"+
		"  mtu: 1500\n"+
		"  mac: %s\n"+
		"  kind: veth\n"+
		"  parent: %d\n"+
		"\n", name, index, mac, peer)
}

// TestIntegrationDumpCommand runs "nlbridge dump --netns" on a namespace
// holding a veth pair with an address and checks the output exactly.
func TestIntegrationDumpCommand(t *testing.T) {
	ns := nstest.New(t)
	d0, d1 := ns.AddVeth(t, "d0", "d1")
	ns.AddAddr(t, d0, netip.MustParsePrefix("192.0.2.1/24"))

	links := map[uint32]string{
		d0: vethBlock(t, ns, "d0", d0, d1),
		d1: vethBlock(t, ns, "d1", d1, d0),
	}
	want := "results for lo(1)\n" +
		"  type: NEWLINK\n" +
		"  state: DOWN\n" +
		"  running: no\n" +
		"  enabled: no\n" +
		"  mtu: 65536\n" +
		"  mac: 00:00:00:00:00:00\n" +
		"\n" +
		links[min(d0, d1)] + links[max(d0, d1)] + // the kernel dumps links by index
		fmt.Sprintf("results for d0(%d)\n", d0) +
		"  type: NEWADDR\n" +
		"  addr: 192.0.2.1\n" +
		"  broadcast: 192.0.2.255\n" +
		"  mask length: 24\n" +
		"  family: inet\n" +
		"  scope: global\n" +
		"  flags: permanent\n" +
		"\n"

	var stdout, stderr syncBuffer
	if code := dumpCmd([]string{"--netns", ns.Path}, &stdout, &stderr); code != 0 {
		t.Fatalf("dump = %d, stderr:\n%s", code, stderr.String())
	}
	if got := stdout.String(); got != want {
		t.Errorf("dump printed:\n%s\nwant:\n%s", got, want)
	}
	if stderr.String() != "" {
		t.Errorf("dump wrote to stderr:\n%s", stderr.String())
	}

	// As JSON, with the host of a configuration file and seq 1..n.
	path := filepath.Join(t.TempDir(), "nlbridge.yaml")
	if err := os.WriteFile(path, []byte("host: dump.test\nnetlink:\n  netns: /nonexistent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var jsonOut, jsonErr syncBuffer
	if code := dumpCmd([]string{"--config", path, "--netns", ns.Path, "--json"}, &jsonOut, &jsonErr); code != 0 {
		t.Fatalf("dump --json = %d, stderr:\n%s", code, jsonErr.String())
	}
	var text []byte
	sc := bufio.NewScanner(strings.NewReader(jsonOut.String()))
	var boot string
	n := 0
	for sc.Scan() {
		n++
		ev, err := encode.Decode("application/json", sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v\n%s", n, err, sc.Bytes())
		}
		if ev.Host != "dump.test" || ev.Seq != uint64(n) || !ev.Dump || ev.Boot == "" || boot != "" && ev.Boot != boot {
			t.Errorf("line %d: host %q, seq %d, dump %t, boot %q; want dump.test, %d, true, one boot", n, ev.Host, ev.Seq, ev.Dump, ev.Boot, n)
		}
		boot = ev.Boot
		if text, err = (encode.Text{}).Append(text, &ev); err != nil {
			t.Fatal(err)
		}
	}
	if string(text) != want {
		t.Errorf("dump --json, printed as text:\n%s\nwant:\n%s", text, want)
	}

	// A namespace that cannot be opened fails at run time.
	var errOut syncBuffer
	if code := dumpCmd([]string{"--config", path}, &stdout, &errOut); code != 1 || !strings.Contains(errOut.String(), "/nonexistent") {
		t.Errorf("dump with netlink.netns /nonexistent = %d, stderr %q; want 1 and an error naming it", code, errOut.String())
	}
}

// TestIntegrationWatchCommand runs the bridge on a namespace and checks
// that watch prints the block of a link created there.
func TestIntegrationWatchCommand(t *testing.T) {
	ns := nstest.New(t)
	srv := startServer(t)
	cfg := testConfig("watch.test", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	runBridge(t, context.Background(), cfg)
	stdout, _, stop := startWatch(t, watchOptions{server: srv.ClientURL(), prefix: "netlink", host: "watch.test"})

	w0, w1 := ns.AddVeth(t, "w0", "w1")
	block := regexp.MustCompile(`(?m)^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z watch\.test\] ` +
		regexp.QuoteMeta(vethBlock(t, ns, "w0", w0, w1)))
	waitOutput(t, stdout, "the NEWLINK of w0", block.MatchString)
	stop()
	// The stamp is the time nlbridge read the event.
	stamp := regexp.MustCompile(`\[(\S+) watch\.test\] results for w0`).FindStringSubmatch(stdout.String())
	tm, err := time.Parse("2006-01-02T15:04:05.000Z", stamp[1])
	if err != nil || time.Since(tm) > time.Minute || time.Since(tm) < -time.Second {
		t.Errorf("time stamp %q (%v) is not about now", stamp[1], err)
	}
}
