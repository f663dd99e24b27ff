// Package metrics serves nlbridge's counters over HTTP: /metrics in the
// Prometheus text format and /healthz for liveness probes. It reads the
// counters when scraped, through functions, so that it costs nothing on
// the path from the kernel to NATS.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// Handler returns the HTTP handler that Serve serves: /metrics and
// /healthz. It fails when a function of src is missing.
func Handler(src Sources) (http.Handler, error) {
	if err := src.valid(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, c := range counters {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.value(&src)) }))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nlbridge_last_event_timestamp_seconds",
			Help: "When nlbridge last read an event from the kernel, in seconds since the Unix epoch; 0 before the first.",
		}, func() float64 {
			t := src.LastEvent()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
		up("netlink", src.NetlinkUp),
		up("nats", src.NATSUp),
	)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
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
	})
	return mux, nil
}

// up is nlbridge_up for one part: 1 when ok reports true.
func up(part string, ok func() bool) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "nlbridge_up",
		Help:        `Whether a part of nlbridge works: part="netlink" is 1 while the netlink socket is read, part="nats" while connected to NATS.`,
		ConstLabels: prometheus.Labels{"part": part},
	}, func() float64 {
		if ok() {
			return 1
		}
		return 0
	})
}

// counters are the counter metrics, each read from a field of
// source.Stats or sink.Stats at scrape time.
var counters = []struct {
	name, help string
	value      func(*Sources) uint64
}{
	{"nlbridge_kernel_messages_total", "Netlink messages read from the kernel.",
		func(s *Sources) uint64 { return s.Source().Messages }},
	{"nlbridge_events_total", "Events the source handed to the sink, SYNC markers included.",
		func(s *Sources) uint64 { return s.Source().Events }},
	{"nlbridge_decode_errors_total", "Netlink messages that could not be decoded and were skipped.",
		func(s *Sources) uint64 { return s.Source().DecodeErrors }},
	{"nlbridge_netlink_overflows_total", "Times the kernel reported lost netlink messages (ENOBUFS).",
		func(s *Sources) uint64 { return s.Source().Overflows }},
	{"nlbridge_resyncs_total", "Dumps made to recover from netlink overflows.",
		func(s *Sources) uint64 { return s.Source().Resyncs }},
	{"nlbridge_dumps_total", "Completed dumps of links and addresses.",
		func(s *Sources) uint64 { return s.Source().Dumps }},
	{"nlbridge_dump_retries_total", "Dumps restarted because the kernel interrupted them (NLM_F_DUMP_INTR).",
		func(s *Sources) uint64 { return s.Source().DumpRetries }},
	{"nlbridge_dump_requests_merged_total", "Dump requests answered by a dump that another request started.",
		func(s *Sources) uint64 { return s.Source().Merged }},
	{"nlbridge_dump_requests_delayed_total", "Dump requests held back by the minimum interval between dumps.",
		func(s *Sources) uint64 { return s.Source().Delayed }},
	{"nlbridge_published_total", "Messages handed to the NATS client.",
		func(s *Sources) uint64 { return s.Sink().Published }},
	{"nlbridge_publish_errors_total", "Messages the NATS client refused; kept in the state table and published after reconnecting.",
		func(s *Sources) uint64 { return s.Sink().PublishErrors }},
	{"nlbridge_filtered_total", "Events dropped by the filter (interface names, families, event types).",
		func(s *Sources) uint64 { return s.Sink().Filtered }},
	{"nlbridge_unchanged_total", "Kernel notifications that changed nothing published, dropped.",
		func(s *Sources) uint64 { return s.Sink().Unchanged }},
	{"nlbridge_reconciled_total", "Messages published to catch up after a NATS outage.",
		func(s *Sources) uint64 { return s.Sink().Reconciled }},
	{"nlbridge_nats_reconnects_total", "Reconnections to a NATS server.",
		func(s *Sources) uint64 { return s.Sink().Reconnects }},
}
