//go:build linux

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// freePort returns a 127.0.0.1 address that nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestIntegrationOperator runs the bridge as an operator would configure
// it: a filter, the metrics listener; /healthz follows the NATS
// connection, /metrics counts what happened, and filtered interfaces are
// never published.
func TestIntegrationOperator(t *testing.T) {
	ns := nstest.New(t)
	ns.AddVeth(t, "keep0", "skip0")
	srv := startServer(t)
	nc := connect(t, srv)
	events := collect(t, nc, "netlink.op.>")
	cfg := testConfig("op", ns, srv.ClientURL())
	cfg.Filter.Exclude = []string{"skip*"}
	cfg.Filter.Families = []string{"inet"}
	cfg.Metrics.Listen = freePort(t)
	runBridge(t, context.Background(), cfg)
	events.waitFor(0, "startup SYNC", func(m msg) bool { return m.str("reason") == "startup" })
	for _, m := range events.all() {
		if strings.Contains(m.subject, "skip0") {
			t.Errorf("filtered interface published: %s", m.subject)
		}
	}
	if m := events.all()[len(events.all())-1]; m.num("links") != 2 {
		t.Errorf("SYNC = %v, want 2 links (lo, keep0)", m.doc)
	}

	base := "http://" + cfg.Metrics.Listen
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q while connected", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{"nlbridge_dumps_total 1", `nlbridge_up{part="netlink"} 1`, `nlbridge_up{part="nats"} 1`,
		"nlbridge_filtered_total 1"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q (status %d)", want, code)
		}
	}

	srv.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, base+"/healthz")
		if code == 503 && strings.Contains(body, "nats") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz = %d %q with the NATS server down", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationMetricsPortBusy: a metrics port in use stops the bridge at
// once with an error naming it.
func TestIntegrationMetricsPortBusy(t *testing.T) {
	ns := nstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig("busy", ns, "nats://127.0.0.1:1")
	cfg.Metrics.Listen = ln.Addr().String()
	err = run(context.Background(), cfg, discardLogger())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("run with a busy metrics port: %v, want an error naming %s", err, ln.Addr())
	}
}
