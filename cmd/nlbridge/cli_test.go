package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
)

// syncBuffer is a buffer that a command's goroutine writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput waits until ok accepts what b holds.
func waitOutput(t *testing.T, b *syncBuffer, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(b.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output so far:\n%s", what, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedPort returns a local address that nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "nats://" + addr
}

func TestCLIUsage(t *testing.T) {
	down := closedPort(t)
	for _, tt := range []struct {
		args       []string
		code       int
		stderrPart string
	}{
		{[]string{"dump", "--help"}, 0, "Usage: nlbridge dump [--config FILE] [--netns PATH] [--json]\n\nPrints every link"},
		{[]string{"dump", "-h"}, 0, "-netns path"},
		{[]string{"dump", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"dump", "now"}, 2, `nlbridge dump: unexpected argument "now"`},
		{[]string{"dump", "--netns", "blue"}, 2, `--netns "blue": want an absolute path`},
		{[]string{"dump", "--config", "/nonexistent/nlbridge.yaml"}, 2, "/nonexistent/nlbridge.yaml"},
		{[]string{"dump", "--json=maybe"}, 2, "invalid boolean value"},
		{[]string{"watch", "--help"}, 0, "Usage: nlbridge watch [--server URL]"},
		{[]string{"watch", "--server"}, 2, "flag needs an argument: -server"},
		{[]string{"watch", "web-01"}, 2, `nlbridge watch: unexpected argument "web-01"`},
		{[]string{"watch", "--prefix", "netlink.>"}, 2, `--prefix: "netlink.>" holds '>'`},
		{[]string{"watch", "--prefix", "a..b"}, 2, `--prefix: "a..b" has an empty token`},
		{[]string{"watch", "--prefix", ""}, 2, `--prefix: "" has an empty token`},
		{[]string{"watch", "--server", down}, 1, "nlbridge watch: connect to NATS at " + down},
		{[]string{"request-dump", "--help"}, 0, "Usage: nlbridge request-dump [--server URL]"},
		{[]string{"request-dump", "--timeout", "soon"}, 2, `invalid value "soon" for flag -timeout`},
		{[]string{"request-dump", "--timeout", "0s"}, 2, "--timeout 0s: want a positive duration"},
		{[]string{"request-dump", "--control", "a b"}, 2, `--control: "a b" holds ' '`},
		{[]string{"request-dump", "web-01"}, 2, `unexpected argument "web-01"`},
		{[]string{"request-dump", "--server", down}, 1, "nlbridge request-dump: connect to NATS at " + down},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(tt.args, &stdout, &stderr)
			if code != tt.code || stdout.Len() != 0 || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Errorf("realMain(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, no stdout, stderr containing %q",
					tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stderrPart)
			}
		})
	}
}

func TestWatchSubject(t *testing.T) {
	for _, tt := range []struct{ prefix, host, iface, want string }{
		{"netlink", "", "", "netlink.*.>"},
		{"netlink", "web-01", "", "netlink.web-01.>"},
		{"a.b", "web.01", "", "a.b.web=2E01.>"},
		{"netlink", "", "eth0.100", "netlink.*.*.eth0=2E100.*"},
		{"netlink", "_x", "*", "netlink.=5Fx.*.=2A.*"},
	} {
		if got := watchSubject(tt.prefix, tt.host, tt.iface); got != tt.want {
			t.Errorf("watchSubject(%q, %q, %q) = %q, want %q", tt.prefix, tt.host, tt.iface, got, tt.want)
		}
	}
}

func TestServerURL(t *testing.T) {
	t.Setenv("NATS_URL", "")
	if got := serverURL(""); got != defaultServer {
		t.Errorf("serverURL(\"\") = %q, want %q", got, defaultServer)
	}
	t.Setenv("NATS_URL", "nats://nats.example:4222")
	if got := serverURL(""); got != "nats://nats.example:4222" {
		t.Errorf("serverURL(\"\") with NATS_URL = %q", got)
	}
	if got := serverURL("nats://a:1"); got != "nats://a:1" {
		t.Errorf("serverURL(flag) = %q", got)
	}
}

// testBridge is a sink.NATS publishing hand-made events, as a bridge would,
// with the dump service answering from a fixed set of links and addresses.
type testBridge struct {
	*sink.NATS
	mu      sync.Mutex // one dump at a time, as the source runs them
	objects []event.Event
}

func startTestBridge(t *testing.T, srv *server.Server, host string, enc encode.Encoder, objects ...event.Event) *testBridge {
	t.Helper()
	s, err := sink.Connect(sink.Config{
		Servers:  []string{srv.ClientURL()},
		Name:     "test bridge " + host,
		Host:     host,
		Subjects: sink.NewSubjects("netlink", "nlbridge", host),
		Encoder:  enc,
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	for !s.Conn().IsConnected() {
		time.Sleep(time.Millisecond)
	}
	b := &testBridge{NATS: s, objects: objects}
	svc, err := sink.NewService(s, b, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return b
}

// Dump publishes the bridge's objects (those of iface, if given) as the
// source would hand them to the sink.
func (b *testBridge) Dump(_ context.Context, reason event.Reason, iface string) (event.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	b.Handle(&event.Event{Type: event.Begin, Time: now, Sync: event.SyncInfo{Reason: reason, Interface: iface}})
	for _, ev := range b.objects {
		if iface == "" || ev.Link.Name == iface || ev.Addr.Ifname == iface {
			ev.Time, ev.Dump = now, true
			b.Handle(&ev)
		}
	}
	marker := event.Event{Type: event.Sync, Time: now, Sync: event.SyncInfo{Reason: reason, Interface: iface}}
	b.Handle(&marker)
	return marker, nil
}

// The hand-made objects of the tests.
var (
	testLo = event.Event{Type: event.NewLink, Link: event.Link{Index: 1, Name: "lo", State: event.OperUnknown,
		Flags: 0x10049, MTU: 65536, MAC: make(net.HardwareAddr, 6), Parent: 1, Carrier: true}}
	testEth0 = event.Event{Type: event.NewLink, Link: event.Link{Index: 2, Name: "eth0", State: event.OperUp,
		Flags: 0x11043, MTU: 1500, MAC: net.HardwareAddr{0x08, 0x00, 0x27, 0x41, 0xde, 0x23}, Carrier: true}}
	testEth0Addr = event.Event{Type: event.NewAddr, Addr: event.Addr{Index: 2, Ifname: "eth0", Family: event.Inet,
		Address: netip.MustParseAddr("10.3.0.185"), PrefixLen: 24, Broadcast: netip.MustParseAddr("10.3.0.255"),
		Label: "eth0", Flags: 0x80, ValidLft: event.Forever, PreferredLft: event.Forever}}
	testEth0Addr6 = event.Event{Type: event.NewAddr, Addr: event.Addr{Index: 2, Ifname: "eth0", Family: event.Inet6,
		Address: netip.MustParseAddr("fe80::a00:27ff:fe41:de23"), PrefixLen: 64, Scope: 253, Flags: 0x80,
		ValidLft: event.Forever, PreferredLft: event.Forever}}
)

// startWatch runs watch until the test ends and returns its output once
// its subscription is in place, and a function that stops it and waits.
func startWatch(t *testing.T, o watchOptions) (stdout, stderr *syncBuffer, stop func()) {
	t.Helper()
	stdout, stderr = new(syncBuffer), new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	o.ready = func() { close(ready) }
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = watch(ctx, o, stdout, stderr)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
				if err != nil {
					t.Errorf("watch: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("watch did not return 10s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case <-done:
		t.Fatalf("watch returned before subscribing: %v\nstderr: %s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not subscribe within 10s")
	}
	return stdout, stderr, stop
}

// TestWatch publishes a dump and changes through a real sink in both
// encodings and checks watch's text output exactly, and that it skips
// messages it cannot decode.
func TestWatch(t *testing.T) {
	for _, enc := range []encode.Encoder{encode.JSON{}, encode.CBOR{}} {
		t.Run(enc.ContentType(), func(t *testing.T) {
			srv := startServer(t)
			b := startTestBridge(t, srv, "web-01", enc, testLo, testEth0, testEth0Addr, testEth0Addr6)
			stdout, stderr, stop := startWatch(t, watchOptions{server: srv.ClientURL(), prefix: "netlink"})

			if _, err := b.Dump(context.Background(), event.ReasonStartup, ""); err != nil {
				t.Fatal(err)
			}
			// Messages that are not events: an unknown encoding and a
			// broken one, on subjects that watch listens to.
			nc := connect(t, srv)
			for _, m := range []*nats.Msg{
				{Subject: "netlink.web-01.link.eth0.new", Header: nats.Header{"Content-Type": {"application/xml"}}, Data: []byte("<link/>")},
				{Subject: "netlink.web-02.sync", Header: nats.Header{"Content-Type": {"application/json"}}, Data: []byte(`{"v":1`)},
			} {
				if err := nc.PublishMsg(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			mtu := testEth0
			mtu.Time = time.Date(2026, 11, 27, 9, 0, 2, 500_000_000, time.UTC)
			mtu.Link.MTU = 9000
			b.Handle(&mtu)
			gone := testEth0Addr6
			gone.Type, gone.Time = event.DelAddr, time.Date(2026, 11, 27, 9, 0, 3, 0, time.UTC)
			b.Handle(&gone)

			want := "[2026-11-27T09:00:00.000Z web-01] results for lo(1)\n" +
				"  type: NEWLINK\n" +
				"  state: UNKNOWN\n" +
				"  running: yes\n" +
				"  enabled: yes\n" +
				"  mtu: 65536\n" +
				"  mac: 00:00:00:00:00:00\n" +
				"\n" +
				"[2026-11-27T09:00:00.000Z web-01] results for eth0(2)\n" +
				"  type: NEWLINK\n" +
				"  state: UP\n" +
				"  running: yes\n" +
				"  enabled: yes\n" +
				"  mtu: 1500\n" +
				"  mac: 08:00:27:41:de:23\n" +
				"\n" +
				"[2026-11-27T09:00:00.000Z web-01] results for eth0(2)\n" +
				"  type: NEWADDR\n" +
				"  addr: 10.3.0.185\n" +
				"  broadcast: 10.3.0.255\n" +
				"  mask length: 24\n" +
				"  family: inet\n" +
				"  scope: global\n" +
				"  flags: permanent\n" +
				"\n" +
				"[2026-11-27T09:00:00.000Z web-01] results for eth0(2)\n" +
				"  type: NEWADDR\n" +
				"  addr: fe80::a00:27ff:fe41:de23\n" +
				"  mask length: 64\n" +
				"  family: inet6\n" +
				"  scope: link\n" +
				"  flags: permanent\n" +
				"\n" +
				"[2026-11-27T09:00:00.000Z web-01] sync: startup (2 links, 2 addrs, seq 1..5)\n" +
				"\n" +
				"[2026-11-27T09:00:02.500Z web-01] results for eth0(2)\n" +
				"  type: NEWLINK\n" +
				"  state: UP\n" +
				"  running: yes\n" +
				"  enabled: yes\n" +
				"  mtu: 9000\n" +
				"  mac: 08:00:27:41:de:23\n" +
				"  changed: mtu\n" +
				"\n" +
				"[2026-11-27T09:00:03.000Z web-01] results for eth0(2)\n" +
				"  type: DELADDR\n" +
				"  addr: fe80::a00:27ff:fe41:de23\n" +
				"  mask length: 64\n" +
				"  family: inet6\n" +
				"  scope: link\n" +
				"  flags: permanent\n" +
				"\n"
			waitOutput(t, stdout, "the DELADDR", func(s string) bool { return strings.Contains(s, "type: DELADDR") })
			stop()
			if got := stdout.String(); got != want {
				t.Errorf("watch printed:\n%s\nwant:\n%s", got, want)
			}
			for _, part := range []string{
				"nlbridge watch: watching netlink.*.> on nats://127.0.0.1:",
				`nlbridge watch: skipping the message on netlink.web-01.link.eth0.new: encode: cannot decode Content-Type "application/xml"`,
				"nlbridge watch: skipping the message on netlink.web-02.sync: encode: invalid message: JSON: unexpected EOF",
			} {
				if !strings.Contains(stderr.String(), part) {
					t.Errorf("stderr lacks %q:\n%s", part, stderr.String())
				}
			}
		})
	}
}

// TestWatchJSONFiltered watches one interface of one host, whose names
// need escaping, and checks the JSON lines: CBOR messages print as the
// JSON that nlbridge would have published.
func TestWatchJSONFiltered(t *testing.T) {
	srv := startServer(t)
	b1 := startTestBridge(t, srv, "web.01", encode.CBOR{})
	b2 := startTestBridge(t, srv, "web-02", encode.JSON{})
	stdout, stderr, stop := startWatch(t, watchOptions{server: srv.ClientURL(), prefix: "netlink",
		host: "web.01", iface: "eth0.100", json: true})

	tm := time.Date(2026, 11, 27, 9, 0, 1, 123456789, time.UTC)
	vlan := event.Event{Type: event.NewLink, Time: tm, Link: event.Link{Index: 3, Name: "eth0.100", Kind: "vlan",
		State: event.OperUp, Flags: 0x11043, MTU: 1500, MAC: net.HardwareAddr{0x08, 0x00, 0x27, 0x41, 0xde, 0x23}, Parent: 2, Carrier: true}}
	other := vlan
	other.Link.Index, other.Link.Name = 4, "eth1"
	addr := event.Event{Type: event.NewAddr, Time: tm, Addr: event.Addr{Index: 3, Ifname: "eth0.100", Family: event.Inet,
		Address: netip.MustParseAddr("192.0.2.10"), PrefixLen: 24, Label: "eth0.100", Flags: 0x80,
		ValidLft: event.Forever, PreferredLft: event.Forever}}
	b2.Handle(&vlan) // another host
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b1.Handle(&other) // another interface
	b1.Handle(&vlan)
	b1.Handle(&addr)
	b1.Handle(&event.Event{Type: event.Sync, Time: tm, Sync: event.SyncInfo{Reason: event.ReasonRequest}}) // not a link or address
	del := vlan
	del.Type = event.DelLink
	b1.Handle(&del)

	boot := b1.Boot()
	want := `{"v":1,"type":"NEWLINK","host":"web.01","boot":"` + boot + `","seq":2,"time":"2026-11-27T09:00:01.123456789Z","dump":false,"link":{"index":3,"name":"eth0.100","kind":"vlan","state":"up","enabled":true,"running":true,"mtu":1500,"mac":"08:00:27:41:de:23","parent":2,"carrier":true,"flags":["up","broadcast","running","multicast","lower_up"]}}` + "\n" +
		`{"v":1,"type":"NEWADDR","host":"web.01","boot":"` + boot + `","seq":3,"time":"2026-11-27T09:00:01.123456789Z","dump":false,"addr":{"index":3,"id":"192.0.2.10/24","ifname":"eth0.100","family":"inet","address":"192.0.2.10","prefix_len":24,"scope":"global","label":"eth0.100","flags":["permanent"]}}` + "\n" +
		`{"v":1,"type":"DELLINK","host":"web.01","boot":"` + boot + `","seq":5,"time":"2026-11-27T09:00:01.123456789Z","dump":false,"link":{"index":3,"name":"eth0.100","kind":"vlan","state":"up","enabled":true,"running":true,"mtu":1500,"mac":"08:00:27:41:de:23","parent":2,"carrier":true,"flags":["up","broadcast","running","multicast","lower_up"]}}` + "\n"
	waitOutput(t, stdout, "the DELLINK", func(s string) bool { return strings.Contains(s, "DELLINK") })
	stop()
	if got := stdout.String(); got != want {
		t.Errorf("watch --json printed:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(stderr.String(), "watching netlink.web=2E01.*.eth0=2E100.* on") {
		t.Errorf("stderr does not name the subject:\n%s", stderr.String())
	}
}

// requestDumpRun runs the request-dump command.
func requestDumpRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = realMain(append([]string{"request-dump"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRequestDump(t *testing.T) {
	objects := []event.Event{testLo, testEth0, testEth0Addr}
	t.Run("one host", func(t *testing.T) {
		srv := startServer(t)
		b := startTestBridge(t, srv, "web-01", encode.JSON{}, objects...)
		startTestBridge(t, srv, "web-02", encode.JSON{}, objects...)
		code, stdout, stderr := requestDumpRun("--server", srv.ClientURL(), "--host", "web-01")
		if want := "web-01: 2 links, 1 addr, seq 1..4 (boot " + b.Boot() + ")\n"; code != 0 || stdout != want || stderr != "" {
			t.Errorf("request-dump = %d\nstdout %q\nstderr %q\nwant 0, %q", code, stdout, stderr, want)
		}
		// A narrowed dump, as JSON.
		code, stdout, stderr = requestDumpRun("--server", srv.ClientURL(), "--host", "web-01", "--interface", "eth0", "--json")
		want := `{"host":"web-01","boot":"` + b.Boot() + `","interface":"eth0","links":1,"addrs":1,"first_seq":5,"last_seq":7}` + "\n"
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("request-dump --interface eth0 --json = %d\nstdout %q\nstderr %q\nwant 0, %q", code, stdout, stderr, want)
		}
		code, stdout, stderr = requestDumpRun("--server", srv.ClientURL(), "--host", "web-01", "--interface", "eth0")
		if want := "web-01 eth0: 1 link, 1 addr, seq 8..10 (boot " + b.Boot() + ")\n"; code != 0 || stdout != want || stderr != "" {
			t.Errorf("request-dump --interface eth0 = %d\nstdout %q\nstderr %q\nwant 0, %q", code, stdout, stderr, want)
		}
	})

	t.Run("every host", func(t *testing.T) {
		srv := startServer(t)
		b1 := startTestBridge(t, srv, "web-01", encode.JSON{}, objects...)
		b2 := startTestBridge(t, srv, "web-02", encode.CBOR{}, testLo)
		t.Setenv("NATS_URL", srv.ClientURL()) // and no --server
		start := time.Now()
		code, stdout, stderr := requestDumpRun("--timeout", "2s")
		lines := strings.SplitAfter(stdout, "\n")
		slices.Sort(lines)
		want := []string{"",
			"web-01: 2 links, 1 addr, seq 1..4 (boot " + b1.Boot() + ")\n",
			"web-02: 1 link, 0 addrs, seq 1..2 (boot " + b2.Boot() + ")\n",
		}
		if code != 0 || !slices.Equal(lines, want) || stderr != "" {
			t.Errorf("request-dump = %d\nstdout %q\nstderr %q\nwant 0, %q", code, stdout, stderr, want)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("request-dump returned after %v, before the timeout", d)
		}
	})

	t.Run("error reply", func(t *testing.T) {
		srv := startServer(t)
		startTestBridge(t, srv, "web-01", encode.JSON{}, objects...)
		code, stdout, stderr := requestDumpRun("--server", srv.ClientURL(), "--host", "web-01", "--interface", "a/b")
		want := `nlbridge request-dump: web-01: error 400: bad dump request: interface: "a/b" holds '/', ':', whitespace or NUL` + "\n"
		if code != 1 || stdout != "" || stderr != want {
			t.Errorf("request-dump = %d\nstdout %q\nstderr %q\nwant 1, stderr %q", code, stdout, stderr, want)
		}
	})

	t.Run("every host, one error", func(t *testing.T) {
		srv := startServer(t)
		b := startTestBridge(t, srv, "web-01", encode.JSON{}, objects...)
		// A bridge that is shutting down, as a plain micro service.
		nc := connect(t, srv)
		svc, err := micro.AddService(nc, micro.Config{Name: "nlbridge", Version: "0.1.0", QueueGroupDisabled: true})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Stop()
		err = svc.AddEndpoint("dump-all", micro.HandlerFunc(func(r micro.Request) {
			_ = r.Error("503", "nlbridge is shutting down", nil)
		}), micro.WithEndpointSubject("nlbridge.dump"))
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the server has the subscription
			t.Fatal(err)
		}
		code, stdout, stderr := requestDumpRun("--server", srv.ClientURL(), "--timeout", "2s")
		wantOut := "web-01: 2 links, 1 addr, seq 1..4 (boot " + b.Boot() + ")\n"
		wantErr := "nlbridge request-dump: error 503: nlbridge is shutting down\n"
		if code != 1 || stdout != wantOut || stderr != wantErr {
			t.Errorf("request-dump = %d\nstdout %q\nstderr %q\nwant 1, %q, %q", code, stdout, stderr, wantOut, wantErr)
		}
	})

	t.Run("no bridge", func(t *testing.T) {
		srv := startServer(t)
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"--host", "web.01"}, "nlbridge request-dump: no bridge answers on nlbridge.web=2E01.dump: is nlbridge running as host web.01?\n"},
			{[]string{"--control", "ctl"}, "nlbridge request-dump: no bridge answers on ctl.dump: is nlbridge running with subjects.control ctl?\n"},
		} {
			code, stdout, stderr := requestDumpRun(append([]string{"--server", srv.ClientURL()}, tt.args...)...)
			if code != 1 || stdout != "" || stderr != tt.want {
				t.Errorf("request-dump %q = %d\nstdout %q\nstderr %q\nwant 1, %q", tt.args, code, stdout, stderr, tt.want)
			}
		}
	})

	t.Run("no reply", func(t *testing.T) {
		srv := startServer(t)
		nc := connect(t, srv)
		// Responders that never answer.
		for _, subj := range []string{"nlbridge.slow.dump", "nlbridge.dump"} {
			if _, err := nc.Subscribe(subj, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"--host", "slow"}, "nlbridge request-dump: no reply on nlbridge.slow.dump within 200ms\n"},
			{nil, "nlbridge request-dump: no reply on nlbridge.dump within 200ms\n"},
		} {
			code, stdout, stderr := requestDumpRun(append([]string{"--server", srv.ClientURL(), "--timeout", "200ms"}, tt.args...)...)
			if code != 1 || stdout != "" || stderr != tt.want {
				t.Errorf("request-dump %q = %d\nstdout %q\nstderr %q\nwant 1, %q", tt.args, code, stdout, stderr, tt.want)
			}
		}
	})

	t.Run("bad reply", func(t *testing.T) {
		srv := startServer(t)
		nc := connect(t, srv)
		if _, err := nc.Subscribe("nlbridge.odd.dump", func(m *nats.Msg) { _ = m.Respond([]byte("OK")) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := requestDumpRun("--server", srv.ClientURL(), "--host", "odd")
		want := `nlbridge request-dump: odd: bad reply "OK": invalid character 'O' looking for beginning of value` + "\n"
		if code != 1 || stdout != "" || stderr != want {
			t.Errorf("request-dump = %d\nstdout %q\nstderr %q\nwant 1, %q", code, stdout, stderr, want)
		}
	})
}

func TestReplyLine(t *testing.T) {
	for _, tt := range []struct {
		r    sink.DumpReply
		want string
	}{
		{sink.DumpReply{Host: "web-01", Boot: "5d64e52ef04fe2a7", Links: 3, Addrs: 4, FirstSeq: 8, LastSeq: 14},
			"web-01: 3 links, 4 addrs, seq 8..14 (boot 5d64e52ef04fe2a7)"},
		{sink.DumpReply{Host: "web\n01", Boot: "b", Interface: "eth0.100", Links: 1, Addrs: 1, FirstSeq: 1, LastSeq: 3},
			`"web\n01" eth0.100: 1 link, 1 addr, seq 1..3 (boot b)`},
	} {
		if got := replyLine(tt.r); got != tt.want {
			t.Errorf("replyLine(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

// request-dump tells one host how long it waits, so that the bridge drops
// the request when nobody waits for it any more; fleet-wide requests,
// whose replies it waits for one after another, do not say.
func TestRequestDumpSendsTimeout(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	bodies := make(chan string, 2)
	if _, err := nc.Subscribe("nlbridge.>", func(m *nats.Msg) {
		bodies <- string(m.Data)
		_ = m.Respond([]byte(`{"host":"h9","boot":"b","links":0,"addrs":0,"first_seq":1,"last_seq":1}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	requestDumpRun("--server", srv.ClientURL(), "--host", "h9", "--interface", "eth0", "--timeout", "3s")
	requestDumpRun("--server", srv.ClientURL(), "--timeout", "100ms")
	for _, want := range []string{`{"interface":"eth0","timeout":"3s"}`, ``} {
		select {
		case got := <-bodies:
			if got != want {
				t.Errorf("request body %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no request for body %q", want)
		}
	}
}
