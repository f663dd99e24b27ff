package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/mirror"
	"github.com/nlbridge/nlbridge/sink"
)

// fleetOptions are the settings of "nlbridge show" and "nlbridge hosts",
// which read the fleet's state through a mirror.Mirror.
type fleetOptions struct {
	configPath string
	server     string // NATS URLs, separated by commas
	prefix     string // subjects.prefix of the bridges
	control    string // subjects.control of the bridges
	bucket     string // kv.bucket, "" for dump requests only
	hosts      string // glob of host names, "" for every host
	iface      string // glob of interface names (show), "" for all
	timeout    time.Duration
	dumpWait   time.Duration // without a bucket: how long replies are awaited
	json       bool
	watch      bool
	secure     []nats.Option // nats.auth and nats.tls of the configuration
}

// addFleetFlags defines the flags that show and hosts share.
func addFleetFlags(fs *flag.FlagSet, o *fleetOptions) {
	fs.StringVar(&o.configPath, "config", "", "YAML configuration `file` of the bridges, for nats.servers, nats.auth, nats.tls, subjects and kv.bucket (default: built-in defaults; NLBRIDGE_ environment variables override both)")
	fs.StringVar(&o.server, "server", "", "NATS server `URL`s, separated by commas (default: nats.servers of the configuration, else $NATS_URL, else nats://<nats.embedded.listen>, "+defaultServer+")")
	fs.StringVar(&o.prefix, "prefix", "", "the `prefix` of the bridges' event subjects (default: subjects.prefix, netlink)")
	fs.StringVar(&o.control, "control", "", "the `prefix` of the bridges' control subjects (default: subjects.control, nlbridge)")
	fs.StringVar(&o.bucket, "bucket", "", "the state `bucket` to read; \"\" reads the event stream and asks every host for a dump (default: kv.bucket, netlink)")
	fs.StringVar(&o.hosts, "host", "", "only the hosts whose names match this `glob` (path.Match syntax: web-*, db-0[1-3])")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the first complete view")
	fs.DurationVar(&o.dumpWait, "dump-wait", 2*time.Second, "without a bucket: how long to wait for the hosts' replies to the dump request (each replies once its dump is published)")
	fs.BoolVar(&o.json, "json", false, "print one JSON document instead of a table")
}

// resolve checks o after parsing and fills in what no flag set from the
// configuration, as the bridges read it: the file, the NLBRIDGE_
// environment variables, the defaults.
func (o *fleetOptions) resolve(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", o.timeout)
	}
	if o.dumpWait <= 0 {
		return fmt.Errorf("--dump-wait %v: want a positive duration", o.dumpWait)
	}
	for _, g := range []struct{ flag, glob string }{{"host", o.hosts}, {"interface", o.iface}} {
		if _, err := path.Match(g.glob, ""); err != nil {
			return fmt.Errorf("--%s %q: %w", g.flag, g.glob, err)
		}
	}
	cfg, err := loadConfig(o.configPath)
	if err != nil {
		return err
	}
	if !set["prefix"] {
		o.prefix = cfg.Subjects.Prefix
	}
	if !set["control"] {
		o.control = cfg.Subjects.Control
	}
	if !set["bucket"] {
		o.bucket = cfg.KV.Bucket
	}
	if !set["server"] {
		switch {
		case len(cfg.NATS.Servers) > 0:
			o.server = strings.Join(cfg.NATS.Servers, ",")
		case os.Getenv("NATS_URL") != "":
			o.server = os.Getenv("NATS_URL")
		default:
			o.server = "nats://" + cfg.NATS.Embedded.Listen
		}
	}
	if err := checkPrefix(o.prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	if err := checkPrefix(o.control); err != nil {
		return fmt.Errorf("--control: %w", err)
	}
	for _, c := range []byte(o.bucket) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("--bucket %q holds %q: want letters, digits, '_' and '-' (or \"\" for no bucket)", o.bucket, c)
		}
	}
	o.secure, err = sink.ClientOptions(cfg.NATS.Auth, cfg.NATS.TLS)
	return err
}

// fleet is a connection and the Mirror that reads the fleet through it.
type fleet struct {
	nc *nats.Conn
	m  *mirror.Mirror
	o  fleetOptions
	// deadline is when the first view must be complete: o.timeout after
	// openFleet began.
	deadline time.Time
}

// openFleet connects and starts a Mirror, in at most o.timeout: a server
// that accepts the connection but never answers cannot hold it longer.
// The first view (firstView) must be complete within the same time.
// onChange, when not nil, is called after changes (see
// mirror.WithChanges).
func openFleet(ctx context.Context, o fleetOptions, name string, stderr io.Writer, onChange func(mirror.Change)) (*fleet, error) {
	deadline := time.Now().Add(o.timeout)
	errw := &lockedWriter{w: stderr} // the NATS client reports from its own goroutine
	opts := append([]nats.Option{nats.Name(name), nats.Timeout(min(o.timeout, 2*time.Second))}, o.secure...)
	if o.watch {
		opts = append(opts, nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					fmt.Fprintf(errw, "%s: disconnected from NATS: %v; reconnecting\n", name, err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				fmt.Fprintf(errw, "%s: reconnected to %s\n", name, config.RedactURL(nc.ConnectedUrl()))
			}))
	}
	nc, err := nats.Connect(o.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", config.RedactURL(o.server), config.RedactError(err))
	}
	mopts := []mirror.Option{mirror.WithPrefix(o.prefix), mirror.WithControl(o.control),
		mirror.WithBucket(o.bucket), mirror.WithHosts(o.hosts), mirror.WithFleetWait(o.dumpWait)}
	if onChange != nil {
		mopts = append(mopts, mirror.WithChanges(onChange))
	}
	type result struct {
		m   *mirror.Mirror
		err error
	}
	started := make(chan result, 1)
	go func() {
		m, err := mirror.New(nc, mopts...)
		started <- result{m, err}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var r result
	select {
	case r = <-started:
	case <-timer.C:
		nc.Close() // unblocks New
		if r = <-started; r.err == nil {
			r.m.Close()
		}
		return nil, fmt.Errorf("the server at %s did not answer within %v (opening the state bucket %s, or subscribing)",
			config.RedactURL(o.server), o.timeout, o.bucket)
	case <-ctx.Done():
		nc.Close()
		if r = <-started; r.err == nil {
			r.m.Close()
		}
		return nil, ctx.Err()
	}
	if r.err != nil {
		nc.Close()
		return nil, r.err
	}
	return &fleet{nc: nc, m: r.m, o: o, deadline: deadline}, nil
}

// Close stops the Mirror and closes the connection.
func (f *fleet) Close() {
	f.m.Close()
	f.nc.Close()
}

// source says where the data comes from, for people: the state bucket, or
// dump requests when there is none.
func (f *fleet) source() string {
	url := config.RedactURL(f.nc.ConnectedUrl())
	switch {
	case f.m.FromBucket():
		return fmt.Sprintf("from the state bucket %s on %s", f.o.bucket, url)
	case f.o.bucket == "":
		return fmt.Sprintf("from dump requests on %s.dump (no bucket asked for) on %s", f.o.control, url)
	}
	return fmt.Sprintf("from dump requests on %s.dump (no state bucket %s) on %s", f.o.control, f.o.bucket, url)
}

// matching says which hosts the options ask for, for error messages.
func (f *fleet) matching() string {
	if f.o.hosts == "" {
		return ""
	}
	return " matching " + strconv.Quote(f.o.hosts)
}

// firstView waits for the Mirror's first complete view and returns it. It
// fails, naming what did not answer, when the view is not complete by the
// deadline, or holds no host.
func (f *fleet) firstView(ctx context.Context) (map[string]mirror.Host, error) {
	timer := time.NewTimer(time.Until(f.deadline))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-f.m.Ready():
	case <-timer.C:
		if f.m.FromBucket() {
			return nil, fmt.Errorf("the state bucket %s on %s did not deliver its current values within %v",
				f.o.bucket, config.RedactURL(f.nc.ConnectedUrl()), f.o.timeout)
		}
		var late []string
		snap := f.m.Snapshot()
		for name, h := range snap {
			if !h.Synced {
				late = append(late, quoted(name))
			}
		}
		switch {
		case len(late) == 0 && len(snap) == 0:
			return nil, fmt.Errorf("no bridge answered the dump request on %s.dump within %v%s", f.o.control, f.o.timeout, f.noBucket())
		case len(late) == 0:
			return nil, fmt.Errorf("no complete view within %v: replies to the dump request on %s.dump were awaited for --dump-wait %v",
				f.o.timeout, f.o.control, f.o.dumpWait)
		}
		slices.Sort(late)
		return nil, fmt.Errorf("no complete view within %v: no complete dump from %s (asked on %s.<host>.dump)",
			f.o.timeout, strings.Join(late, ", "), f.o.control)
	}
	snap := f.m.Snapshot()
	if len(snap) == 0 {
		if f.m.FromBucket() {
			return nil, fmt.Errorf("the state bucket %s holds no host%s", f.o.bucket, f.matching())
		}
		return nil, fmt.Errorf("no host%s answered the dump request on %s.dump%s", f.matching(), f.o.control, f.noBucket())
	}
	return snap, nil
}

// noBucket explains, in stream mode, why the bucket was not read.
func (f *fleet) noBucket() string {
	if f.o.bucket == "" {
		return ""
	}
	return fmt.Sprintf(", and there is no state bucket %s", f.o.bucket)
}

// showCmd runs "nlbridge show": the fleet's interfaces, one line each.
func showCmd(args []string, stdout, stderr io.Writer) int {
	var o fleetOptions
	return runFleet(newShowFlags(&o, stderr), &o, args, stdout, stderr, show)
}

// runFleet parses args into o with fs and runs the command until it is
// done or interrupted: exit status 2 for bad flags, 1 when run fails.
func runFleet(fs *flag.FlagSet, o *fleetOptions, args []string, stdout, stderr io.Writer,
	run func(context.Context, fleetOptions, io.Writer, io.Writer) error) int {
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := o.resolve(fs); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return 1
	}
	return 0
}

// addWatchFlag defines --watch, of show and hosts.
func addWatchFlag(fs *flag.FlagSet, o *fleetOptions) {
	fs.BoolVar(&o.watch, "watch", false, "keep the view on screen and redraw it as changes arrive, until interrupted")
}

// newShowFlags returns the flags of "nlbridge show", which set o.
func newShowFlags(o *fleetOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nlbridge show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addFleetFlags(fs, o)
	fs.StringVar(&o.iface, "interface", "", "only the interfaces whose names match this `glob`")
	addWatchFlag(fs, o)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge show [--host GLOB] [--interface GLOB] [--json] [--watch] [--server URL] [--config FILE] [--bucket B] [--timeout 10s]\n\n"+
			"Prints every interface of the fleet, one line each, sorted by host and index:\n\n"+
			"  HOST    INTERFACE  STATE    MTU    MAC                ADDRESSES\n"+
			"  web-01  eth0       up       1500   52:54:00:12:34:56  192.0.2.10/24 2001:db8::10\n\n"+
			"The state comes from the state bucket, or, when there is none, from the event\n"+
			"stream and a dump request to every host; stderr says which. A host whose\n"+
			"presence is gone shows as HOST(gone), with its last state. --json prints one\n"+
			"document, {\"source\",\"bucket\",\"interfaces\":[{\"host\",\"gone\",\"index\",\"name\",\n"+
			"\"state\",\"mtu\",\"mac\",\"addrs\"}]}. --watch redraws the table in place when\n"+
			"stdout is a terminal, at most 10 times a second; otherwise it prints a new\n"+
			"table (or JSON document, one per line) after each batch of changes, tables\n"+
			"separated by an empty line. Exits 1 when there is no complete view within\n"+
			"--timeout, or no host.\n\n")
		fs.PrintDefaults()
	}
	return fs
}

// redrawInterval is the least time between two redraws of --watch.
const redrawInterval = 100 * time.Millisecond

// show prints the fleet's interfaces once, or, with o.watch, again after
// each batch of changes until ctx is cancelled.
func show(ctx context.Context, o fleetOptions, stdout, stderr io.Writer) error {
	changed, onChange := changeSignal(o.watch)
	f, err := openFleet(ctx, o, "nlbridge show", stderr, onChange)
	if err != nil {
		return err
	}
	defer f.Close()
	snap, err := f.firstView(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "nlbridge show: %s\n", f.source())
	if !o.watch {
		return writeShow(stdout, f, showRows(snap, o.iface), false)
	}
	return watchFleet(ctx, o, "nlbridge show: "+f.source(), changed, stdout, func(w io.Writer) error {
		return writeShow(w, f, showRows(f.m.Snapshot(), o.iface), true)
	})
}

// changeSignal returns, for --watch, a channel that holds a value once
// the Mirror reports a change, and the Mirror's callback that fills it;
// without --watch, no callback.
func changeSignal(watch bool) (chan struct{}, func(mirror.Change)) {
	changed := make(chan struct{}, 1)
	if !watch {
		return changed, nil
	}
	return changed, func(mirror.Change) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
}

// watchFleet is --watch: it prints the view that render writes (one JSON
// document per line with --json), then again after each batch of changes
// signalled on changed, until ctx is cancelled. In a terminal it clears
// the screen and redraws under title; otherwise it prints each new view
// after the last, tables separated by an empty line. A view identical to
// the last is not printed, and redraws come redrawInterval apart at most.
func watchFleet(ctx context.Context, o fleetOptions, title string, changed <-chan struct{}, stdout io.Writer,
	render func(io.Writer) error) error {
	tty := isTerminal(stdout)
	var last []byte
	draw := func() error {
		var b bytes.Buffer
		if err := render(&b); err != nil {
			return err
		}
		if bytes.Equal(b.Bytes(), last) {
			return nil // a change that the view does not show
		}
		last = bytes.Clone(b.Bytes())
		switch {
		case tty:
			// Home and clear, then a title the screen would otherwise lose.
			fmt.Fprintf(stdout, "\x1b[H\x1b[2J%s, %s\n\n", title, time.Now().Format(time.TimeOnly))
		case !o.json:
			b.WriteByte('\n') // tables are separated by an empty line
		}
		_, err := stdout.Write(b.Bytes())
		return err
	}
	if err := draw(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		// Coalesce: what arrives during the wait is in the next view.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(redrawInterval):
		}
		select {
		case <-changed:
		default:
		}
		if err := draw(); err != nil {
			return err
		}
	}
}

// isTerminal reports whether w is a character device, as a terminal is.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ifaceRow is one interface of show, as --json prints it.
type ifaceRow struct {
	Host  string   `json:"host"`
	Gone  bool     `json:"gone"` // the host's presence is gone; this is its last state
	Index uint32   `json:"index"`
	Name  string   `json:"name"`
	State string   `json:"state"` // operational state: up, down, unknown, lowerlayerdown…
	MTU   uint32   `json:"mtu"`
	MAC   string   `json:"mac"`   // "" when the link has none
	Addrs []string `json:"addrs"` // ids in ip(8) notation, as events' "id": IPv4 first
}

// showDoc is the document that show --json prints.
type showDoc struct {
	Source     string     `json:"source"`           // "bucket" or "dump"
	Bucket     string     `json:"bucket,omitempty"` // with source "bucket"
	Interfaces []ifaceRow `json:"interfaces"`
}

// showRows returns the interfaces of snap whose names match the glob
// iface ("" for all), sorted by host and index, each with its addresses.
func showRows(snap map[string]mirror.Host, iface string) []ifaceRow {
	rows := []ifaceRow{}
	for _, h := range snap {
		addrs := map[uint32][]event.Addr{}
		for _, a := range h.Addrs {
			addrs[a.Index] = append(addrs[a.Index], a)
		}
		for _, l := range h.Links {
			if ok, _ := path.Match(iface, l.Name); iface != "" && !ok {
				continue
			}
			r := ifaceRow{Host: h.Name, Gone: h.Gone, Index: l.Index, Name: l.Name, State: l.State.String(), MTU: l.MTU, Addrs: []string{}}
			if len(l.MAC) > 0 {
				r.MAC = l.MAC.String()
			}
			as := addrs[l.Index]
			slices.SortFunc(as, compareAddrs)
			for i := range as {
				r.Addrs = append(r.Addrs, as[i].ID())
			}
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b ifaceRow) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), cmp.Compare(a.Index, b.Index))
	})
	return rows
}

// compareAddrs orders addresses as ip(8) lists them: IPv4 before IPv6,
// then by address, prefix length and peer.
func compareAddrs(a, b event.Addr) int {
	return cmp.Or(cmp.Compare(a.Family, b.Family), a.Address.Compare(b.Address),
		cmp.Compare(a.PrefixLen, b.PrefixLen), a.Peer.Compare(b.Peer))
}

// writeShow prints rows as a table, or as a JSON document: indented, or
// on one line for --watch.
func writeShow(w io.Writer, f *fleet, rows []ifaceRow, oneLine bool) error {
	if f.o.json {
		doc := showDoc{Source: "dump", Interfaces: rows}
		if f.m.FromBucket() {
			doc.Source, doc.Bucket = "bucket", f.o.bucket
		}
		return writeJSON(w, doc, oneLine)
	}
	return writeTable(w, showTable(rows))
}

// showTable returns the cells of show's table, header first.
func showTable(rows []ifaceRow) [][]string {
	t := [][]string{{"HOST", "INTERFACE", "STATE", "MTU", "MAC", "ADDRESSES"}}
	for _, r := range rows {
		host := quoted(r.Host)
		if r.Gone {
			host += "(gone)"
		}
		t = append(t, []string{host, quoted(r.Name), r.State, strconv.FormatUint(uint64(r.MTU), 10),
			cmp.Or(r.MAC, "-"), strings.Join(r.Addrs, " ")})
	}
	return t
}

// writeJSON writes v as one JSON document and a newline.
func writeJSON(w io.Writer, v any, oneLine bool) error {
	var b []byte
	var err error
	if oneLine {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeTable writes rows of cells in columns two spaces apart, the last
// column unpadded and no line with trailing blanks.
func writeTable(w io.Writer, rows [][]string) error {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b bytes.Buffer
	for _, r := range rows {
		var line []byte
		for i, c := range r {
			line = append(line, c...)
			if i < len(r)-1 {
				line = append(line, strings.Repeat(" ", widths[i]-len([]rune(c))+2)...)
			}
		}
		b.Write(bytes.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// hostsCmd runs "nlbridge hosts": every host that the bucket, or a
// fleet-wide dump request, knows.
func hostsCmd(args []string, stdout, stderr io.Writer) int {
	var o fleetOptions
	return runFleet(newHostsFlags(&o, stderr), &o, args, stdout, stderr, hosts)
}

// newHostsFlags returns the flags of "nlbridge hosts", which set o.
func newHostsFlags(o *fleetOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nlbridge hosts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addFleetFlags(fs, o)
	addWatchFlag(fs, o)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge hosts [--host GLOB] [--json] [--watch] [--server URL] [--config FILE] [--bucket B] [--timeout 10s]\n\n"+
			"Prints every host the state bucket knows, one line each, sorted by name:\n\n"+
			"  HOST    PRESENCE  SINCE                 BOOT              VERSION  LINKS  ADDRS\n"+
			"  web-01  up        2026-12-02T06:00:00Z  5d64e52ef04fe2a7  0.1.0    3      4\n"+
			"  web-02  gone      2026-12-02T06:10:31Z  9a1c0b7e22d4f310  -        3      2\n\n"+
			"PRESENCE is up (since nlbridge started) or gone (since its presence expired or\n"+
			"was deleted; the host's last state is kept, its version only while this\n"+
			"command saw the presence). Without a bucket, the hosts are those that\n"+
			"answered a dump request sent to every host, with PRESENCE \"answered\" and\n"+
			"no version. --json prints one document, {\"source\",\"bucket\",\n"+
			"\"hosts\":[{\"host\",\"presence\",\"since\",\"last_seen\",\"boot\",\"version\",\"links\",\n"+
			"\"addrs\"}]}. --watch prints the view again after each batch of changes (a\n"+
			"host appearing or gone, its links and addresses counted), as show --watch\n"+
			"does. Exits 1 when there is no complete view within --timeout, or no host.\n\n")
		fs.PrintDefaults()
	}
	return fs
}

// hosts prints the fleet's hosts once, or, with o.watch, again after each
// batch of changes until ctx is cancelled.
func hosts(ctx context.Context, o fleetOptions, stdout, stderr io.Writer) error {
	changed, onChange := changeSignal(o.watch)
	f, err := openFleet(ctx, o, "nlbridge hosts", stderr, onChange)
	if err != nil {
		return err
	}
	defer f.Close()
	snap, err := f.firstView(ctx)
	if err != nil {
		return err
	}
	src := f.source()
	if !f.m.FromBucket() {
		src += ": the hosts that answered"
	}
	fmt.Fprintf(stderr, "nlbridge hosts: %s\n", src)
	if !o.watch {
		return writeHosts(stdout, f, o, snap, false)
	}
	return watchFleet(ctx, o, "nlbridge hosts: "+src, changed, stdout, func(w io.Writer) error {
		return writeHosts(w, f, o, f.m.Snapshot(), true)
	})
}

// writeHosts writes the hosts of snap as a table, or with --json as one
// document, on one line when oneLine is true.
func writeHosts(w io.Writer, f *fleet, o fleetOptions, snap map[string]mirror.Host, oneLine bool) error {
	rows := hostRows(snap, f.m.FromBucket())
	if o.json {
		doc := hostsDoc{Source: "dump", Hosts: rows}
		if f.m.FromBucket() {
			doc.Source, doc.Bucket = "bucket", o.bucket
		}
		return writeJSON(w, doc, oneLine)
	}
	return writeTable(w, hostsTable(rows))
}

// Presences of hosts.
const (
	presenceUp       = "up"       // the host's presence key is there
	presenceGone     = "gone"     // its presence expired or was deleted
	presenceAnswered = "answered" // no bucket: it answered the dump request
)

// hostRow is one host of hosts, as --json prints it.
type hostRow struct {
	Host     string `json:"host"`
	Presence string `json:"presence"` // up, gone, or answered
	// Since is when nlbridge started (up) or when the presence went (gone).
	Since *time.Time `json:"since,omitempty"`
	// LastSeen is when the presence was last written.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Boot     string     `json:"boot"`
	Version  string     `json:"version,omitempty"`
	Links    int        `json:"links"`
	Addrs    int        `json:"addrs"`
}

// hostsDoc is the document that hosts --json prints.
type hostsDoc struct {
	Source string    `json:"source"`           // "bucket" or "dump"
	Bucket string    `json:"bucket,omitempty"` // with source "bucket"
	Hosts  []hostRow `json:"hosts"`
}

// hostRows returns the hosts of snap sorted by name.
func hostRows(snap map[string]mirror.Host, fromBucket bool) []hostRow {
	rows := []hostRow{}
	for _, h := range snap {
		r := hostRow{Host: h.Name, Boot: h.Boot, Version: h.Version, Links: len(h.Links), Addrs: len(h.Addrs)}
		switch {
		case !fromBucket:
			r.Presence = presenceAnswered
		case h.Gone:
			r.Presence, r.Since = presenceGone, timeOrNil(h.GoneSince)
		default:
			r.Presence, r.Since = presenceUp, timeOrNil(h.Started)
		}
		r.LastSeen = timeOrNil(h.LastSeen)
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b hostRow) int { return strings.Compare(a.Host, b.Host) })
	return rows
}

// timeOrNil returns t in UTC to the second, or nil when it is zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Truncate(time.Second)
	return &t
}

// hostsTable returns the cells of hosts' table, header first.
func hostsTable(rows []hostRow) [][]string {
	t := [][]string{{"HOST", "PRESENCE", "SINCE", "BOOT", "VERSION", "LINKS", "ADDRS"}}
	for _, r := range rows {
		since := "-"
		if r.Since != nil {
			since = r.Since.Format(time.RFC3339)
		}
		t = append(t, []string{quoted(r.Host), r.Presence, since, cmp.Or(quoted(r.Boot), "-"), cmp.Or(quoted(r.Version), "-"),
			strconv.Itoa(r.Links), strconv.Itoa(r.Addrs)})
	}
	return t
}
