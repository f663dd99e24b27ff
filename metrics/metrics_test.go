package metrics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
			return source.Stats{Messages: 101, Events: 102, Skipped: 103, DecodeErrors: 104, Foreign: 111, Overflows: 105,
				Resyncs: 106, Dumps: 107, DumpRetries: 108, Merged: 109, Delayed: 110, DumpFailures: 112}
		},
		Sink: func() sink.Stats {
			return sink.Stats{Published: 201, PublishErrors: 202, Unchanged: 203, Reconciled: 204, Reconnects: 205, Filtered: 206, HeldBack: 207}
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

// scrape gets /metrics, checks its status and content type, and parses it
// with the Prometheus text parser, so that anything it returns is valid
// Prometheus text.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// fetch is scrape for any goroutine.
func fetch(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		return nil, fmt.Errorf("GET /metrics: Content-Type %q, want the text format 0.0.4", ct)
	}
	if got := expfmt.ResponseFormat(resp.Header); got.FormatType() != expfmt.TypeTextPlain {
		return nil, fmt.Errorf("GET /metrics: format %q, want text", got)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %v\n%s", err, body)
	}
	return mfs, nil
}

// serveTest serves Handler(src) on a test server closed when t ends.
func serveTest(t *testing.T, src Sources) *httptest.Server {
	t.Helper()
	h, err := Handler(src)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return mfs
}

func TestMetrics(t *testing.T) {
	src, netlinkUp, _ := fake()
	srv := serveTest(t, src)
	mfs := scrape(t, srv.URL)

	// What users see: names, types, help texts and the values of fake.
	want := []struct {
		name  string
		value float64
		help  string
	}{
		{"nlbridge_kernel_messages_total", 101, "Netlink messages read from the kernel."},
		{"nlbridge_events_total", 102, "Events the source handed to the sink, SYNC markers included."},
		{"nlbridge_decode_errors_total", 104, "Netlink messages that could not be decoded and were skipped."},
		{"nlbridge_netlink_foreign_total", 111, "Netlink datagrams that a process rather than the kernel sent to nlbridge's socket, dropped."},
		{"nlbridge_netlink_overflows_total", 105, "Times the kernel reported lost netlink messages (ENOBUFS)."},
		{"nlbridge_resyncs_total", 106, "Dumps made to recover from lost netlink notifications (overflows, undecodable messages)."},
		{"nlbridge_dumps_total", 107, "Completed dumps of links and addresses."},
		{"nlbridge_dump_retries_total", 108, "Dumps restarted because the kernel interrupted them (NLM_F_DUMP_INTR)."},
		{"nlbridge_dump_failures_total", 112, "Dumps that failed (interrupted too often, or a kernel error); startup and resync dumps are tried again."},
		{"nlbridge_dump_requests_merged_total", 109, "Dump requests answered by a dump that another request started."},
		{"nlbridge_dump_requests_delayed_total", 110, "Dump requests held back by the minimum interval between dumps."},
		{"nlbridge_published_total", 201, "Messages handed to the NATS client."},
		{"nlbridge_publish_errors_total", 202, "Messages the NATS client refused; kept in the state table and published after reconnecting."},
		{"nlbridge_unchanged_total", 203, "Kernel notifications that changed nothing published, dropped."},
		{"nlbridge_reconciled_total", 204, "Messages published to catch up after a NATS outage."},
		{"nlbridge_nats_reconnects_total", 205, "Reconnections to a NATS server."},
		{"nlbridge_filtered_total", 206, "Events dropped by the filter (interface names, families, event types)."},
		{"nlbridge_addrs_held_total", 207,
			"Addresses held back until their link's NEWLINK arrives (published with the link, or forgotten when a dump does not show them)."},
		{"nlbridge_last_event_timestamp_seconds", 1700000000.5,
			"When nlbridge last read an event from the kernel, in seconds since the Unix epoch; 0 before the first."},
	}
	for _, w := range want {
		mf := mfs[w.name]
		if mf == nil {
			t.Errorf("%s: missing", w.name)
			continue
		}
		if mf.GetHelp() != w.help {
			t.Errorf("%s: help %q, want %q", w.name, mf.GetHelp(), w.help)
		}
		wantType := dto.MetricType_COUNTER
		if !strings.HasSuffix(w.name, "_total") {
			wantType = dto.MetricType_GAUGE
		}
		if mf.GetType() != wantType || len(mf.Metric) != 1 {
			t.Errorf("%s: type %v with %d series, want %v with 1", w.name, mf.GetType(), len(mf.Metric), wantType)
			continue
		}
		if len(mf.Metric[0].Label) != 0 {
			t.Errorf("%s: labels %v, want none", w.name, mf.Metric[0].Label)
		}
		got := mf.Metric[0].GetCounter().GetValue()
		if wantType == dto.MetricType_GAUGE {
			got = mf.Metric[0].GetGauge().GetValue()
		}
		if got != w.value {
			t.Errorf("%s = %v, want %v", w.name, got, w.value)
		}
	}
	nlbridge := 0
	for name := range mfs {
		if strings.HasPrefix(name, "nlbridge_") {
			nlbridge++
		}
	}
	if nlbridge != len(want)+1 { // and nlbridge_up
		t.Errorf("%d nlbridge_* metric families, want %d", nlbridge, len(want)+1)
	}
	if n := len(mfs) - nlbridge; n < 10 {
		t.Errorf("%d other metric families, want the Go and process metrics too", n)
	}
	// The Go runtime and process metrics: goroutines, memory, CPU time,
	// resident memory, open files and start time.
	for _, p := range []struct {
		name     string
		typ      dto.MetricType
		positive bool
	}{
		{"go_goroutines", dto.MetricType_GAUGE, true},
		{"go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE, true},
		{"go_memstats_sys_bytes", dto.MetricType_GAUGE, true},
		{"go_gc_duration_seconds", dto.MetricType_SUMMARY, false},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER, false},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, true},
		{"process_open_fds", dto.MetricType_GAUGE, true},
		{"process_max_fds", dto.MetricType_GAUGE, true},
		{"process_start_time_seconds", dto.MetricType_GAUGE, true},
	} {
		mf := mfs[p.name]
		if mf == nil || len(mf.Metric) != 1 {
			t.Errorf("%s: %v, want one series", p.name, mf)
			continue
		}
		if mf.GetType() != p.typ {
			t.Errorf("%s: type %v, want %v", p.name, mf.GetType(), p.typ)
		}
		m := mf.Metric[0]
		if v := m.GetGauge().GetValue() + m.GetCounter().GetValue(); p.positive && !(v > 0) {
			t.Errorf("%s = %v, want > 0", p.name, v)
		}
	}
	if v := mfs["process_start_time_seconds"].GetMetric()[0].GetGauge().GetValue(); v > float64(time.Now().Unix()) {
		t.Errorf("process_start_time_seconds = %v, in the future", v)
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
	srv := serveTest(t, src)
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
	srv := serveTest(t, src)
	for _, tt := range tests {
		netlinkUp.Store(tt.netlink)
		natsUp.Store(tt.nats)
		if code, body := get(t, srv.URL+"/healthz"); code != tt.code || body != tt.body {
			t.Errorf("netlink up %v, nats up %v: GET /healthz = %d %q, want %d %q", tt.netlink, tt.nats, code, body, tt.code, tt.body)
		}
	}
}

// Other methods and paths get the usual HTTP answers, and HEAD the headers
// of GET.
func TestMetricsMethodsAndPaths(t *testing.T) {
	src, _, _ := fake()
	srv := serveTest(t, src)
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/metrics", http.StatusMethodNotAllowed},
		{"PUT", "/metrics", http.StatusMethodNotAllowed},
		{"DELETE", "/healthz", http.StatusMethodNotAllowed},
		{"POST", "/healthz", http.StatusMethodNotAllowed},
		{"GET", "/", http.StatusNotFound},
		{"GET", "/nothing", http.StatusNotFound},
		{"GET", "/metrics/", http.StatusNotFound},
		{"GET", "/metrics/x", http.StatusNotFound},
		{"POST", "/nothing", http.StatusNotFound},
		{"HEAD", "/metrics", http.StatusOK},
		{"HEAD", "/healthz", http.StatusOK},
	} {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
		switch {
		case tt.code == http.StatusMethodNotAllowed && !strings.Contains(resp.Header.Get("Allow"), "GET"):
			t.Errorf("%s %s: Allow %q, want GET in it", tt.method, tt.path, resp.Header.Get("Allow"))
		case tt.method == "HEAD" && len(body) != 0:
			t.Errorf("HEAD %s: body %q, want none", tt.path, body)
		case tt.method == "HEAD" && tt.path == "/metrics" &&
			(resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" || resp.ContentLength <= 0):
			t.Errorf("HEAD /metrics: Content-Type %q, length %d", resp.Header.Get("Content-Type"), resp.ContentLength)
		}
	}
}

// The last event time is exact, and valid far from now, where
// time.UnixNano would overflow.
func TestMetricsLastEvent(t *testing.T) {
	for _, tt := range []struct {
		t    time.Time
		want float64
	}{
		{time.Time{}, 0},
		{time.Unix(0, 1), 1e-9},
		{time.Unix(1700000000, 250_000_000), 1700000000.25},
		{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 32503680000},
		{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), -30610224000},
	} {
		src, _, _ := fake()
		src.LastEvent = func() time.Time { return tt.t }
		var b bytes.Buffer
		writeMetrics(&b, &src)
		mf := parse(t, b.String())["nlbridge_last_event_timestamp_seconds"]
		if got := mf.GetMetric()[0].GetGauge().GetValue(); got != tt.want {
			t.Errorf("last event %v: nlbridge_last_event_timestamp_seconds = %v, want %v", tt.t, got, tt.want)
		}
	}
}

// HELP text and label values are escaped as the text format says, so that
// they read back as written.
func TestEscape(t *testing.T) {
	const help = "back\\slash, \"quote\", new\nline and\\n not one; µ"
	const value = "a\\b \"c\"\nd\\n"
	var b bytes.Buffer
	writeHeader(&b, "x_total", help, "counter")
	writeSample(&b, "x_total", "l", value, "1")
	writeSample(&b, "x_total", "l", "", "2")
	mf := parse(t, b.String())["x_total"]
	if mf.GetHelp() != help {
		t.Errorf("help read back as %q, want %q\n%s", mf.GetHelp(), help, b.String())
	}
	if mf.GetType() != dto.MetricType_COUNTER || len(mf.Metric) != 2 {
		t.Fatalf("x_total = %v, want a counter with 2 series", mf)
	}
	if got := mf.Metric[0].Label[0].GetValue(); got != value {
		t.Errorf("label value read back as %q, want %q\n%s", got, value, b.String())
	}
	if strings.Count(b.String(), "\n") != 4 {
		t.Errorf("want 4 lines:\n%s", b.String())
	}
}

// Concurrent scrapes are safe (go test -race) and agree.
func TestMetricsConcurrent(t *testing.T) {
	src, _, _ := fake()
	srv := serveTest(t, src)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				mfs, err := fetch(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				if got := mfs["nlbridge_dumps_total"].GetMetric()[0].GetCounter().GetValue(); got != 107 {
					t.Errorf("nlbridge_dumps_total = %v, want 107", got)
				}
			}
		})
	}
	wg.Wait()
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
