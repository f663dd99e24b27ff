package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/sink"
)

// watchOptions are the settings of "nlbridge watch".
type watchOptions struct {
	server string // NATS URL, or several separated by commas
	host   string // "" for every host
	iface  string // "" for every interface, and SYNC markers
	prefix string // subjects.prefix of the bridges
	json   bool
	// ready, when set, is called once the subscription is in place, so
	// that tests know when to publish.
	ready func()
}

// watchCmd runs "nlbridge watch": it prints the events that bridges
// publish until SIGINT or SIGTERM.
func watchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o watchOptions
	fs.StringVar(&o.server, "server", "", "NATS server `URL`s, separated by commas (default: $NATS_URL, or "+defaultServer+")")
	fs.StringVar(&o.host, "host", "", "watch only this `host` (default: every host)")
	fs.StringVar(&o.iface, "interface", "", "watch only the links and addresses of the interface with this `name`")
	fs.StringVar(&o.prefix, "prefix", "netlink", "the `prefix` of the bridges' event subjects (their subjects.prefix)")
	fs.BoolVar(&o.json, "json", false, "print each event as one line of JSON instead of text")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge watch [--server URL] [--host H] [--interface NAME] [--prefix P] [--json]\n\n"+
			"Subscribes to the events that nlbridge publishes on NATS and prints each one,\n"+
			"whether JSON or CBOR, as it arrives: as a text block stamped with its time and\n"+
			"host, or as a line of JSON. Runs until interrupted.\n\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o.server = serverURL(o.server)
	if err := checkPrefix(o.prefix); err != nil {
		fmt.Fprintf(stderr, "nlbridge watch: --prefix: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := watch(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "nlbridge watch: %v\n", err)
		return 1
	}
	return 0
}

// defaultServer is the NATS server the client commands use when neither a
// flag nor $NATS_URL names one: the embedded server of a bridge on this
// machine.
const defaultServer = "nats://127.0.0.1:4222"

// serverURL returns flagValue, or else $NATS_URL, or else defaultServer.
func serverURL(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("NATS_URL"); env != "" {
		return env
	}
	return defaultServer
}

// checkPrefix checks a subject prefix given on the command line: one or
// more tokens of printable ASCII, without wildcards.
func checkPrefix(p string) error {
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token", p)
		}
		for _, c := range []byte(tok) {
			if c <= ' ' || c >= 0x7f || c == '*' || c == '>' {
				return fmt.Errorf("%q holds %q, which a subject prefix cannot", p, c)
			}
		}
	}
	return nil
}

// watchSubject returns the subject that watch subscribes to: every event of
// one host or of all, or only the link and address events of one interface.
func watchSubject(prefix, host, iface string) string {
	h := "*"
	if host != "" {
		h = sink.EscapeToken(host)
	}
	if iface == "" {
		return prefix + "." + h + ".>"
	}
	return prefix + "." + h + ".*." + sink.EscapeToken(iface) + ".*"
}

// watch prints the events published on the subject of o until ctx is
// cancelled, when it returns nil. Messages it cannot decode are reported on
// stderr and skipped. Only watch's own goroutine writes to stdout.
func watch(ctx context.Context, o watchOptions, stdout, stderr io.Writer) error {
	errw := &lockedWriter{w: stderr} // the NATS client reports from its own goroutine
	closed := make(chan struct{})
	nc, err := nats.Connect(o.server,
		nats.Name("nlbridge watch"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				fmt.Fprintf(errw, "nlbridge watch: disconnected from NATS: %v; reconnecting\n", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(errw, "nlbridge watch: reconnected to %s; events published meanwhile are missing\n", config.RedactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(errw, "nlbridge watch: %v\n", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", config.RedactURL(o.server), config.RedactError(err))
	}
	defer func() {
		nc.Close()
		// Wait for the client's callbacks, so that none writes to
		// stderr after watch has returned.
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
		}
	}()
	subject := watchSubject(o.prefix, o.host, o.iface)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = nc.FlushWithContext(fctx) // the server has the subscription
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	fmt.Fprintf(errw, "nlbridge watch: watching %s on %s\n", subject, config.RedactURL(nc.ConnectedUrl()))
	if o.ready != nil {
		o.ready()
	}

	var enc encode.Encoder = encode.Text{Time: true, Host: true}
	if o.json {
		enc = encode.JSON{}
	}
	var b []byte
	for {
		m, err := sub.NextMsgWithContext(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrSlowConsumer):
			fmt.Fprintf(errw, "nlbridge watch: %v: events were dropped\n", err)
			continue
		case err != nil:
			return fmt.Errorf("receive: %w", err)
		}
		ev, err := encode.Decode(m.Header.Get("Content-Type"), m.Data)
		if err == nil {
			b, err = enc.Append(b[:0], &ev)
		}
		if err != nil {
			fmt.Fprintf(errw, "nlbridge watch: skipping the message on %s: %v\n", m.Subject, err)
			continue
		}
		if o.json {
			b = append(b, '\n')
		}
		if _, err := stdout.Write(b); err != nil {
			return err
		}
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
