//go:build linux

// Command bench measures nlbridge end to end, as root, in a network
// namespace of its own, side by side in one run with other receivers of
// the same kernel events: the floor, a plain netlink socket read in this
// process; the relay (bench/relay), the least any bridge through the same
// NATS server can do; nlbridge with its embedded NATS server; nlbridge with
// the state bucket; and the shell pipeline `ip -o monitor link address |
// nats pub SUBJ --send-on newline`. It runs the real nlbridge binary as a
// child process against an in-process NATS server on a random 127.0.0.1
// port.
//
//	go run ./bench [-quick] [-out DIR] [-changes N] [-burst N] [-rounds R] [-paths LIST] [-profile] [-pairs P] [-repeats R] [-pipeline=false]
//
// It measures latency (MTU changes) and a burst of veth pairs created at
// once (time to the last event, events lost, CPU per kernel message) for
// each path alone, in interleaved rounds (paths.go); full dumps against
// `ip -j`, message sizes, startup time, and memory, at several numbers of
// veth pairs; it writes DIR/results.csv, DIR/latency.png and
// DIR/scaling.png, and prints a table, the targets it met, and the
// README's table of paths in markdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// pathNames are the paths that -paths may name, in round order.
var pathNames = []string{"relay", "nlbridge", "nlbridge-embedded", "nlbridge-kv", "pipeline", "ip-monitor", "relay-poller", "relay-natsgo"}

// options are the command-line flags.
type options struct {
	changes, burst, rounds, pairs, repeats int
	quick, pipeline, profile               bool
	out                                    string
	// only names the paths measured in rounds; empty: all.
	only []string
}

func main() {
	var o options
	flag.IntVar(&o.changes, "changes", 500, "MTU changes timed for latency, per path and round")
	flag.IntVar(&o.burst, "burst", 1000, "veth pairs created in one `ip -batch` run for the burst, per path and round")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds in which each path is measured alone")
	flag.IntVar(&o.pairs, "pairs", 5000, "largest number of veth pairs (with addresses) for the dump and scaling")
	flag.IntVar(&o.repeats, "repeats", 3, "dumps timed at each number of pairs (the median is reported)")
	flag.BoolVar(&o.quick, "quick", false, "small sizes for CI: 2 rounds of 100 changes and a burst of 100 pairs, 50/100/200 pairs, 2 repeats (flags given explicitly win)")
	flag.BoolVar(&o.pipeline, "pipeline", true, "also measure the `ip monitor | nats pub` pipeline (false: leave it out, a shorter run)")
	flag.StringVar(&o.out, "out", "bench/out", "directory for the nlbridge binary, its logs, results.csv and the charts")
	flag.BoolVar(&o.profile, "profile", false, "the nlbridge path writes a Go CPU profile and an execution trace of each round: OUT/nlbridge-roundN.pprof and .trace")
	paths := flag.String("paths", "", "comma-separated paths measured in rounds (relay, nlbridge, nlbridge-embedded, nlbridge-kv, pipeline, ip-monitor; relay-poller and relay-natsgo only when named); empty: all")
	flag.Parse()
	if *paths != "" {
		o.only = strings.Split(*paths, ",")
		for _, name := range o.only {
			if !slices.Contains(pathNames, name) {
				fmt.Fprintf(os.Stderr, "bench: -paths: no path %q (want some of %s)\n", name, strings.Join(pathNames, ","))
				os.Exit(2)
			}
		}
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, p := range map[string]*int{"changes": &o.changes, "burst": &o.burst, "rounds": &o.rounds, "pairs": &o.pairs, "repeats": &o.repeats} {
			if !set[name] {
				*p = map[string]int{"changes": 100, "burst": 100, "rounds": 2, "pairs": 200, "repeats": 2}[name]
			}
		}
	}
	if o.changes < 1 || o.burst < 1 || o.burst > 10000 || o.rounds < 1 || o.rounds > 100 || o.pairs < 1 || o.pairs > 10000 || o.repeats < 1 {
		fmt.Fprintln(os.Stderr, "bench: want -changes ≥ 1, -burst and -pairs from 1 to 10000, -rounds from 1 to 100, -repeats ≥ 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// levels returns the numbers of pairs of the scaling phase: the standard
// ones below max, then max.
func levels(o options) []int {
	std := []int{1000, 2000, 5000}
	if o.quick {
		std = []int{50, 100, 200}
	}
	var out []int
	for _, n := range std {
		if n < o.pairs {
			out = append(out, n)
		}
	}
	return append(out, o.pairs)
}

// logf reports progress on standard error; the results go to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// bench holds what every phase uses.
type bench struct {
	o   options
	ns  *netNS
	url string
	// bin is the nlbridge binary; leanBin the one built without the
	// embedded NATS server (-tags noembedded); relayBin is bench/relay.
	bin, leanBin, relayBin string
	// natsBin is the nats CLI of the pipeline, "" when it is left out.
	natsBin string
	// nc subscribes to nlbridge; pc to the pipeline.
	nc, pc *nats.Conn
	floor  *floor
	// bridge is the JSON nlbridge watching ns, host "bench", without the
	// state bucket; sub receives it.
	bridge *proc
	sub    *bridgeSub
	// kvBridge is the same with the state bucket, host "benchkv"; kvSub
	// receives it (see kv.go).
	kvBridge *proc
	kvSub    *bridgeSub
	// pipeRec receives what the pipeline publishes.
	pipeRec *recorder
	// floorSamples are the floor's latency samples of every round;
	// changes are the timed changes of every round, in order.
	floorSamples []time.Duration
	changes      []change
	rep          *report
}

// pipeSubject is where the pipeline publishes.
const pipeSubject = "bench.pipeline"

func run(ctx context.Context, o options, stdout io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates a network namespace and veth links")
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	o.out = out
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	// Undo everything, last made first, however run returns.
	var cleanups []func()
	defer func() {
		for _, f := range slices.Backward(cleanups) {
			f()
		}
	}()

	// A bound on the heap for the timed changes, when the collector is
	// off (paths.go); far above what a run holds.
	debug.SetMemoryLimit(4 << 30)
	b := &bench{o: o, rep: &report{}}
	if b.bin, err = build(ctx, o.out, "nlbridge", "./cmd/nlbridge"); err != nil {
		return err
	}
	if b.leanBin, err = build(ctx, o.out, "nlbridge-noembedded", "./cmd/nlbridge", "noembedded"); err != nil {
		return err
	}
	if b.relayBin, err = build(ctx, o.out, "relay", "./bench/relay"); err != nil {
		return err
	}
	if b.ns, err = newNetNS(); err != nil {
		return err
	}
	cleanups = append(cleanups, b.ns.Close)
	// A plain server: the embedded one lets only its own bridge publish
	// events, and these bridges are other processes. It runs JetStream,
	// for nlbridge-kv's state bucket.
	store, err := os.MkdirTemp("", "nlbench-js-")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(store) })
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: store})
	if err != nil {
		return err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return errors.New("the NATS server did not start")
	}
	cleanups = append(cleanups, func() { srv.Shutdown(); srv.WaitForShutdown() })
	b.url = srv.ClientURL()
	for _, c := range []**nats.Conn{&b.nc, &b.pc} {
		if *c, err = nats.Connect(b.url, nats.Name("bench")); err != nil {
			return fmt.Errorf("connect to %s: %w", b.url, err)
		}
		cleanups = append(cleanups, (*c).Close)
	}
	if b.floor, err = startFloor(b.ns); err != nil {
		return err
	}
	cleanups = append(cleanups, b.floor.Close)
	logf("namespace %s, NATS %s, nlbridge %s", b.ns.path, b.url, b.bin)

	// Idle nlbridge: startup time and memory in an empty namespace.
	if b.sub, err = subscribeBridge(b.nc, "nlbridge", "bench", false, "lat0"); err != nil {
		return err
	}
	if b.bridge, err = startBridge(b.ns, b.bin, o.out, "bench", "json", b.url, false); err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if b.bridge == nil {
			return // stopped for the rounds
		}
		if err := b.bridge.stop(10 * time.Second); err != nil {
			logf("stop nlbridge: %v", err)
		}
	})
	if err := b.startup(ctx, b.bridge, b.sub, "nlbridge"); err != nil {
		return b.explain(err)
	}
	idle0, err := execTime(b.bridge.pid())
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	idle1, err := execTime(b.bridge.pid())
	if err != nil {
		return err
	}
	b.rep.add("cpu_idle", "nlbridge", millis(idle1-idle0), "ms/s")
	if b.rep.idleMiB, err = b.idleMemory(b.bridge, "nlbridge"); err != nil {
		return err
	}
	if b.rep.leanIdleMiB, err = b.leanIdle(ctx); err != nil {
		return b.explain(fmt.Errorf("nlbridge-noembedded: %w", err))
	}
	if err := b.startKV(ctx, &cleanups); err != nil {
		return b.explain(fmt.Errorf("state bucket: %w", err))
	}

	// The pipeline, when the nats CLI is there.
	if natsBin := findNats(); !o.pipeline {
		b.rep.note("the pipeline was left out (-pipeline=false)")
	} else if natsBin == "" {
		msg := "nats CLI not found in PATH or $(go env GOPATH)/bin: the pipeline columns are skipped; install it with `go install github.com/nats-io/natscli/nats@v0.5.0`"
		logf("%s", msg)
		b.rep.note("%s", msg)
	} else {
		b.natsBin = natsBin
	}

	// Latency and CPU, each path alone: the long-running bridges listen
	// too, so they stop for the rounds and start again for the dumps.
	for _, p := range []**proc{&b.bridge, &b.kvBridge} {
		if err := (*p).stop(10 * time.Second); err != nil {
			return fmt.Errorf("%s did not stop cleanly: %w", (*p).name, err)
		}
		*p = nil // not to be blamed (explain) or stopped again
	}
	idx, err := b.ns.addVeth("lat0", "lat1")
	if err != nil {
		return err
	}
	ps, err := b.paths()
	if err != nil {
		return err
	}
	if err := b.rounds(ctx, ps, idx); err != nil {
		return err
	}
	bridge, err := b.restart(ctx, b.sub, "bench", false)
	if err != nil {
		return err
	}
	b.bridge = bridge
	kvBridge, err := b.restart(ctx, b.kvSub, "benchkv", true)
	if err != nil {
		return err
	}
	b.kvBridge = kvBridge
	if err := b.scaling(ctx); err != nil {
		return b.explain(fmt.Errorf("scaling: %w", err))
	}
	if err := b.cbor(ctx); err != nil {
		return b.explain(fmt.Errorf("cbor: %w", err))
	}
	if err := b.memory(ctx); err != nil {
		return b.explain(fmt.Errorf("memory: %w", err))
	}
	if n := b.floor.overflows.Load(); n > 0 {
		b.rep.note("the floor socket overflowed %d times (while pairs were added, outside the timed parts unless the burst says otherwise)", n)
	}
	if err := b.bridge.stop(10 * time.Second); err != nil {
		return fmt.Errorf("nlbridge did not stop cleanly: %w", err)
	}
	if err := b.kvBridge.stop(10 * time.Second); err != nil {
		return fmt.Errorf("nlbridge-kv did not stop cleanly: %w", err)
	}

	if err := b.rep.writeCSV(filepath.Join(o.out, "results.csv")); err != nil {
		return err
	}
	if err := writeChanges(filepath.Join(o.out, "latency.csv"), b.changes); err != nil {
		return err
	}
	if err := b.rep.latencyChart(filepath.Join(o.out, "latency.png")); err != nil {
		return fmt.Errorf("latency chart: %w", err)
	}
	if err := b.rep.scalingChart(filepath.Join(o.out, "scaling.png")); err != nil {
		return fmt.Errorf("scaling chart: %w", err)
	}
	b.rep.printTable(stdout)
	fmt.Fprintf(stdout, "\nwrote %s, latency.csv, latency.png, scaling.png\n", filepath.Join(o.out, "results.csv"))
	return nil
}

// explain adds to err that nlbridge has died, if it has, and where its log is.
func (b *bench) explain(err error) error {
	if b.bridge != nil {
		if dead := b.bridge.alive(); dead != nil {
			return fmt.Errorf("%w (%v; see %s)", err, dead, filepath.Join(b.o.out, "nlbridge-bench.log"))
		}
	}
	return err
}

// startup measures a fresh nlbridge's startup: from the fork to the first
// message (its startup dump) and to the startup SYNC.
func (b *bench) startup(ctx context.Context, p *proc, s *bridgeSub, receiver string) error {
	var first time.Time
	select {
	case first = <-s.first:
	case <-time.After(15 * time.Second):
		return fmt.Errorf("%s published nothing within 15s of starting", receiver)
	case <-ctx.Done():
		return ctx.Err()
	}
	sync, err := waitSync(ctx, s, "startup", 60*time.Second)
	if err != nil {
		return err
	}
	b.rep.add("startup_first_msg", receiver, millis(first.Sub(p.started)), "ms")
	b.rep.add("startup_sync", receiver, millis(sync.at.Sub(p.started)), "ms")
	logf("%s: first message %.1f ms after the fork, startup SYNC after %.1f ms (%d links, %d addrs)",
		receiver, millis(first.Sub(p.started)), millis(sync.at.Sub(p.started)), sync.Links, sync.Addrs)
	return nil
}

// waitSync waits for a SYNC with the given reason, dropping others.
func waitSync(ctx context.Context, s *bridgeSub, reason string, timeout time.Duration) (syncMsg, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-s.syncs:
			if m.Reason == reason {
				return m, nil
			}
		case <-timer.C:
			return syncMsg{}, fmt.Errorf("%s: no SYNC %q within %v", s.rec.name, reason, timeout)
		case <-ctx.Done():
			return syncMsg{}, ctx.Err()
		}
	}
}

// restart starts nlbridge again as host, with the state bucket or without,
// and waits for its startup SYNC.
func (b *bench) restart(ctx context.Context, s *bridgeSub, host string, kv bool) (*proc, error) {
	for len(s.syncs) > 0 {
		<-s.syncs // the rounds' bridges' SYNCs
	}
	p, err := startBridge(b.ns, b.bin, b.o.out, host, "json", b.url, kv)
	if err != nil {
		return nil, err
	}
	if _, err := waitSync(ctx, s, "startup", 60*time.Second); err != nil {
		p.stop(10 * time.Second)
		return nil, fmt.Errorf("nlbridge %s: %w", host, err)
	}
	return p, nil
}

// waitListening waits until process p has a NETLINK_ROUTE socket joined
// to some multicast group, as /proc/PID/net/netlink shows (the netlink
// sockets of p's namespace, by port id, which is the pid for the first).
func waitListening(ctx context.Context, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pid := strconv.Itoa(p.pid())
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%s/net/netlink", pid))
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) > 3 && f[1] == "0" && f[2] == pid && strings.Trim(f[3], "0") != "" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not listening to rtnetlink groups within %v", p.name, timeout)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scaling adds veth pairs with addresses up to each level and times full
// dumps by nlbridge against `ip -j link show` plus `ip -j addr show`, and
// reads nlbridge's peak RSS.
func (b *bench) scaling(ctx context.Context) error {
	have := 0
	for _, pairs := range levels(b.o) {
		start := time.Now()
		if err := b.ns.ipBatch(ctx, 10*time.Minute, nstest.VethPairsBatch("d", have, pairs)); err != nil {
			return err
		}
		have = pairs
		if err := b.sub.rec.quiet(ctx, time.Second, 5*time.Minute); err != nil {
			return err
		}
		links, addrs, err := b.ns.counts()
		if err != nil {
			return err
		}
		logf("scaling: %d pairs (%d links, %d addresses) added in %v", pairs, links, addrs, time.Since(start).Round(time.Millisecond))
		var bridge, withKV, ip []time.Duration
		var bytes, events int
		for range b.o.repeats {
			d, s, err := b.dump(ctx, b.nc, b.sub, "bench", links, addrs)
			if err != nil {
				return err
			}
			bridge = append(bridge, d)
			if b.kvSub != nil {
				d, _, err := b.dump(ctx, b.nc, b.kvSub, "benchkv", links, addrs)
				if err != nil {
					return err
				}
				withKV = append(withKV, d)
			}
			bytes += s.bytes
			events += s.msgs
			t, err := b.ipJSON(ctx)
			if err != nil {
				return err
			}
			ip = append(ip, t)
		}
		hwm, err := statusKiB(b.bridge.pid(), "VmHWM")
		if err != nil {
			return err
		}
		rss, err := statusKiB(b.bridge.pid(), "VmRSS")
		if err != nil {
			return err
		}
		name := func(what string) string { return fmt.Sprintf("%s_%dpairs", what, pairs) }
		p := scalePoint{pairs: pairs, bridgeMs: millis(median(bridge)), ipMs: millis(median(ip)), peakMiB: float64(hwm) / 1024}
		b.rep.scaling = append(b.rep.scaling, p)
		b.rep.add(name("dump"), "nlbridge-json", p.bridgeMs, "ms")
		b.rep.add(name("dump"), "ip -j link+addr", p.ipMs, "ms")
		b.rep.add(name("dump_ratio"), "nlbridge-json/ip", p.bridgeMs/p.ipMs, "x")
		if len(withKV) > 0 {
			kvMs := millis(median(withKV))
			b.rep.add(name("dump"), "nlbridge-kv", kvMs, "ms")
			b.rep.add(name("dump_ratio"), "nlbridge-kv/nlbridge", kvMs/p.bridgeMs, "x")
		}
		b.rep.add(name("bytes_per_event"), "nlbridge-json", float64(bytes)/float64(events), "bytes")
		b.rep.add(name("rss_peak"), "nlbridge", p.peakMiB, "MiB")
		b.rep.add(name("rss_now"), "nlbridge", float64(rss)/1024, "MiB")
		logf("scaling: %d pairs: dump %.0f ms, ip -j %.0f ms, VmHWM %.1f MiB", pairs, p.bridgeMs, p.ipMs, p.peakMiB)
	}
	return nil
}

// dump asks host's nlbridge for a full dump and returns the time from the
// request to s holding its SYNC, checking that every link and address came.
func (b *bench) dump(ctx context.Context, nc *nats.Conn, s *bridgeSub, host string, links, addrs int) (time.Duration, syncMsg, error) {
	if err := s.rec.quiet(ctx, 200*time.Millisecond, 30*time.Second); err != nil {
		return 0, syncMsg{}, err
	}
	for len(s.syncs) > 0 {
		<-s.syncs
	}
	s.reset.Store(true) // count from the dump's first message: all is quiet
	start := time.Now()
	if err := nc.PublishRequest("nlbridge."+host+".dump", nc.NewRespInbox(), nil); err != nil {
		return 0, syncMsg{}, err
	}
	m, err := waitSync(ctx, s, "request", 120*time.Second)
	if err != nil {
		return 0, m, err
	}
	if m.Links != links || m.Addrs != addrs || m.msgs != links+addrs {
		return 0, m, fmt.Errorf("%s: dump had %d messages, SYNC says %d links and %d addrs; the kernel has %d links and %d addrs",
			s.rec.name, m.msgs, m.Links, m.Addrs, links, addrs)
	}
	return m.at.Sub(start), m, nil
}

// ipJSON times `ip -j link show` and then `ip -j addr show` in the
// namespace, their output read to the end.
func (b *bench) ipJSON(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for _, what := range []string{"link", "addr"} {
		if _, err := b.ns.command(ctx, 2*time.Minute, nil, "ip", "-j", what, "show"); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// cbor runs a second nlbridge with encoding cbor at the largest number of
// pairs: its startup, its dump time and its bytes per event.
func (b *bench) cbor(ctx context.Context) error {
	links, addrs, err := b.ns.counts()
	if err != nil {
		return err
	}
	s, err := subscribeBridge(b.nc, "nlbridge-cbor", "benchc", true, "")
	if err != nil {
		return err
	}
	defer s.sub.Unsubscribe()
	p, err := startBridge(b.ns, b.bin, b.o.out, "benchc", "cbor", b.url, false)
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	if err := b.startup(ctx, p, s, "nlbridge-cbor"); err != nil {
		return err
	}
	var times []time.Duration
	var bytes, events int
	for range b.o.repeats {
		d, m, err := b.dump(ctx, b.nc, s, "benchc", links, addrs)
		if err != nil {
			return err
		}
		times = append(times, d)
		bytes += m.bytes
		events += m.msgs
	}
	name := func(what string) string { return fmt.Sprintf("%s_%dpairs", what, b.o.pairs) }
	b.rep.add(name("dump"), "nlbridge-cbor", millis(median(times)), "ms")
	b.rep.add(name("bytes_per_event"), "nlbridge-cbor", float64(bytes)/float64(events), "bytes")
	if err := p.stop(10 * time.Second); err != nil {
		return fmt.Errorf("nlbridge-cbor did not stop cleanly: %w", err)
	}
	return nil
}

// idleMemory records p's peak RSS (VmHWM) and its anonymous and
// file-backed parts, under receiver, and returns the peak in MiB.
func (b *bench) idleMemory(p *proc, receiver string) (float64, error) {
	mem := map[string]int{}
	for _, f := range []string{"VmHWM", "RssAnon", "RssFile"} {
		var err error
		if mem[f], err = statusKiB(p.pid(), f); err != nil {
			return 0, err
		}
	}
	peak := float64(mem["VmHWM"]) / 1024
	b.rep.add("rss_peak_idle", receiver, peak, "MiB")
	b.rep.add("rss_anon_idle", receiver, float64(mem["RssAnon"])/1024, "MiB")
	b.rep.add("rss_file_idle", receiver, float64(mem["RssFile"])/1024, "MiB")
	return peak, nil
}

// leanIdle starts the build without the embedded NATS server on the same
// empty namespace, waits for its startup dump and a second of idling, and
// records its memory as idleMemory does.
func (b *bench) leanIdle(ctx context.Context) (float64, error) {
	const host, receiver = "benchl", "nlbridge-noembedded"
	s, err := subscribeBridge(b.nc, receiver, host, false, "")
	if err != nil {
		return 0, err
	}
	defer s.sub.Unsubscribe()
	p, err := startBridge(b.ns, b.leanBin, b.o.out, host, "json", b.url, false)
	if err != nil {
		return 0, err
	}
	defer p.stop(10 * time.Second)
	if err := b.startup(ctx, p, s, receiver); err != nil {
		return 0, err
	}
	time.Sleep(time.Second)
	peak, err := b.idleMemory(p, receiver)
	if err != nil {
		return 0, err
	}
	if err := p.stop(10 * time.Second); err != nil {
		return 0, fmt.Errorf("did not stop cleanly: %w", err)
	}
	return peak, nil
}

// median returns the median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// build builds the command pkg of the module that holds the current
// directory into dir/name, the way a release of nlbridge is built
// (README, Install; Dockerfile): static, without cgo, so that no C library
// is mapped.
func build(ctx context.Context, dir, name, pkg string, tags ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("find the nlbridge module (run from its checkout): go env GOMOD: %v", err)
	}
	bin := filepath.Join(dir, name)
	args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build %s: %w: %s", pkg, err, out)
	}
	return bin, nil
}

// startBridge writes a configuration for host and starts nlbridge with it,
// watching ns and publishing to url, with the state bucket "netlink" or
// without; its log goes to dir/nlbridge-HOST.log.
func startBridge(ns *netNS, bin, dir, host, encoding, url string, kv bool, args ...string) (*proc, error) {
	bucket := ""
	if kv {
		bucket = "netlink"
	}
	cfg := fmt.Sprintf(`host: %s
netlink:
  netns: %s
nats:
  servers: [%q]
encoding: %s
dump:
  min_interval: 0s
log:
  level: info
kv:
  bucket: %q
  storage: memory
`, host, ns.path, url, encoding, bucket)
	return startConfigured(bin, dir, host, cfg, args...)
}

// startConfigured starts nlbridge as host with the configuration cfg,
// written to dir/nlbridge-HOST.yaml, and args added to `nlbridge run`'s;
// its log goes to dir/nlbridge-HOST.log.
func startConfigured(bin, dir, host, cfg string, args ...string) (*proc, error) {
	path := filepath.Join(dir, "nlbridge-"+host+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "nlbridge-"+host+".log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, append([]string{"run", "--config", path}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	return startProc(nil, "nlbridge "+host, cmd)
}

// findNats returns the path of the nats CLI, or "".
func findNats() string {
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// pipeline is `ip -o monitor link address | nats pub SUBJ --send-on
// newline`. Its ip runs inside the namespace; nats runs in the
// benchmark's own namespace, since the NATS server listens on its
// loopback, and the two are joined by a pipe as a shell would join them.
type pipeline struct {
	ip, nats *proc
}

// startPipeline starts the pipeline; nats's output goes to dir/pipeline.log.
func startPipeline(ns *netNS, natsBin, url, subject, dir string) (*pipeline, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer w.Close()
	logFile, err := os.Create(filepath.Join(dir, "pipeline.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	nc := exec.Command(natsBin, "-s", url, "pub", subject, "--send-on", "newline")
	nc.Stdin, nc.Stdout, nc.Stderr = r, logFile, logFile
	natsProc, err := startProc(nil, "nats pub", nc)
	if err != nil {
		return nil, err
	}
	ipc := exec.Command("ip", "-o", "monitor", "link", "address")
	ipc.Stdout, ipc.Stderr = w, logFile
	ipProc, err := startProc(ns, "ip -o monitor (pipeline)", ipc)
	if err != nil {
		natsProc.stop(5 * time.Second)
		return nil, err
	}
	return &pipeline{ip: ipProc, nats: natsProc}, nil
}

// stop stops both processes. It may be called more than once.
func (p *pipeline) stop() {
	p.ip.stop(5 * time.Second)
	p.nats.stop(5 * time.Second)
}
