package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/mirror"
)

// TestFleetFlagErrors: bad flags are usage errors (exit 2) that say what
// is wrong, before anything connects.
func TestFleetFlagErrors(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // nothing may be dialled
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"show", "--host", "web-["}, `--host "web-[": syntax error in pattern`},
		{[]string{"show", "--interface", "eth[0"}, `--interface "eth[0": syntax error in pattern`},
		{[]string{"hosts", "--host", `a\`}, `--host "a\\": syntax error in pattern`},
		{[]string{"show", "--timeout", "0s"}, "--timeout 0s: want a positive duration"},
		{[]string{"hosts", "--timeout", "-1s"}, "--timeout -1s: want a positive duration"},
		{[]string{"show", "--dump-wait", "0s"}, "--dump-wait 0s: want a positive duration"},
		{[]string{"show", "--bucket", "a.b"}, `--bucket "a.b" holds '.'`},
		{[]string{"show", "--prefix", "net.*"}, `--prefix: "net.*" holds '*'`},
		{[]string{"hosts", "--control", "a..b"}, `--control: "a..b" has an empty token`},
		{[]string{"show", "extra"}, `unexpected argument "extra"`},
		{[]string{"hosts", "--interface", "x"}, "flag provided but not defined: -interface"},
		{[]string{"hosts", "--watch=maybe"}, `invalid boolean value "maybe" for -watch`},
		{[]string{"show", "--config", "/nonexistent/nlbridge.yaml"}, "/nonexistent/nlbridge.yaml"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := realMain(tt.args, &stdout, &stderr)
		if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("realMain(%q) = %d\nstdout: %s\nstderr: %s\nwant 2, no stdout, stderr containing %q",
				tt.args, code, stdout.String(), stderr.String(), tt.want)
		}
	}
}

// TestFleetResolve: flags win over the configuration, which wins over
// $NATS_URL; with neither, the embedded server's address.
func TestFleetResolve(t *testing.T) {
	tests := []struct {
		name                            string
		env                             map[string]string
		args                            []string
		server, prefix, control, bucket string
	}{
		{"defaults", nil, nil, "nats://127.0.0.1:4222", "netlink", "nlbridge", "netlink"},
		{"NATS_URL", map[string]string{"NATS_URL": "nats://10.0.0.1:4222"}, nil, "nats://10.0.0.1:4222", "netlink", "nlbridge", "netlink"},
		{"configuration", map[string]string{"NATS_URL": "nats://10.0.0.1:4222", "NLBRIDGE_NATS_SERVERS": "nats://a:4222,nats://b:4222",
			"NLBRIDGE_SUBJECTS_PREFIX": "nl", "NLBRIDGE_SUBJECTS_CONTROL": "ctl", "NLBRIDGE_KV_BUCKET": "state"},
			nil, "nats://a:4222,nats://b:4222", "nl", "ctl", "state"},
		{"flags", map[string]string{"NLBRIDGE_NATS_SERVERS": "nats://a:4222", "NLBRIDGE_KV_BUCKET": "state"},
			[]string{"--server", "nats://c:4222", "--prefix", "p", "--control", "c", "--bucket", ""}, "nats://c:4222", "p", "c", ""},
	}
	unsetNLBridgeEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NATS_URL", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("nlbridge show", flag.ContinueOnError)
			var o fleetOptions
			addFleetFlags(fs, &o)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := o.resolve(fs); err != nil {
				t.Fatal(err)
			}
			if o.server != tt.server || o.prefix != tt.prefix || o.control != tt.control || o.bucket != tt.bucket {
				t.Errorf("got server %q prefix %q control %q bucket %q, want %q %q %q %q",
					o.server, o.prefix, o.control, o.bucket, tt.server, tt.prefix, tt.control, tt.bucket)
			}
		})
	}
}

// testSnapshot is a fleet of two hosts, one gone, for the formatting
// tests.
func testSnapshot() map[string]mirror.Host {
	v4 := event.Addr{Index: 2, Family: event.Inet, Address: netip.MustParseAddr("192.0.2.1"), PrefixLen: 24}
	v4b := event.Addr{Index: 2, Family: event.Inet, Address: netip.MustParseAddr("10.0.0.1"), PrefixLen: 8}
	v6 := event.Addr{Index: 2, Family: event.Inet6, Address: netip.MustParseAddr("2001:db8::1"), PrefixLen: 64}
	peer := event.Addr{Index: 10, Family: event.Inet, Address: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2"), PrefixLen: 32}
	started := time.Date(2026, 12, 2, 6, 0, 0, 500, time.UTC)
	gone := time.Date(2026, 12, 2, 6, 10, 31, 0, time.FixedZone("CET", 3600))
	return map[string]mirror.Host{
		"web-02": {Name: "web-02", Boot: "9a1c0b7e22d4f310", Version: "0.1.0", Gone: true, GoneSince: gone, LastSeen: started,
			Links: map[uint32]event.Link{
				1: {Index: 1, Name: "lo", State: event.OperUnknown, MTU: 65536, MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}},
			},
			Addrs: map[mirror.AddrKey]event.Addr{}},
		"web-01": {Name: "web-01", Boot: "5d64e52ef04fe2a7", Version: "0.1.0", Started: started, LastSeen: started.Add(time.Minute),
			Links: map[uint32]event.Link{
				10: {Index: 10, Name: "tun0", State: event.OperUp, MTU: 1400},
				2:  {Index: 2, Name: "eth0", State: event.OperUp, MTU: 1500, MAC: net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}},
				3:  {Index: 3, Name: "a\tb", State: event.OperLowerLayerDown, MTU: 9000, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
			},
			Addrs: map[mirror.AddrKey]event.Addr{
				{Index: 2, ID: v6.ID()}: v6, {Index: 2, ID: v4.ID()}: v4, {Index: 2, ID: v4b.ID()}: v4b, {Index: 10, ID: peer.ID()}: peer,
			}},
	}
}

// TestShowTable: sorted by host and index, aligned, addresses in ip(8)
// notation with IPv4 first, gone hosts marked, odd names quoted.
func TestShowTable(t *testing.T) {
	tests := []struct {
		iface string
		want  string
	}{
		{"", `HOST          INTERFACE  STATE           MTU    MAC                ADDRESSES
web-01        eth0       up              1500   52:54:00:12:34:56  10.0.0.1/8 192.0.2.1/24 2001:db8::1
web-01        "a\tb"     lowerlayerdown  9000   02:00:00:00:00:01
web-01        tun0       up              1400   -                  10.9.0.1 peer 10.9.0.2/32
web-02(gone)  lo         unknown         65536  00:00:00:00:00:00
`},
		{"e*", `HOST    INTERFACE  STATE  MTU   MAC                ADDRESSES
web-01  eth0       up     1500  52:54:00:12:34:56  10.0.0.1/8 192.0.2.1/24 2001:db8::1
`},
		{"nothing", "HOST  INTERFACE  STATE  MTU  MAC  ADDRESSES\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := writeTable(&b, showTable(showRows(testSnapshot(), tt.iface))); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tt.want {
			t.Errorf("--interface %q:\ngot\n%s\nwant\n%s", tt.iface, got, tt.want)
		}
	}
}

// TestShowJSON: the documented shape, with empty lists rather than null.
func TestShowJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, showDoc{Source: "bucket", Bucket: "netlink", Interfaces: showRows(testSnapshot(), "[lt]*")}, true); err != nil {
		t.Fatal(err)
	}
	want := `{"source":"bucket","bucket":"netlink","interfaces":[` +
		`{"host":"web-01","gone":false,"index":10,"name":"tun0","state":"up","mtu":1400,"mac":"","addrs":["10.9.0.1 peer 10.9.0.2/32"]},` +
		`{"host":"web-02","gone":true,"index":1,"name":"lo","state":"unknown","mtu":65536,"mac":"00:00:00:00:00:00","addrs":[]}]}` + "\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	b.Reset()
	if err := writeJSON(&b, showDoc{Source: "dump", Interfaces: showRows(nil, "")}, false); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"source\": \"dump\",\n  \"interfaces\": []\n}\n"; b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestHostsTable: presence and since from the bucket, in UTC to the
// second; without a bucket, "answered".
func TestHostsTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, hostsTable(hostRows(testSnapshot(), true))); err != nil {
		t.Fatal(err)
	}
	want := `HOST    PRESENCE  SINCE                 BOOT              VERSION  LINKS  ADDRS
web-01  up        2026-12-02T06:00:00Z  5d64e52ef04fe2a7  0.1.0    3      4
web-02  gone      2026-12-02T05:10:31Z  9a1c0b7e22d4f310  0.1.0    1      0
`
	if got := b.String(); got != want {
		t.Errorf("from the bucket: got\n%s\nwant\n%s", got, want)
	}

	snap := testSnapshot()
	for name, h := range snap {
		h.Version, h.Started, h.LastSeen, h.Gone, h.GoneSince = "", time.Time{}, time.Time{}, false, time.Time{}
		snap[name] = h
	}
	b.Reset()
	if err := writeTable(&b, hostsTable(hostRows(snap, false))); err != nil {
		t.Fatal(err)
	}
	want = `HOST    PRESENCE  SINCE  BOOT              VERSION  LINKS  ADDRS
web-01  answered  -      5d64e52ef04fe2a7  -        3      4
web-02  answered  -      9a1c0b7e22d4f310  -        1      0
`
	if got := b.String(); got != want {
		t.Errorf("from dumps: got\n%s\nwant\n%s", got, want)
	}

	b.Reset()
	if err := writeJSON(&b, hostsDoc{Source: "bucket", Bucket: "netlink", Hosts: hostRows(testSnapshot(), true)}, true); err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"source":"bucket","bucket":"netlink","hosts":[` +
		`{"host":"web-01","presence":"up","since":"2026-12-02T06:00:00Z","last_seen":"2026-12-02T06:01:00Z","boot":"5d64e52ef04fe2a7","version":"0.1.0","links":3,"addrs":4},` +
		`{"host":"web-02","presence":"gone","since":"2026-12-02T05:10:31Z","last_seen":"2026-12-02T06:00:00Z","boot":"9a1c0b7e22d4f310","version":"0.1.0","links":1,"addrs":0}]}` + "\n"
	if got := b.String(); got != wantJSON {
		t.Errorf("JSON: got\n%s\nwant\n%s", got, wantJSON)
	}
}

// TestFleetNothingAnswers: every way of finding nothing is an error (exit
// 1) that names what did not answer, within the timeout.
func TestFleetNothingAnswers(t *testing.T) {
	plain := startServer(t)
	js := startJetStream(t)
	// An empty bucket on the JetStream server.
	nc := connect(t, js)
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsc.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "empty"}); err != nil {
		t.Fatal(err)
	}
	// A server that accepts connections and says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"show", "--server", "nats://127.0.0.1:1"}, "connect to NATS at nats://127.0.0.1:1: nats: no servers available for connection"},
		{[]string{"show", "--server", "nats://u:secret@127.0.0.1:1"}, "connect to NATS at nats://REDACTED@127.0.0.1:1"},
		{[]string{"show", "--server", "nats://" + ln.Addr().String(), "--timeout", "1s"}, "connect to NATS at nats://" + ln.Addr().String()},
		{[]string{"show", "--server", plain.ClientURL()}, "no host answered the dump request on nlbridge.dump, and there is no state bucket netlink"},
		{[]string{"hosts", "--server", plain.ClientURL(), "--bucket", "", "--host", "web-*"}, `no host matching "web-*" answered the dump request on nlbridge.dump` + "\n"},
		{[]string{"show", "--server", plain.ClientURL(), "--timeout", "500ms"}, "no bridge answered the dump request on nlbridge.dump within 500ms, and there is no state bucket netlink"},
		{[]string{"hosts", "--server", js.ClientURL(), "--bucket", "empty"}, "the state bucket empty holds no host"},
		{[]string{"show", "--server", js.ClientURL(), "--bucket", "missing", "--control", "ctl"}, "no host answered the dump request on ctl.dump, and there is no state bucket missing"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := realMain(tt.args, &stdout, &stderr)
		if code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("realMain(%q) = %d\nstdout: %s\nstderr: %s\nwant 1, no stdout, stderr containing %q",
				tt.args, code, stdout.String(), stderr.String(), tt.want)
		}
		if strings.Contains(stderr.String(), "secret") {
			t.Errorf("realMain(%q) printed the password: %s", tt.args, stderr.String())
		}
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("realMain(%q) took %v", tt.args, took)
		}
	}
}

// startJetStream runs a NATS server with JetStream on a random 127.0.0.1
// port until t ends.
func startJetStream(t testing.TB) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// TestFleetConfigAuth: nats.servers and nats.auth of the configuration
// reach the server: with the token, hosts connects (and finds no host);
// without it, the server refuses, and the error does not show the token.
func TestFleetConfigAuth(t *testing.T) {
	unsetNLBridgeEnv(t)
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port, opts.Authorization = "127.0.0.1", server.RANDOM_PORT, "tok-s3cret"
	srv := natsserver.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	t.Setenv("NLBRIDGE_NATS_SERVERS", srv.ClientURL())
	for _, tt := range []struct {
		token, want string
	}{
		{"tok-s3cret", "no host answered the dump request on nlbridge.dump, and there is no state bucket netlink"},
		{"", "Authorization Violation"},
	} {
		t.Setenv("NLBRIDGE_NATS_AUTH_TOKEN", tt.token)
		var stdout, stderr bytes.Buffer
		code := realMain([]string{"hosts", "--dump-wait", "200ms"}, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tt.want) || strings.Contains(stderr.String(), "s3cret") {
			t.Errorf("token %q: exit %d, stderr %q; want 1 and %q", tt.token, code, stderr.String(), tt.want)
		}
	}
}
