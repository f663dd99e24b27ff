// The Go 1.21 http.ServeMux, for memory: the current one records the file
// and line of every pattern registered (runtime.Caller), and the embedded
// NATS server links in net/http/pprof and expvar, whose initialisation
// registers six patterns on the default ServeMux whether or not anything
// serves it. Each record walks frames through the executable's tables,
// making about 0.4 MiB more of it resident in every nlbridge (README,
// Memory). No pattern nlbridge or the NATS server registers needs the
// current syntax: the metrics handler routes by hand.
//
//go:debug httpmuxgo121=1

// Command nlbridge streams a Linux host's network interface state to NATS:
// every rtnetlink link and address change, and full dumps at start and on
// request.
//
//	nlbridge [run] [--config FILE]
//	nlbridge check | dump | watch | request-dump | show | hosts [flags]
//	nlbridge version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/filter"
	_ "github.com/nlbridge/nlbridge/internal/startup"
	"github.com/nlbridge/nlbridge/metrics"
	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// version is set at build time with -ldflags "-X main.version=…"; it must
// be a semantic version (the NATS micro service requires one).
var version = "0.1.0-dev"

// shutdownTimeout bounds the drain at exit.
const shutdownTimeout = 5 * time.Second

// A command is one of nlbridge's subcommands.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order the usage shows them.
var commands = []command{
	{"run", "run the bridge (the default)", func(args []string, _, stderr io.Writer) int { return runCmd(args, stderr) }},
	{"check", "validate a configuration and print it with its defaults", checkCmd},
	{"dump", "print this host's links and addresses (no NATS)", dumpCmd},
	{"watch", "print the events that bridges publish, live", watchCmd},
	{"request-dump", "ask one host or all hosts for a dump and print the replies", requestDumpCmd},
	{"show", "print the fleet's interfaces, one line each, or keep them on screen (--watch)", showCmd},
	{"hosts", "print the fleet's hosts: presence, boot, version, links and addresses", hostsCmd},
	{"version", "print the version", func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintf(stdout, "nlbridge %s\n", version)
		if !sink.HasEmbedded {
			fmt.Fprintln(stdout, "built without the embedded NATS server (-tags noembedded)")
		}
		return 0
	}},
}

// usage is the text of "nlbridge help".
func usage() string {
	var b strings.Builder
	b.WriteString("nlbridge streams rtnetlink link and address events to NATS.\n\nUsage:\n  nlbridge [command] [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-13s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"nlbridge COMMAND --help\" for a command's flags.\n")
	return b.String()
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs a subcommand and returns the exit status: 0 on success, 2
// for bad usage or configuration, 1 when the command fails while running.
func realMain(args []string, stdout, stderr io.Writer) int {
	name := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	setProcs(name)
	if name == "help" {
		fmt.Fprint(stdout, usage())
		return 0
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "nlbridge: unknown command %q\n\n%s", name, usage())
	return 2
}

// setProcs sets GOMAXPROCS for command name. internal/startup set it to 1
// before the packages' initialisation, as nlbridge run wants it: the
// bridge's work is one socket's, one goroutine reads, decodes and publishes,
// and on one P the hand-offs to the NATS client's goroutines stay on one
// thread (go run ./bench measured less CPU per event, lower latency and
// dumps as fast as with every core). The other commands get the runtime's
// default back, and the GOMAXPROCS environment variable, when it holds a
// positive number, wins as it does for any Go program.
func setProcs(name string) {
	env := os.Getenv("GOMAXPROCS")
	if n, err := strconv.Atoi(env); err == nil && n > 0 {
		runtime.GOMAXPROCS(n)
	} else if name != "run" || env != "" {
		runtime.SetDefaultGOMAXPROCS()
	}
}

func runCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration `file` (default: built-in defaults, see config.example.yaml)")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the whole run to `file` (for measuring)")
	tracePath := fs.String("trace", "", "write a Go execution trace of the whole run to `file` (for measuring)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge run [--config FILE]\n\nWatches rtnetlink and publishes every link and address event to NATS.\n\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	cfg, err := loadBridgeConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "nlbridge: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	stopProfiles, err := startProfiles(*cpuProfile, *tracePath)
	if err != nil {
		fmt.Fprintf(stderr, "nlbridge: %v\n", err)
		return 2
	}
	defer func() {
		if err := stopProfiles(); err != nil {
			log.Error("profiles", "error", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("nlbridge stopped", "error", err)
		return 1
	}
	return 0
}

// newLogger returns the logger that cfg asks for, writing to w.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if cfg.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// run wires source → encoder → sink and runs them until ctx is cancelled.
// On the way out it stops reading the kernel first, then drains NATS, so
// that every event read from the kernel reaches the server. It returns an
// error naming how many events did not when some did not (the server was
// unreachable, or the drain timed out): the exit status must not say that
// they were delivered.
func run(ctx context.Context, cfg config.Config, log *slog.Logger) (rerr error) {
	enc, err := encode.New(string(cfg.Encoding))
	if err != nil {
		return err
	}
	flt, err := filter.New(filter.Config{Include: cfg.Filter.Include, Exclude: cfg.Filter.Exclude,
		Families: cfg.Filter.Families, Events: cfg.Filter.Events})
	if err != nil {
		return err
	}
	var metricsLn net.Listener
	if cfg.Metrics.Listen != "" {
		// Listen first: a busy port stops nlbridge before it starts.
		if metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer metricsLn.Close() // for the early returns; ServeListener closes it too
	}
	src, err := source.Open(source.Config{
		NetNS:           cfg.Netlink.NetNS,
		ReceiveBuffer:   cfg.Netlink.ReceiveBuffer,
		MinDumpInterval: cfg.Dump.MinInterval,
		Logger:          log.With("component", "source"),
	})
	if err != nil {
		return err
	}
	defer src.Close()

	var embedded sink.EmbeddedServer
	if len(cfg.NATS.Servers) == 0 {
		embedded, err = sink.StartEmbedded(sink.EmbeddedConfig{Listen: cfg.NATS.Embedded.Listen, Prefix: cfg.Subjects.Prefix,
			StoreDir: cfg.NATS.Embedded.StoreDir, Bucket: cfg.KV.Bucket, Logger: log})
		if err != nil {
			return err
		}
		defer func() {
			embedded.Shutdown()
			embedded.WaitForShutdown()
		}()
		hint := "subscribe with: nats sub '" + cfg.Subjects.Prefix + ".>'"
		if cfg.KV.Bucket != "" {
			hint += "; watch the state with: nats kv watch " + cfg.KV.Bucket
		}
		log.Info("no nats.servers configured: started an embedded NATS server with JetStream; "+hint,
			"url", embedded.ClientURL(), "store_dir", cfg.NATS.Embedded.StoreDir)
	}
	out, err := sink.Connect(sink.Config{
		Servers:  cfg.NATS.Servers,
		Embedded: embedded,
		Name:     cfg.NATS.Name,
		Host:     cfg.Host,
		Subjects: sink.NewSubjects(cfg.Subjects.Prefix, cfg.Subjects.Control, cfg.Host),
		Encoder:  enc,
		Filter:   flt,
		Auth:     cfg.NATS.Auth,
		TLS:      cfg.NATS.TLS,
		KV:       kvConfig(cfg, embedded != nil),
		Logger:   log.With("component", "sink"),
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := out.Close(ctx)
		if u, ok := errors.AsType[*sink.UndeliveredError](err); ok {
			log.Error("NATS drain incomplete: events not delivered", "undelivered", u.Undelivered(),
				"unpublished", u.Unpublished, "unconfirmed", u.Unconfirmed, "error", u.Err)
			rerr = errors.Join(rerr, err)
		} else if err != nil {
			// The server confirmed every event; only the drain's end failed.
			log.Warn("NATS drain incomplete; every event was delivered", "error", err)
		}
	}()
	svc, err := sink.NewService(out, src, version)
	if err != nil {
		return err
	}

	relDone := make(chan struct{})
	relCtx, stopRelease := context.WithCancel(ctx)
	go func() {
		defer close(relDone)
		releaseAfterBursts(relCtx, time.Second)
	}()
	defer func() {
		stopRelease()
		<-relDone
	}()

	log.Info("nlbridge running", "version", version, "host", cfg.Host, "boot", out.Boot(),
		"netns", cfg.Netlink.NetNS, "encoding", cfg.Encoding, "prefix", cfg.Subjects.Prefix)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	metricsDone := make(chan error, 1)
	if metricsLn != nil {
		mctx, stopMetrics := context.WithCancel(context.Background())
		defer func() {
			stopMetrics()
			if err := <-metricsDone; err != nil {
				log.Error("metrics listener", "error", err)
			}
		}()
		sources := metrics.Sources{
			Source:    src.Stats,
			Sink:      out.Stats,
			NetlinkUp: func() bool { return src.Stats().Running },
			NATSUp:    func() bool { return out.Conn().IsConnected() },
			LastEvent: func() time.Time { return src.Stats().LastEvent },
		}
		if cfg.KV.Bucket != "" {
			sources.KV = out.KVStats
		}
		go func() {
			metricsDone <- metrics.ServeListener(mctx, metricsLn, sources, log.With("component", "metrics"))
		}()
	}
	if cfg.Dump.OnStart {
		startupDump(ctx, src, log)
	}
	err = <-done
	// Stop serving requests before the drain; their dumps can no longer run.
	if serr := svc.Stop(); serr != nil {
		log.Warn("stopping the dump service", "error", serr)
	}
	if err == nil {
		s, o := src.Stats(), out.Stats()
		log.Info("shutting down: draining NATS", "kernel_messages", s.Messages, "events", s.Events,
			"decode_errors", s.DecodeErrors, "overflows", s.Overflows, "resyncs", s.Resyncs, "dumps", s.Dumps,
			"dump_retries", s.DumpRetries, "requests_merged", s.Merged, "requests_delayed", s.Delayed,
			"published", o.Published, "publish_errors", o.PublishErrors, "unchanged", o.Unchanged,
			"reconciled", o.Reconciled, "reconnects", o.Reconnects, "filtered", o.Filtered, "addrs_held", o.HeldBack)
	}
	return err
}

// kvConfig returns the state bucket's configuration. On the embedded
// server, a single server, the bucket has one replica, and is kept in
// memory unless nats.embedded.store_dir is set.
func kvConfig(cfg config.Config, embedded bool) sink.KVConfig {
	if cfg.KV.Bucket == "" {
		return sink.KVConfig{}
	}
	k := sink.KVConfig{Bucket: cfg.KV.Bucket, Replicas: cfg.KV.Replicas, Memory: cfg.KV.Storage == config.StorageMemory,
		PresenceTTL: cfg.KV.PresenceTTL, Version: version, AwaitStartup: cfg.Dump.OnStart}
	if embedded {
		k.Replicas = 1
		k.Memory = k.Memory || cfg.NATS.Embedded.StoreDir == ""
	}
	return k
}

// releaseAfterBursts gives the heap's free memory back to the system each
// time the process goes quiet (it allocated less than quietBytes in a tick)
// with much of it reclaimable: garbage, and free pages still resident, of
// at least a quarter of the live heap and reclaimBytes. A dump or a burst of
// events leaves garbage that the runtime keeps resident until its next
// collection, up to as much again as the live heap (the table of links and
// addresses, at GOGC 100), and then keeps the pages for a while: on a host
// with 10,000 veth pairs that was a third of nlbridge's memory. It costs
// one collection per burst, when nothing is happening, and nothing while
// events flow. It returns when ctx is done.
func releaseAfterBursts(ctx context.Context, tick time.Duration) {
	samples := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	read := func() heapReading {
		rtmetrics.Read(samples)
		return heapReading{allocs: samples[0].Value.Uint64(), live: samples[1].Value.Uint64(),
			objects: samples[2].Value.Uint64(), free: samples[3].Value.Uint64()}
	}
	prev := read()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := read()
		if shouldRelease(prev, now) {
			debug.FreeOSMemory()
			now = read()
		}
		prev = now
	}
}

// heapReading is what releaseAfterBursts reads of the runtime's metrics.
type heapReading struct {
	// allocs counts the bytes allocated so far; live is the live heap at
	// the last collection; objects the bytes of objects, dead ones not
	// yet swept included; free the free pages not given back.
	allocs, live, objects, free uint64
}

// The thresholds of releaseAfterBursts. An idle nlbridge allocates a few
// KiB a second (pings, the presence key, the embedded server's CPU
// sampling; 11 KB/s measured, a metrics scrape included). An MTU change
// costs about 700 bytes, so a tick with 90 events is not quiet; and a
// trickle below that makes 4 MiB to reclaim in minutes, not seconds.
const (
	quietBytes   = 64 << 10
	reclaimBytes = 4 << 20
)

// shouldRelease reports whether to give memory back, with prev read a
// tick before now.
func shouldRelease(prev, now heapReading) bool {
	reclaimable := now.free + now.objects - min(now.live, now.objects)
	return now.allocs-prev.allocs < quietBytes && reclaimable >= max(reclaimBytes, now.live/4)
}

// startupRetry is the wait before asking again for a startup dump that
// failed.
var startupRetry = time.Second

// startupDump publishes the startup dump. The source itself tries a failed
// startup dump again until it succeeds; should Dump return an error all the
// same, it is logged and the dump asked for again: without it, consumers
// would not know what exists until the next request. It returns when the
// dump is published or ctx is done.
func startupDump(ctx context.Context, d sink.Dumper, log *slog.Logger) {
	for failures := 1; ; failures++ {
		marker, err := d.Dump(ctx, event.ReasonStartup, "")
		switch {
		case err == nil:
			log.Info("startup dump published", "links", marker.Sync.Links, "addrs", marker.Sync.Addrs,
				"first_seq", marker.Sync.FirstSeq, "last_seq", marker.Seq)
			return
		case ctx.Err() != nil || errors.Is(err, source.ErrClosed):
			return
		}
		log.Error("startup dump failed: trying again", "failures", failures, "in", startupRetry, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(startupRetry):
		}
	}
}

// loadBridgeConfig is loadConfig for commands that publish (run, and check,
// which checks for it): it also needs a NATS server named when this build
// has no embedded one to start.
func loadBridgeConfig(path string) (config.Config, error) {
	cfg, err := loadConfig(path)
	if err == nil && len(cfg.NATS.Servers) == 0 && !sink.HasEmbedded {
		err = errors.New("nats.servers is empty, and this nlbridge was built without the embedded NATS server (-tags noembedded): set nats.servers (or NLBRIDGE_NATS_SERVERS)")
	}
	return cfg, err
}
