package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// dumpCmd runs "nlbridge dump": it reads the kernel's links and addresses
// once, as a dump that nlbridge would publish, and prints them. It needs
// no NATS.
func dumpCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration `file`, for host, netlink.netns and netlink.receive_buffer (default: built-in defaults; NLBRIDGE_ environment variables override both)")
	netns := fs.String("netns", "", "network namespace `path` to dump, such as /var/run/netns/blue, overriding netlink.netns")
	asJSON := fs.Bool("json", false, "print one JSON message per line, as nlbridge publishes them (seq 1..n), instead of text")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge dump [--config FILE] [--netns PATH] [--json]\n\n"+
			"Prints every link and then every address of this host (or of a network\n"+
			"namespace), read from the kernel as one dump, in the text layout of the\n"+
			"original netlink listener or as JSON messages. It does not use NATS.\n\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "nlbridge dump: %v\n", err)
		return 2
	}
	if *netns != "" {
		if !filepath.IsAbs(*netns) {
			fmt.Fprintf(stderr, "nlbridge dump: --netns %q: want an absolute path\n", *netns)
			return 2
		}
		cfg.Netlink.NetNS = *netns
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if err := dump(ctx, cfg, *asJSON, stdout, log); err != nil {
		fmt.Fprintf(stderr, "nlbridge dump: %v\n", err)
		return 1
	}
	return 0
}

// parseFlags parses args and returns -1 when the command should go on, or
// its exit status: 0 after --help, 2 for a bad flag or an argument.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

// loadConfig returns the configuration as the bridge would read it: the
// defaults, the file at path unless path is "", and the NLBRIDGE_
// environment variables.
func loadConfig(path string) (config.Config, error) {
	return config.Read(path, os.Environ())
}

// dump reads one dump of every link and address from the kernel and
// prints it: as text blocks, or as JSON messages stamped with the
// configured host, a new boot id and seqs from 1.
func dump(ctx context.Context, cfg config.Config, asJSON bool, stdout io.Writer, log *slog.Logger) error {
	src, err := source.Open(source.Config{
		NetNS:         cfg.Netlink.NetNS,
		ReceiveBuffer: cfg.Netlink.ReceiveBuffer,
		Logger:        log.With("component", "source"),
	})
	if err != nil {
		return err
	}
	defer src.Close()

	var c dumpCollector
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx, &c) }()
	marker, err := src.Dump(runCtx, event.ReasonRequest, "")
	cancel()
	if rerr := <-done; rerr != nil {
		return rerr
	}
	if err != nil {
		return err
	}
	events := c.result(marker.Sync)

	var enc encode.Encoder = encode.Text{}
	boot := sink.NewBoot()
	if asJSON {
		enc = encode.JSON{}
	}
	w := bufio.NewWriter(stdout)
	var b []byte
	for i := range events {
		ev := &events[i]
		ev.Host, ev.Boot, ev.Seq = cfg.Host, boot, uint64(i+1)
		if b, err = enc.Append(b[:0], ev); err != nil {
			return err
		}
		if asJSON {
			b = append(b, '\n')
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return w.Flush()
}

// dumpCollector keeps the links and addresses of the dump. It runs on the
// source's goroutine while dump waits, hence the lock.
type dumpCollector struct {
	mu    sync.Mutex
	in    bool // between the dump's Begin and its SYNC
	links []event.Event
	addrs []event.Event
}

// Handle keeps copies of dump messages; notifications that arrive
// meanwhile are not part of the dump and are left out.
func (c *dumpCollector) Handle(ev *event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case ev.Type == event.Begin:
		c.in = true
	case ev.Type == event.Sync:
		c.in = false
	case c.in && ev.Dump && ev.Type.IsLink():
		e := *ev
		e.Link.MAC = slices.Clone(ev.Link.MAC) // Handle must not keep ev's memory
		c.links = append(c.links, e)
	case c.in && ev.Dump && ev.Type.IsAddr():
		c.addrs = append(c.addrs, *ev)
	}
}

// result returns the links, then the addresses, of the dump that the SYNC
// s closed. A dump that the kernel interrupted is repeated within the same
// Begin and SYNC, so only the last s.Links links and s.Addrs addresses are
// the consistent dump.
func (c *dumpCollector) result(s event.SyncInfo) []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	links := c.links[len(c.links)-min(s.Links, len(c.links)):]
	addrs := c.addrs[len(c.addrs)-min(s.Addrs, len(c.addrs)):]
	return slices.Concat(links, addrs)
}
