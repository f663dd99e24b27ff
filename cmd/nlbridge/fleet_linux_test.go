//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/internal/proxytest"
	"github.com/nlbridge/nlbridge/mirror"
)

// fleetHost is a namespace with known links: lo, e0 (MAC
// 02:00:00:00:<n>:00, MTU 1500, 192.0.2.1/24 and 2001:db8::1/64) and e1
// (MAC 02:00:00:00:<n>:01, MTU 9000, 10.9.0.1 peer 10.9.0.2/32), all down.
type fleetHost struct {
	name   string
	ns     *nstest.NS
	e0, e1 uint32
}

func newFleetHost(t *testing.T, name string, n int) fleetHost {
	t.Helper()
	ns := nstest.New(t)
	e0, e1 := ns.AddVeth(t, "e0", "e1")
	for _, c := range [][]string{
		{"link", "set", "dev", "e0", "address", fmt.Sprintf("02:00:00:00:%02x:00", n)},
		{"link", "set", "dev", "e1", "address", fmt.Sprintf("02:00:00:00:%02x:01", n)},
		{"address", "add", "10.9.0.1", "peer", "10.9.0.2/32", "dev", "e1"},
	} {
		if out, err := ns.Command("ip", nil, c...); err != nil {
			t.Fatalf("ip %v: %v: %s", c, err, out)
		}
	}
	ns.SetMTU(t, e1, 9000)
	ns.AddAddr(t, e0, netip.MustParsePrefix("192.0.2.1/24"))
	ns.AddAddr(t, e0, netip.MustParsePrefix("2001:db8::1/64"))
	return fleetHost{name: name, ns: ns, e0: e0, e1: e1}
}

// row is one interface line of show's expected table, before alignment.
type row struct {
	index uint32
	line  string
}

// showLines returns the expected lines of show for h, sorted by index,
// with the host column hostCol wide (its name and padding).
func (h fleetHost) showLines(n int, hostCol string) []string {
	rows := []row{
		{1, "lo         down   65536  00:00:00:00:00:00"}, // a new namespace's lo is down
		{h.e0, fmt.Sprintf("e0         down   1500   02:00:00:00:%02x:00  192.0.2.1/24 2001:db8::1", n)},
		{h.e1, fmt.Sprintf("e1         down   9000   02:00:00:00:%02x:01  10.9.0.1 peer 10.9.0.2/32", n)},
	}
	slices.SortFunc(rows, func(a, b row) int { return int(a.index) - int(b.index) })
	var lines []string
	for _, r := range rows {
		lines = append(lines, hostCol+r.line)
	}
	return lines
}

// nlbridge runs a command of nlbridge in-process and returns its exit
// status, stdout and stderr.
func nlbridge(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := realMain(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// checkRun runs a command and checks its exit status 0, its stdout (after
// normalise, when not nil) and that stderr holds wantErr.
func checkRun(t *testing.T, normalise func(string) string, want, wantErr string, args ...string) string {
	t.Helper()
	code, out, errOut := nlbridge(args...)
	got := out
	if normalise != nil {
		got = normalise(out)
	}
	if code != 0 || got != want || !strings.Contains(errOut, wantErr) {
		t.Errorf("nlbridge %q = %d\nstdout:\n%s\nwant:\n%s\nstderr: %s\nwant stderr holding %q", args, code, got, want, errOut, wantErr)
	}
	return out
}

// rfc3339 matches the times that hosts prints; they are replaced by a
// placeholder of the same width, so that the columns still align.
var rfc3339 = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

func normaliseTimes(s string) string { return rfc3339.ReplaceAllString(s, "YYYY-MM-DDThh:mm:ssZ") }

// TestIntegrationShowHostsBucket: three bridges (JSON, CBOR, and one
// behind a proxy) share a server and its bucket; show and hosts print
// exactly the namespaces' links and addresses and the hosts' presence,
// as text and JSON, with the host and interface filters; once the third
// host's connection is cut, its presence expires and hosts shows it gone
// since then, and show marks its last state.
func TestIntegrationShowHostsBucket(t *testing.T) {
	fa, fb, fc := newFleetHost(t, "fa", 1), newFleetHost(t, "fb", 2), newFleetHost(t, "fc", 3)
	srv := jetStreamServer(t, 0, t.TempDir())
	url := srv.ClientURL()
	proxy := proxytest.New(t, srv.Addr().String())
	cfgA := testConfig("fa", fa.ns, url)
	cfgB := testConfig("fb", fb.ns, url)
	cfgB.Encoding = config.EncodingCBOR
	cfgC := testConfig("fc", fc.ns, "nats://"+proxy.Addr())
	cfgC.KV.PresenceTTL = 3 * time.Second
	for _, cfg := range []config.Config{cfgA, cfgB, cfgC} {
		runBridge(t, context.Background(), cfg)
	}
	for _, h := range []fleetHost{fa, fb, fc} {
		waitFleetBucket(t, url, h)
	}
	m, changes := startMirror(t, url)
	source := "nlbridge show: from the state bucket netlink on " + url + "\n"

	want := "HOST  INTERFACE  STATE  MTU    MAC                ADDRESSES\n" +
		strings.Join(append(fa.showLines(1, "fa    "), fb.showLines(2, "fb    ")...), "\n") + "\n"
	checkRun(t, nil, want, source, "show", "--server", url, "--host", "f[ab]")

	ifaceJSON := func(host string, n int, index uint32, name string) string {
		if name == "e0" {
			return fmt.Sprintf(`    {
      "host": %q,
      "gone": false,
      "index": %d,
      "name": "e0",
      "state": "down",
      "mtu": 1500,
      "mac": "02:00:00:00:%02x:00",
      "addrs": [
        "192.0.2.1/24",
        "2001:db8::1"
      ]
    }`, host, index, n)
		}
		return fmt.Sprintf(`    {
      "host": %q,
      "gone": false,
      "index": %d,
      "name": "e1",
      "state": "down",
      "mtu": 9000,
      "mac": "02:00:00:00:%02x:01",
      "addrs": [
        "10.9.0.1 peer 10.9.0.2/32"
      ]
    }`, host, index, n)
	}
	var ifaces []row
	for i, h := range []fleetHost{fa, fb} {
		for _, e := range []struct {
			index uint32
			name  string
		}{{h.e0, "e0"}, {h.e1, "e1"}} {
			ifaces = append(ifaces, row{uint32(i)<<16 | e.index, ifaceJSON(h.name, i+1, e.index, e.name)})
		}
	}
	slices.SortFunc(ifaces, func(a, b row) int { return int(a.index) - int(b.index) })
	var docs []string
	for _, r := range ifaces {
		docs = append(docs, r.line)
	}
	wantJSON := "{\n  \"source\": \"bucket\",\n  \"bucket\": \"netlink\",\n  \"interfaces\": [\n" + strings.Join(docs, ",\n") + "\n  ]\n}\n"
	checkRun(t, nil, wantJSON, source, "show", "--server", url, "--host", "f[ab]", "--interface", "e?", "--json")

	boot := func(name string) string { h, _ := m.Host(name); return h.Boot }
	hostsSource := "nlbridge hosts: from the state bucket netlink on " + url + "\n"
	want = "HOST  PRESENCE  SINCE                 BOOT              VERSION    LINKS  ADDRS\n"
	for _, h := range []string{"fa", "fb", "fc"} {
		want += fmt.Sprintf("%s    up        YYYY-MM-DDThh:mm:ssZ  %s  %s  3      3\n", h, boot(h), version)
	}
	checkRun(t, normaliseTimes, want, hostsSource, "hosts", "--server", url)

	// fc's connection is cut: its presence expires after its TTL.
	cut := time.Now().Truncate(time.Second)
	proxy.Close()
	waitGone(t, m, changes, "fc", 15*time.Second)
	// hosts starts after the presence went: it knows fc's boot from its
	// values, but not its version.
	want = strings.Replace(want, "fc    up        ", "fc    gone      ", 1)
	want = strings.Replace(want, boot("fc")+"  "+version+"  ", boot("fc")+"  -"+strings.Repeat(" ", len(version)-1)+"  ", 1)
	out := checkRun(t, normaliseTimes, want, hostsSource, "hosts", "--server", url)
	t.Logf("nlbridge hosts:\n%s", out)

	var doc hostsDoc
	out = checkRun(t, func(s string) string { return "" }, "", hostsSource, "hosts", "--server", url, "--host", "f[bc]", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("hosts --json: %v\n%s", err, out)
	}
	if doc.Source != "bucket" || doc.Bucket != "netlink" || len(doc.Hosts) != 2 || doc.Hosts[0].Host != "fb" || doc.Hosts[1].Host != "fc" {
		t.Fatalf("hosts --json --host 'f[bc]':\n%s", out)
	}
	fbH, _ := m.Host("fb")
	if got, want := doc.Hosts[0].Since, fbH.Started.UTC().Truncate(time.Second); got == nil || !got.Equal(want) {
		t.Errorf("fb up since %v, want since it started, %v", got, want)
	}
	if got := doc.Hosts[1]; got.Presence != "gone" || got.Since == nil || got.Since.Before(cut) || got.Since.After(time.Now()) ||
		got.LastSeen != nil || got.Version != "" || got.Boot != boot("fc") || got.Links != 3 || got.Addrs != 3 {
		t.Errorf("fc: %+v (since %v, last seen %v), want gone since after %v, its boot, no last seen or version", got, got.Since, got.LastSeen, cut)
	}
	wantDoc := `{
  "source": "bucket",
  "bucket": "netlink",
  "hosts": [
    {
      "host": "fb",
      "presence": "up",
      "since": "YYYY-MM-DDThh:mm:ssZ",
      "last_seen": "YYYY-MM-DDThh:mm:ssZ",
      "boot": "` + boot("fb") + `",
      "version": "` + version + `",
      "links": 3,
      "addrs": 3
    },
    {
      "host": "fc",
      "presence": "gone",
      "since": "YYYY-MM-DDThh:mm:ssZ",
      "boot": "` + boot("fc") + `",
      "links": 3,
      "addrs": 3
    }
  ]
}
`
	if got := normaliseTimes(out); got != wantDoc {
		t.Errorf("hosts --json:\n%s\nwant\n%s", got, wantDoc)
	}

	want = "HOST      INTERFACE  STATE  MTU    MAC                ADDRESSES\n" +
		strings.Join(fc.showLines(3, "fc(gone)  "), "\n") + "\n"
	checkRun(t, nil, want, source, "show", "--server", url, "--host", "fc")
}

// TestIntegrationShowHostsDumps: on a server without JetStream, show and
// hosts ask every bridge for a dump and print the same interfaces, and
// the hosts that answered; they say so.
func TestIntegrationShowHostsDumps(t *testing.T) {
	fa, fb := newFleetHost(t, "fa", 1), newFleetHost(t, "fb", 2)
	srv := startServer(t)
	url := srv.ClientURL()
	cfgA := testConfig("fa", fa.ns, url)
	cfgA.KV.Bucket = "" // the server has no JetStream
	cfgB := testConfig("fb", fb.ns, url)
	cfgB.Encoding = config.EncodingCBOR
	cfgB.KV.Bucket = ""
	// Each command asks for dumps: answer them at once, and wait long
	// enough for the replies on a loaded machine.
	cfgA.Dump.MinInterval, cfgB.Dump.MinInterval = 0, 0
	wait := []string{"--dump-wait", "4s", "--timeout", "20s"}
	runBridge(t, context.Background(), cfgA)
	runBridge(t, context.Background(), cfgB)
	waitStartup(t, srv, "fa")
	waitStartup(t, srv, "fb")

	source := "nlbridge show: from dump requests on nlbridge.dump (no state bucket netlink) on " + url + "\n"
	want := "HOST  INTERFACE  STATE  MTU    MAC                ADDRESSES\n" +
		strings.Join(append(fa.showLines(1, "fa    "), fb.showLines(2, "fb    ")...), "\n") + "\n"
	checkRun(t, nil, want, source, append([]string{"show", "--server", url}, wait...)...)

	wantJSON := fmt.Sprintf(`{"source":"dump","interfaces":[{"host":"fb","gone":false,"index":%d,"name":"e1","state":"down","mtu":9000,"mac":"02:00:00:00:02:01","addrs":["10.9.0.1 peer 10.9.0.2/32"]}]}`, fb.e1)
	var compact bytes.Buffer
	out := checkRun(t, func(string) string { return "" }, "", "nlbridge show: from dump requests on nlbridge.dump (no bucket asked for)",
		append([]string{"show", "--server", url, "--bucket", "", "--host", "fb", "--interface", "e1", "--json"}, wait...)...)
	if err := json.Compact(&compact, []byte(out)); err != nil || compact.String() != wantJSON {
		t.Errorf("show --json: %v\n%s\nwant\n%s", err, compact.String(), wantJSON)
	}

	boot := func(host string) string {
		code, out, _ := nlbridge("request-dump", "--server", url, "--host", host, "--json", "--timeout", "20s")
		var r struct{ Boot string }
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("request-dump %s: %d %v", host, code, err)
		}
		return r.Boot
	}
	want = "HOST  PRESENCE  SINCE  BOOT              VERSION  LINKS  ADDRS\n" +
		"fa    answered  -      " + boot("fa") + "  -        3      3\n" +
		"fb    answered  -      " + boot("fb") + "  -        3      3\n"
	checkRun(t, nil, want, "nlbridge hosts: from dump requests on nlbridge.dump (no state bucket netlink) on "+url+": the hosts that answered\n",
		append([]string{"hosts", "--server", url}, wait...)...)
}

// TestIntegrationShowWatch: show --watch into a pipe prints a new table
// after the kernel changes, separated from the last by an empty line,
// and returns when its context is cancelled.
func TestIntegrationShowWatch(t *testing.T) {
	fa := newFleetHost(t, "fa", 1)
	srv := jetStreamServer(t, 0, t.TempDir())
	runBridge(t, context.Background(), testConfig("fa", fa.ns, srv.ClientURL()))
	waitFleetBucket(t, srv.ClientURL(), fa)

	var o fleetOptions
	out := startFleetWatch(t, newShowFlags(&o, io.Discard), &o, show, "--server", srv.ClientURL(), "--watch", "--interface", "e*")
	// Without lo, the MTU column is narrower.
	var lines []string
	for _, l := range fa.showLines(1, "fa    ") {
		if !strings.Contains(l, " lo ") {
			lines = append(lines, strings.Replace(l, "0   02:", "0  02:", 1))
		}
	}
	first := "HOST  INTERFACE  STATE  MTU   MAC                ADDRESSES\n" + strings.Join(lines, "\n") + "\n\n"
	waitExactly(t, out, first)

	fa.ns.SetMTU(t, fa.e0, 1400)
	fa.ns.AddAddr(t, fa.e1, netip.MustParsePrefix("198.51.100.7/24"))
	second := strings.Replace(first, "e0         down   1500  ", "e0         down   1400  ", 1)
	second = strings.Replace(second, "10.9.0.1 peer 10.9.0.2/32", "10.9.0.1 peer 10.9.0.2/32 198.51.100.7/24", 1)
	// The two changes may come in one redraw or two: the last table is
	// the new state.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(out.String(), "\n\n"+second) || !strings.HasPrefix(out.String(), first) {
		if time.Now().After(deadline) {
			t.Fatalf("show --watch printed\n%s\nwant it to start with\n%s\nand end with\n%s", out.String(), first, second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationHostsWatch: hosts --watch into a pipe prints a new table
// when a host's links change and when its presence goes (its bridge
// stopped), each after the last with an empty line between.
func TestIntegrationHostsWatch(t *testing.T) {
	fa := newFleetHost(t, "fa", 1)
	srv := jetStreamServer(t, 0, t.TempDir())
	stop := runBridge(t, context.Background(), testConfig("fa", fa.ns, srv.ClientURL()))
	waitFleetBucket(t, srv.ClientURL(), fa)

	var o fleetOptions
	out := startFleetWatch(t, newHostsFlags(&o, io.Discard), &o, hosts, "--server", srv.ClientURL(), "--watch")
	boot := regexp.MustCompile(`\b[0-9a-f]{16}\b`)
	normalise := func(s string) string { return boot.ReplaceAllString(normaliseTimes(s), "BOOT") }
	table := func(presence string, links int) string {
		return "HOST  PRESENCE  SINCE                 BOOT              VERSION    LINKS  ADDRS\n" +
			fmt.Sprintf("fa    %-8s  YYYY-MM-DDThh:mm:ssZ  BOOT  %s  %d      3\n\n", presence, version, links)
	}
	wait := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !strings.HasSuffix(normalise(out.String()), want); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("hosts --watch printed\n%s\nwant it to end with\n%s", normalise(out.String()), want)
			}
		}
	}
	first := table("up", 3)
	wait(first)
	fa.ns.AddVeth(t, "e2", "e3")
	wait(first + table("up", 5))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wait(first + table("up", 5) + table("gone", 5))
}

// startFleetWatch parses args with fs into o and runs cmd (show or hosts) with
// them until the test ends, its stdout going to the buffer returned; an
// error it returns fails the test.
func startFleetWatch(t *testing.T, fs *flag.FlagSet, o *fleetOptions,
	cmd func(context.Context, fleetOptions, io.Writer, io.Writer) error, args ...string) *lockedBuffer {
	t.Helper()
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.resolve(fs); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd(ctx, *o, out, &lockedBuffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", fs.Name(), err)
		}
	})
	return out
}

// waitFleetBucket waits until the bucket holds h's links, addresses and
// presence, as a Mirror reads them, so that a first view is complete.
func waitFleetBucket(t *testing.T, url string, h fleetHost) {
	t.Helper()
	kvBucket(t, url) // the mirror reads the bucket only if it exists
	m, changes := startMirror(t, url, mirror.WithHosts(h.name))
	if !m.FromBucket() {
		t.Fatal("the mirror does not read the bucket")
	}
	waitMirror(t, h.ns, m, changes, h.name, 15*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if mh, _ := m.Host(h.name); !mh.Gone {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s has no presence", h.name)
		}
	}
}

// waitExactly waits until b holds exactly want.
func waitExactly(t *testing.T, b *lockedBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); b.String() != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
		}
	}
}

// TestIntegrationShowWatchTerminal drives show --watch in a terminal
// (tmux): it clears the screen and redraws the table when a link changes;
// Ctrl-C ends it with exit status 0.
func TestIntegrationShowWatchTerminal(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("skipping: tmux is not installed")
	}
	fa := newFleetHost(t, "fa", 1)
	srv := jetStreamServer(t, 0, t.TempDir())
	runBridge(t, context.Background(), testConfig("fa", fa.ns, srv.ClientURL()))
	waitFleetBucket(t, srv.ClientURL(), fa)

	bin := filepath.Join(t.TempDir(), "nlbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(t.TempDir(), "tmux") // a server of the test's own, gone with the directory
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	// A shell runs show and writes its exit status: tmux 3.3 was seen
	// leaving a dead pane's process unreaped, without a status. The shell
	// waits out Ctrl-C (its trap) while show handles it.
	status := filepath.Join(t.TempDir(), "status")
	run("new-session", "-d", "-s", "show", "-x", "200", "-y", "50",
		fmt.Sprintf("trap : INT; '%s' show --watch --server '%s' --host fa; echo $? > '%s'", bin, srv.ClientURL(), status))
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })

	title := regexp.MustCompile(`^nlbridge show: from the state bucket netlink on ` + regexp.QuoteMeta(srv.ClientURL()) + `, \d\d:\d\d:\d\d$`)
	header := "HOST  INTERFACE  STATE  MTU    MAC                ADDRESSES"
	screen := func(want []string) {
		t.Helper()
		var lines []string
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			lines = strings.Split(strings.TrimRight(run("capture-pane", "-p", "-t", "show"), "\n"), "\n")
			if len(lines) == len(want)+2 && title.MatchString(lines[0]) && lines[1] == "" && slices.Equal(lines[2:], want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the screen shows\n%s\nwant a title, an empty line and\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
			}
		}
	}
	first := append([]string{header}, fa.showLines(1, "fa    ")...)
	screen(first)

	fa.ns.SetMTU(t, fa.e0, 1400)
	fa.ns.DelAddr(t, fa.e0, netip.MustParsePrefix("192.0.2.1/24"))
	var second []string
	for _, l := range first {
		l = strings.Replace(l, "e0         down   1500   ", "e0         down   1400   ", 1)
		second = append(second, strings.Replace(l, "192.0.2.1/24 2001:db8::1", "2001:db8::1", 1))
	}
	screen(second) // the whole screen: the first table is gone

	run("send-keys", "-t", "show", "C-c")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(status)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			if got := strings.TrimSpace(string(b)); got != "0" {
				t.Errorf("after Ctrl-C, show --watch exited with status %s, want 0", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("show --watch has not exited 10 s after Ctrl-C; the screen:\n%s", run("capture-pane", "-p", "-t", "show"))
		}
	}
}
