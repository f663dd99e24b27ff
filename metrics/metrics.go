// Package metrics serves nlbridge's counters over HTTP: /metrics in the
// Prometheus text format and /healthz for liveness probes. It reads the
// counters when scraped, through functions, so that it costs nothing on
// the path from the kernel to NATS.
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// Sources are where the metrics come from. Each function is called at
// scrape time, from the HTTP server's goroutines, so it must be safe for
// concurrent use (source.Netlink.Stats and sink.NATS.Stats are). All are
// required.
type Sources struct {
	Source    func() source.Stats
	Sink      func() sink.Stats
	NetlinkUp func() bool      // the netlink socket is being read
	NATSUp    func() bool      // connected to NATS
	LastEvent func() time.Time // when the last event was read; zero for none yet
	// KV reads the state bucket's counters; nil, the only optional
	// function, when there is no bucket: its metrics are left out.
	KV func() sink.KVStats
}

// valid reports the first missing function.
func (s *Sources) valid() error {
	for _, f := range []struct {
		name string
		nil  bool
	}{
		{"Source", s.Source == nil}, {"Sink", s.Sink == nil}, {"NetlinkUp", s.NetlinkUp == nil},
		{"NATSUp", s.NATSUp == nil}, {"LastEvent", s.LastEvent == nil},
	} {
		if f.nil {
			return fmt.Errorf("metrics: Sources.%s is nil", f.name)
		}
	}
	return nil
}

// shutdownTimeout bounds how long Serve waits for scrapes in progress once
// its context is done.
const shutdownTimeout = 5 * time.Second

// Serve listens on listen (host:port) and serves /metrics and /healthz
// until ctx is done, then shuts the server down gracefully and returns nil.
// It returns an error at once when it cannot listen, and an error if the
// server stops by itself.
func Serve(ctx context.Context, listen string, src Sources, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err) // the error names the address
	}
	return ServeListener(ctx, ln, src, log)
}

// ServeListener is Serve on a listener the caller opened, so that a
// listen error can stop a program before it starts anything else. It
// closes ln.
func ServeListener(ctx context.Context, ln net.Listener, src Sources, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := Handler(src)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second, // a client that stops reading
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("serving metrics", "listen", ln.Addr().String())

	select {
	case err := <-done: // Serve returns only on failure before Shutdown
		return fmt.Errorf("metrics: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("metrics: scrapes still running at shutdown; closing", "error", err)
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// contentType is the Prometheus text exposition format, version 0.0.4.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler returns the HTTP handler that Serve serves: /metrics and
// /healthz. It fails when a function of src is missing.
//
// /metrics writes the nlbridge_* metrics itself, then the Go runtime and
// process metrics of github.com/VictoriaMetrics/metrics (go_*, process_*).
// Handler turns on that library's process-wide ExposeMetadata, so that
// those carry # TYPE lines too.
func Handler(src Sources) (http.Handler, error) {
	if err := src.valid(); err != nil {
		return nil, err
	}
	vm.ExposeMetadata(true)

	metrics := func(w http.ResponseWriter, r *http.Request) {
		// Render first: a panic in a Sources function then sends nothing
		// rather than half a 200 response (net/http recovers and logs it).
		var b bytes.Buffer
		b.Grow(16 << 10)
		writeMetrics(&b, &src)
		vm.WriteProcessMetrics(&b)
		vm.WriteFDMetrics(&b)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		if r.Method != http.MethodHead {
			w.Write(b.Bytes())
		}
	}
	healthz := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var down []string
		if !src.NetlinkUp() {
			down = append(down, "netlink: down")
		}
		if !src.NATSUp() {
			down = append(down, "nats: disconnected")
		}
		if len(down) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(down, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	}
	// Routed by hand rather than by an http.ServeMux pattern such as
	// "GET /metrics": nlbridge runs with the Go 1.21 ServeMux
	// (httpmuxgo121, cmd/nlbridge/main.go), which has no methods in
	// patterns, while the tests run with the current one.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.HandlerFunc
		switch r.URL.Path {
		case "/metrics":
			h = metrics
		case "/healthz":
			h = healthz
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}), nil
}

// writeMetrics writes the nlbridge_* metrics in the text format, reading
// each Sources function once.
func writeMetrics(b *bytes.Buffer, src *Sources) {
	so, si := src.Source(), src.Sink()
	for _, c := range counters {
		writeHeader(b, c.name, c.help, "counter")
		writeSample(b, c.name, "", "", strconv.FormatUint(c.value(&so, &si), 10))
	}

	const last = "nlbridge_last_event_timestamp_seconds"
	writeHeader(b, last, "When nlbridge last read an event from the kernel, in seconds since the Unix epoch; 0 before the first.", "gauge")
	v := 0.0
	if t := src.LastEvent(); !t.IsZero() {
		// Not UnixNano, which overflows outside the years 1678-2262.
		v = float64(t.Unix()) + float64(t.Nanosecond())/1e9
	}
	writeSample(b, last, "", "", strconv.FormatFloat(v, 'g', -1, 64))

	const up = "nlbridge_up"
	writeHeader(b, up, `Whether a part of nlbridge works: part="netlink" is 1 while the netlink socket is read, part="nats" while connected to NATS, part="kv" while the state bucket is reachable (when there is one).`, "gauge")
	writeSample(b, up, "part", "netlink", bit(src.NetlinkUp()))
	writeSample(b, up, "part", "nats", bit(src.NATSUp()))
	if src.KV == nil {
		return
	}
	kv := src.KV()
	writeSample(b, up, "part", "kv", bit(kv.Reachable))
	for _, m := range []struct {
		name, help, typ string
		value           string
	}{
		{"nlbridge_kv_writes_total", "Keys written to or deleted from the state bucket (presence included).", "counter",
			strconv.FormatUint(kv.Writes, 10)},
		{"nlbridge_kv_write_failures_total", "Writes to the state bucket that failed; their keys are written again with their current values.", "counter",
			strconv.FormatUint(kv.Failures, 10)},
		{"nlbridge_kv_pending_keys", "Keys of the state bucket (and links whose address keys are to be deleted) waiting to be written.", "gauge",
			strconv.FormatInt(kv.Pending, 10)},
	} {
		writeHeader(b, m.name, m.help, m.typ)
		writeSample(b, m.name, "", "", m.value)
	}
}

func bit(ok bool) string {
	if ok {
		return "1"
	}
	return "0"
}

// The text format escapes \ and newline in HELP text, and also " in label
// values.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// writeHeader writes the # HELP and # TYPE lines of a metric family.
func writeHeader(b *bytes.Buffer, name, help, typ string) {
	b.WriteString("# HELP ")
	b.WriteString(name)
	b.WriteByte(' ')
	helpEscaper.WriteString(b, help)
	b.WriteString("\n# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(typ)
	b.WriteByte('\n')
}

// writeSample writes one sample line, with the label label="labelValue"
// when label is not empty.
func writeSample(b *bytes.Buffer, name, label, labelValue, value string) {
	b.WriteString(name)
	if label != "" {
		b.WriteByte('{')
		b.WriteString(label)
		b.WriteString(`="`)
		labelEscaper.WriteString(b, labelValue)
		b.WriteString(`"}`)
	}
	b.WriteByte(' ')
	b.WriteString(value)
	b.WriteByte('\n')
}

// counters are the counter metrics, each a field of source.Stats or
// sink.Stats read at scrape time.
var counters = []struct {
	name, help string
	value      func(*source.Stats, *sink.Stats) uint64
}{
	{"nlbridge_kernel_messages_total", "Netlink messages read from the kernel.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Messages }},
	{"nlbridge_events_total", "Events the source handed to the sink, SYNC markers included.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Events }},
	{"nlbridge_decode_errors_total", "Netlink messages that could not be decoded and were skipped.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.DecodeErrors }},
	{"nlbridge_netlink_foreign_total", "Netlink datagrams that a process rather than the kernel sent to nlbridge's socket, dropped.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Foreign }},
	{"nlbridge_netlink_overflows_total", "Times the kernel reported lost netlink messages (ENOBUFS).",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Overflows }},
	{"nlbridge_resyncs_total", "Dumps made to recover from lost netlink notifications (overflows, undecodable messages).",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Resyncs }},
	{"nlbridge_dumps_total", "Completed dumps of links and addresses.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Dumps }},
	{"nlbridge_dump_retries_total", "Dumps restarted because the kernel interrupted them (NLM_F_DUMP_INTR).",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.DumpRetries }},
	{"nlbridge_dump_failures_total", "Dumps that failed (interrupted too often, or a kernel error); startup and resync dumps are tried again.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.DumpFailures }},
	{"nlbridge_dump_requests_merged_total", "Dump requests answered by a dump that another request started.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Merged }},
	{"nlbridge_dump_requests_delayed_total", "Dump requests held back by the minimum interval between dumps.",
		func(s *source.Stats, _ *sink.Stats) uint64 { return s.Delayed }},
	{"nlbridge_published_total", "Messages handed to the NATS client.",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.Published }},
	{"nlbridge_publish_errors_total", "Messages the NATS client refused; kept in the state table and published after reconnecting.",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.PublishErrors }},
	{"nlbridge_filtered_total", "Events dropped by the filter (interface names, families, event types).",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.Filtered }},
	{"nlbridge_addrs_held_total", "Addresses held back until their link's NEWLINK arrives (published with the link, or forgotten when a dump does not show them).",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.HeldBack }},
	{"nlbridge_unchanged_total", "Kernel notifications that changed nothing published, dropped.",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.Unchanged }},
	{"nlbridge_reconciled_total", "Messages published to catch up after a NATS outage.",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.Reconciled }},
	{"nlbridge_nats_reconnects_total", "Reconnections to a NATS server.",
		func(_ *source.Stats, k *sink.Stats) uint64 { return k.Reconnects }},
}
