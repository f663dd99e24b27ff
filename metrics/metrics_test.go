package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// fake returns Sources with distinct counter values, and switches for the
// two parts.
func fake() (Sources, *atomic.Bool, *atomic.Bool) {
	var netlinkUp, natsUp atomic.Bool
	netlinkUp.Store(true)
	natsUp.Store(true)
	return Sources{
		Source: func() source.Stats {
			return source.Stats{Messages: 101, Events: 102, Skipped: 103, DecodeErrors: 104, Overflows: 105,
				Resyncs: 106, Dumps: 107, DumpRetries: 108, Merged: 109, Delayed: 110}
		},
		Sink: func() sink.Stats {
			return sink.Stats{Published: 201, PublishErrors: 202, Unchanged: 203, Reconciled: 204, Reconnects: 205, Filtered: 206}
		},
		NetlinkUp: netlinkUp.Load,
		NATSUp:    natsUp.Load,
		LastEvent: func() time.Time { return time.Unix(1700000000, 500_000_000) },
	}, &netlinkUp, &natsUp
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs
}

func TestMetrics(t *testing.T) {
	src, netlinkUp, _ := fake()
	h, err := Handler(src)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	mfs := scrape(t, srv.URL)

	want := map[string]float64{
		"nlbridge_kernel_messages_total":        101,
		"nlbridge_events_total":                 102,
		"nlbridge_decode_errors_total":          104,
		"nlbridge_netlink_overflows_total":      105,
		"nlbridge_resyncs_total":                106,
		"nlbridge_dumps_total":                  107,
		"nlbridge_dump_retries_total":           108,
		"nlbridge_dump_requests_merged_total":   109,
		"nlbridge_dump_requests_delayed_total":  110,
		"nlbridge_published_total":              201,
		"nlbridge_publish_errors_total":         202,
		"nlbridge_unchanged_total":              203,
		"nlbridge_reconciled_total":             204,
		"nlbridge_nats_reconnects_total":        205,
		"nlbridge_filtered_total":               206,
		"nlbridge_last_event_timestamp_seconds": 1700000000.5,
	}
	for name, v := range want {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s: missing", name)
			continue
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		wantType := dto.MetricType_COUNTER
		if !strings.HasSuffix(name, "_total") {
			wantType = dto.MetricType_GAUGE
		}
		if mf.GetType() != wantType || len(mf.Metric) != 1 {
			t.Errorf("%s: type %v with %d series, want %v with 1", name, mf.GetType(), len(mf.Metric), wantType)
			continue
		}
		got := mf.Metric[0].GetCounter().GetValue()
		if wantType == dto.MetricType_GAUGE {
			got = mf.Metric[0].GetGauge().GetValue()
		}
		if got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if n := len(mfs) - len(want); n < 10 {
		t.Errorf("%d other metric families, want the Go and process collectors' too", n)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if mfs[name] == nil {
			t.Errorf("%s: missing", name)
		}
	}

	checkUp := func(wantNetlink, wantNATS float64) {
		t.Helper()
		mf := scrape(t, srv.URL)["nlbridge_up"]
		if mf == nil || mf.GetHelp() == "" || mf.GetType() != dto.MetricType_GAUGE {
			t.Fatalf("nlbridge_up = %v, want a gauge with help", mf)
		}
		got := map[string]float64{}
		for _, m := range mf.Metric {
			if len(m.Label) != 1 || m.Label[0].GetName() != "part" {
				t.Errorf("nlbridge_up labels %v, want part only", m.Label)
				continue
			}
			got[m.Label[0].GetValue()] = m.GetGauge().GetValue()
		}
		if len(got) != 2 || got["netlink"] != wantNetlink || got["nats"] != wantNATS {
			t.Errorf("nlbridge_up = %v, want netlink %v nats %v", got, wantNetlink, wantNATS)
		}
	}
	checkUp(1, 1)
	netlinkUp.Store(false)
	checkUp(0, 1)
}

// The values are read at scrape time.
func TestMetricsReadAtScrape(t *testing.T) {
	src, _, _ := fake()
	var n atomic.Uint64
	src.Sink = func() sink.Stats { return sink.Stats{Filtered: n.Load()} }
	src.LastEvent = func() time.Time { return time.Time{} }
	h, err := Handler(src)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, v := range []uint64{0, 7, 4000000000} {
		n.Store(v)
		mfs := scrape(t, srv.URL)
		if got := mfs["nlbridge_filtered_total"].Metric[0].GetCounter().GetValue(); got != float64(v) {
			t.Errorf("nlbridge_filtered_total = %v, want %v", got, v)
		}
		if got := mfs["nlbridge_last_event_timestamp_seconds"].Metric[0].GetGauge().GetValue(); got != 0 {
			t.Errorf("nlbridge_last_event_timestamp_seconds = %v before any event, want 0", got)
		}
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		netlink, nats bool
		code          int
		body          string
	}{
		{true, true, http.StatusOK, "ok\n"},
		{false, true, http.StatusServiceUnavailable, "netlink: down\n"},
		{true, false, http.StatusServiceUnavailable, "nats: disconnected\n"},
		{false, false, http.StatusServiceUnavailable, "netlink: down\nnats: disconnected\n"},
	}
	src, netlinkUp, natsUp := fake()
	h, err := Handler(src)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tt := range tests {
		netlinkUp.Store(tt.netlink)
		natsUp.Store(tt.nats)
		if code, body := get(t, srv.URL+"/healthz"); code != tt.code || body != tt.body {
			t.Errorf("netlink up %v, nats up %v: GET /healthz = %d %q, want %d %q", tt.netlink, tt.nats, code, body, tt.code, tt.body)
		}
	}
	if code, _ := get(t, srv.URL+"/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}

func TestHandlerMissingSource(t *testing.T) {
	src, _, _ := fake()
	src.NATSUp = nil
	if _, err := Handler(src); err == nil || !strings.Contains(err.Error(), "NATSUp") {
		t.Errorf("Handler with no NATSUp: error %v, want one naming NATSUp", err)
	}
	if err := Serve(context.Background(), "127.0.0.1:0", src, nil); err == nil || !strings.Contains(err.Error(), "NATSUp") {
		t.Errorf("Serve with no NATSUp: error %v, want one naming NATSUp", err)
	}
}

func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	src, _, _ := fake()
	errc := make(chan error, 1)
	go func() { errc <- Serve(context.Background(), addr, src, nil) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("Serve on a port in use: %v, want an error naming %s", err, addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve on a port in use did not return")
	}
}

// addrHandler passes on the address that Serve logs it listens on.
type addrHandler struct {
	slog.Handler
	addr chan string
}

func (addrHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h addrHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "listen" {
			h.addr <- a.Value.String()
		}
		return true
	})
	return nil
}

// Serve serves on a real listener and returns nil soon after its context
// is cancelled, even with an idle keep-alive connection open.
func TestServeShutdown(t *testing.T) {
	src, _, _ := fake()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := addrHandler{Handler: slog.DiscardHandler, addr: make(chan string, 1)}
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, "127.0.0.1:0", src, slog.New(h)) }()
	var addr string
	select {
	case addr = <-h.addr:
	case err := <-errc:
		t.Fatalf("Serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not log its address")
	}
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	if mfs := scrape(t, "http://"+addr); mfs["nlbridge_dumps_total"] == nil {
		t.Error("nlbridge_dumps_total missing")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Serve took %v to return after cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("still serving after Serve returned")
	}
}
