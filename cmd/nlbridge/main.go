// Command nlbridge streams a Linux host's network interface state to NATS:
// every rtnetlink link and address change, and full dumps at start and on
// request.
//
//	nlbridge [run] [--config FILE]
//	nlbridge version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// version is set at build time with -ldflags "-X main.version=…"; it must
// be a semantic version (the NATS micro service requires one).
var version = "0.1.0-dev"

// shutdownTimeout bounds the drain at exit.
const shutdownTimeout = 5 * time.Second

const usage = `nlbridge streams rtnetlink link and address events to NATS.

Usage:
  nlbridge [run] [--config FILE]   run the bridge (the default)
  nlbridge version                 print the version

Run "nlbridge run --help" for the run flags.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs a subcommand and returns the exit status: 0 on success, 2
// for bad usage or configuration, 1 when the bridge fails while running.
func realMain(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCmd(args, stderr)
	case "version":
		fmt.Fprintf(stdout, "nlbridge %s\n", version)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "nlbridge: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func runCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration `file` (default: built-in defaults, see config.example.yaml)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge run [--config FILE]\n\nWatches rtnetlink and publishes every link and address event to NATS.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nlbridge run: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg := config.Default()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			fmt.Fprintf(stderr, "nlbridge: %v\n", err)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("nlbridge stopped", "error", err)
		return 1
	}
	return 0
}

// run wires source → encoder → sink and runs them until ctx is cancelled.
// On the way out it stops reading the kernel first, then drains NATS, so
// that every event read from the kernel reaches the server.
func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	enc, err := encode.New(string(cfg.Encoding))
	if err != nil {
		return err
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

	var embedded *server.Server
	if len(cfg.NATS.Servers) == 0 {
		embedded, err = sink.StartEmbedded(cfg.NATS.Embedded.Listen, log)
		if err != nil {
			return err
		}
		defer func() {
			embedded.Shutdown()
			embedded.WaitForShutdown()
		}()
		log.Info("no nats.servers configured: started an embedded NATS server; subscribe with: nats sub '"+cfg.Subjects.Prefix+".>'",
			"url", embedded.ClientURL())
	}
	out, err := sink.Connect(sink.Config{
		Servers:  cfg.NATS.Servers,
		Embedded: embedded,
		Name:     cfg.NATS.Name,
		Host:     cfg.Host,
		Subjects: sink.NewSubjects(cfg.Subjects.Prefix, cfg.Subjects.Control, cfg.Host),
		Encoder:  enc,
		Logger:   log.With("component", "sink"),
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := out.Close(ctx); err != nil {
			log.Error("NATS drain incomplete", "error", err)
		}
	}()
	svc, err := sink.NewService(out, src, version)
	if err != nil {
		return err
	}

	log.Info("nlbridge running", "version", version, "host", cfg.Host, "boot", out.Boot(),
		"netns", cfg.Netlink.NetNS, "encoding", cfg.Encoding, "prefix", cfg.Subjects.Prefix)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	if cfg.Dump.OnStart {
		marker, err := src.Dump(ctx, event.ReasonStartup, "")
		switch {
		case err == nil:
			log.Info("startup dump published", "links", marker.Sync.Links, "addrs", marker.Sync.Addrs,
				"first_seq", marker.Sync.FirstSeq, "last_seq", marker.Seq)
		case ctx.Err() == nil:
			log.Error("startup dump failed", "error", err)
		}
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
			"reconciled", o.Reconciled, "reconnects", o.Reconnects)
	}
	return err
}
