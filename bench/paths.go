//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats.go"
)

// Latency and CPU are measured path by path: each path's processes are
// started for its round and stopped after it, so that no other listener
// of the kernel's events is woken meanwhile (two cores shared by six
// processes woken per event make every figure noise). SIGSTOP would not
// do: a stopped process's netlink socket still receives, overflows, and
// costs its owner a resync when it resumes. The rounds are interleaved
// (relay, nlbridge, embedded, ..., relay, nlbridge, ...), so that a slow
// spell of the machine falls on every path alike, and each figure is the
// median over rounds.
//
// The floor, a netlink socket read by a goroutine of the benchmark, stays
// on in every round: it is the clock reference (what the kernel and the
// scheduler gave this round), and it counts the burst's kernel messages.
// It costs one wakeup of a process that every path wakes anyway (the NATS
// server and the subscribers live in it).

// path is one way from the kernel's events to a receiver.
type path struct {
	// name is the receiver's name in results.
	name string
	// rec gets what the path's subscriber receives; nil for a path
	// measured for its CPU only (ip monitor to /dev/null).
	rec *recorder
	// start starts the path's processes and returns them, for their CPU
	// time. The path is ready once it reports an MTU change (rec) or
	// listens (no rec).
	start func(ctx context.Context) ([]*proc, error)
	// stop stops what start started; it reports an unclean stop.
	stop func() error
	// settle, if set, waits for work the path does after its receiver
	// has everything (nlbridge-kv's bucket writes), before CPU is read.
	settle func(ctx context.Context) error
	// rounds holds the results of each round.
	rounds []roundResult
	// samples are the latency samples of every round.
	samples []time.Duration
}

// roundResult is what one round measured of a path.
type roundResult struct {
	p50, p90, p99, max time.Duration
	// floorP50 and floorP99 are the floor's in the same round.
	floorP50, floorP99 time.Duration
	// runqWait is the time the path's threads waited for a CPU while
	// runnable, per MTU change.
	runqWait time.Duration
	// cost and costTicks are CPU time per kernel message in the burst, by
	// the scheduler's exec runtime and by utime+stime.
	cost, costTicks time.Duration
	// last is the time from the burst's start to its last new link at
	// the receiver, floorLast at the floor; lost counts the links it
	// never saw.
	last, floorLast time.Duration
	lost            int
	kernelMsgs      int64
	// switches counts the times the path's threads left the CPU in the
	// burst, per kernel message.
	switches float64
}

// latencyWarmup is how many MTU changes of each round are not counted.
const latencyWarmup = 20

// relaySubject is where the relay publishes; the others are its variants'
// (bench/relay: -poller, -natsgo).
const (
	relaySubject       = "bench.relay"
	relayPollerSubject = "bench.relay-poller"
	relayNATSGoSubject = "bench.relay-natsgo"
)

// paths returns the paths measured in rounds, in round order: the relay
// first, the reference of the targets.
func (b *bench) paths() ([]*path, error) {
	relayRec, err := subscribeRelay(b.nc, "relay", relaySubject)
	if err != nil {
		return nil, err
	}
	var ps []*path
	ps = append(ps, &path{name: "relay", rec: relayRec})
	relay := ps[0]
	relay.start = func(ctx context.Context) ([]*proc, error) {
		p, err := startRelay(b.ns, b.relayBin, b.o.out, b.url, relaySubject)
		if err != nil {
			return nil, err
		}
		relay.stop = func() error { return p.stop(5 * time.Second) }
		return []*proc{p}, nil
	}

	// Two variants of the relay, measured only when -paths names them: the
	// relay waiting through the Go runtime's poller, as nlbridge does, and
	// the relay publishing through nats.go (bench/relay says more).
	for _, v := range []struct{ name, subject, flag string }{
		{"relay-poller", relayPollerSubject, "-poller"},
		{"relay-natsgo", relayNATSGoSubject, "-natsgo"},
	} {
		if !slices.Contains(b.o.only, v.name) {
			continue
		}
		rec, err := subscribeRelay(b.nc, v.name, v.subject)
		if err != nil {
			return nil, err
		}
		p := &path{name: v.name, rec: rec}
		p.start = func(ctx context.Context) ([]*proc, error) {
			pr, err := startRelay(b.ns, b.relayBin, b.o.out, b.url, v.subject, v.flag)
			if err != nil {
				return nil, err
			}
			p.stop = func() error { return pr.stop(5 * time.Second) }
			return []*proc{pr}, nil
		}
		ps = append(ps, p)
	}

	bridge := &path{name: "nlbridge", rec: b.sub.rec}
	bridge.start = func(ctx context.Context) ([]*proc, error) {
		var args []string
		if b.o.profile {
			base := filepath.Join(b.o.out, fmt.Sprintf("nlbridge-round%d", len(bridge.rounds)+1))
			args = []string{"--cpuprofile", base + ".pprof", "--trace", base + ".trace"}
		}
		p, err := startBridge(b.ns, b.bin, b.o.out, "bench", "json", b.url, false, args...)
		if err != nil {
			return nil, err
		}
		bridge.stop = func() error { return p.stop(10 * time.Second) }
		return []*proc{p}, nil
	}
	ps = append(ps, bridge)

	emb := &path{name: "nlbridge-embedded", rec: newRecorder("nlbridge-embedded")}
	emb.start = func(ctx context.Context) ([]*proc, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startEmbeddedBridge(b.ns, b.bin, b.o.out, "benche", listen)
		if err != nil {
			return nil, err
		}
		nc, err := connectRetry(ctx, "nats://"+listen, 15*time.Second)
		if err != nil {
			p.stop(10 * time.Second)
			return nil, fmt.Errorf("subscriber: %w (see %s)", err, filepath.Join(b.o.out, "nlbridge-benche.log"))
		}
		s := newBridgeSub(emb.rec, "benche", false, "lat0")
		if err := s.subscribe(nc); err != nil {
			nc.Close()
			p.stop(10 * time.Second)
			return nil, err
		}
		emb.stop = func() error {
			nc.Close()
			return p.stop(10 * time.Second)
		}
		return []*proc{p}, nil
	}
	ps = append(ps, emb)

	if b.kvSub != nil {
		kv := &path{name: "nlbridge-kv", rec: b.kvSub.rec, settle: b.kvSettle}
		kv.start = func(ctx context.Context) ([]*proc, error) {
			p, err := startBridge(b.ns, b.bin, b.o.out, "benchkv", "json", b.url, true)
			if err != nil {
				return nil, err
			}
			kv.stop = func() error { return p.stop(10 * time.Second) }
			return []*proc{p}, nil
		}
		ps = append(ps, kv)
	}

	if b.natsBin != "" {
		if b.pipeRec, err = subscribePipeline(b.pc, pipeSubject); err != nil {
			return nil, err
		}
		pipe := &path{name: "pipeline", rec: b.pipeRec}
		pipe.start = func(ctx context.Context) ([]*proc, error) {
			p, err := startPipeline(b.ns, b.natsBin, b.url, pipeSubject, b.o.out)
			if err != nil {
				return nil, err
			}
			pipe.stop = func() error { p.stop(); return nil }
			return []*proc{p.ip, p.nats}, nil
		}
		ps = append(ps, pipe)
	}

	mon := &path{name: "ip-monitor>/dev/null"}
	mon.start = func(ctx context.Context) ([]*proc, error) {
		p, err := startProc(b.ns, "ip -o monitor link address >/dev/null", exec.Command("ip", "-o", "monitor", "link", "address"))
		if err != nil {
			return nil, err
		}
		mon.stop = func() error { return p.stop(5 * time.Second) }
		if err := waitListening(ctx, p, 5*time.Second); err != nil {
			return nil, errors.Join(err, mon.stop())
		}
		return []*proc{p}, nil
	}
	if len(b.o.only) == 0 && b.o.quick {
		b.rep.note("-quick leaves out ip -o monitor >/dev/null (CPU only, no target)")
		return ps, nil
	}
	ps = append(ps, mon)
	if len(b.o.only) == 0 {
		return ps, nil
	}
	var chosen []*path
	for _, name := range b.o.only {
		i := slices.IndexFunc(ps, func(p *path) bool { return strings.TrimSuffix(p.name, ">/dev/null") == name })
		if i < 0 {
			return nil, fmt.Errorf("-paths: no path %q (pipeline needs the nats CLI)", name)
		}
		chosen = append(chosen, ps[i])
	}
	return chosen, nil
}

// rounds measures every path alone, in o.rounds interleaved rounds, and
// records the medians over rounds.
func (b *bench) rounds(ctx context.Context, ps []*path, idx uint32) error {
	step := 0
	for r := range b.o.rounds {
		for _, p := range ps {
			logf("round %d/%d: %s", r+1, b.o.rounds, p.name)
			res, err := b.round(ctx, p, idx, &step)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, p.name, err)
			}
			p.rounds = append(p.rounds, res)
		}
	}
	b.record(ps)
	return nil
}

// round starts p, times MTU changes (when p has a receiver), runs the
// burst, and stops p.
func (b *bench) round(ctx context.Context, p *path, idx uint32, step *int) (res roundResult, err error) {
	// Whatever came before (the last round's deletions) is over.
	if err := b.floor.rec.quiet(ctx, 150*time.Millisecond, 60*time.Second); err != nil {
		return res, err
	}
	procs, err := p.start(ctx)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.stop()
		}
	}()
	mtu := func() uint32 { *step++; return 1300 + uint32(*step%400) }
	if p.rec != nil {
		if err := b.ready(ctx, p, idx, mtu); err != nil {
			return res, err
		}
		wait0, err := cpuTimes(runqWait, procs...)
		if err != nil {
			return res, err
		}
		if err := b.latencyRound(ctx, p, idx, mtu, &res); err != nil {
			return res, fmt.Errorf("latency: %w", err)
		}
		wait1, err := cpuTimes(runqWait, procs...)
		if err != nil {
			return res, err
		}
		res.runqWait = (wait1 - wait0) / time.Duration(b.o.changes+latencyWarmup)
	}
	if err := b.burstRound(ctx, p, procs, &res); err != nil {
		return res, fmt.Errorf("burst: %w", err)
	}
	stopped = true
	if err := p.stop(); err != nil {
		return res, fmt.Errorf("stop: %w", err)
	}
	return res, nil
}

// ready changes lat0's MTU until p reports it (at most 100 times in about
// 20 s), then waits until p has been quiet for 100 ms.
func (b *bench) ready(ctx context.Context, p *path, idx uint32, mtu func() uint32) error {
	cursor := p.rec.mark()
	for range 100 {
		m := mtu()
		if err := b.ns.setMTU(idx, m); err != nil {
			return err
		}
		if _, err := p.rec.waitFor(ctx, &cursor, 200*time.Millisecond, isMTU(m)); err == nil {
			return p.rec.quiet(ctx, 100*time.Millisecond, 30*time.Second)
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s reported none of 100 MTU changes (see its log in %s)", p.name, b.o.out)
}

// isMTU matches lat0's NEWLINK with the given MTU.
func isMTU(mtu uint32) func(sighting) bool {
	return func(s sighting) bool { return s.name == "lat0" && !s.del && s.mtu == mtu }
}

// latencyRound times MTU changes of lat0 from just before the rtnetlink
// request to the receipt by the floor and by p.
func (b *bench) latencyRound(ctx context.Context, p *path, idx uint32, mtu func() uint32, res *roundResult) error {
	// The benchmark's own collector would delay the receipt of whatever
	// arrives while it runs (it ran 2 to 6 times per 2,000 changes, for
	// every path: this process runs the server and the subscribers): it
	// is kept out of the timed changes (the memory limit set in run
	// bounds the heap).
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var gc0 runtime.MemStats
	runtime.ReadMemStats(&gc0)
	defer func() {
		var gc1 runtime.MemStats
		runtime.ReadMemStats(&gc1)
		if n := gc1.NumGC - gc0.NumGC; n > 0 {
			b.rep.note("the benchmark collected garbage %d times while timing %s (round %d): its memory limit was reached", n, p.name, len(p.rounds)+1)
		}
	}()
	const warmup = latencyWarmup
	recs := []*recorder{b.floor.rec, p.rec}
	cursors := []int{b.floor.rec.mark(), p.rec.mark()}
	samples := make([][]time.Duration, len(recs))
	var starts []time.Time
	for i := range warmup + b.o.changes {
		m := mtu()
		start := time.Now()
		if i >= warmup {
			starts = append(starts, start)
		}
		if err := b.ns.setMTU(idx, m); err != nil {
			return err
		}
		for j, r := range recs {
			s, err := r.waitFor(ctx, &cursors[j], 5*time.Second, isMTU(m))
			if err != nil {
				return fmt.Errorf("change %d (mtu %d): %w", i, m, err)
			}
			if i >= warmup {
				samples[j] = append(samples[j], s.at.Sub(start))
			}
		}
	}
	for i := range samples[0] {
		b.changes = append(b.changes, change{path: p.name, round: len(p.rounds) + 1, start: starts[i], floor: samples[0][i], at: samples[1][i]})
	}
	for _, s := range samples {
		slices.Sort(s)
	}
	f, s := samples[0], samples[1]
	res.floorP50, res.floorP99 = percentile(f, 50), percentile(f, 99)
	res.p50, res.p90, res.p99, res.max = percentile(s, 50), percentile(s, 90), percentile(s, 99), percentile(s, 100)
	p.samples = append(p.samples, s...)
	b.floorSamples = append(b.floorSamples, f...)
	logf("  latency p50/p99: %s %.0f/%.0f µs, floor %.0f/%.0f µs", p.name, micros(res.p50), micros(res.p99), micros(res.floorP50), micros(res.floorP99))
	return nil
}

// burstRound creates o.burst veth pairs in one `ip -batch` run and
// measures the time until p's receiver has seen every new link, the
// links it lost, and the CPU time p's processes used per kernel message;
// then it deletes the pairs.
func (b *bench) burstRound(ctx context.Context, p *path, procs []*proc, res *roundResult) error {
	recs := []*recorder{b.floor.rec}
	if p.rec != nil {
		recs = append(recs, p.rec)
	}
	for _, r := range recs {
		if err := r.quiet(ctx, 100*time.Millisecond, 30*time.Second); err != nil {
			return err
		}
	}
	ticks0, err := cpuTimes(cpuTime, procs...)
	if err != nil {
		return err
	}
	exec0, err := cpuTimes(execTime, procs...)
	if err != nil {
		return err
	}
	sw0, err := cpuTimes(switches, procs...)
	if err != nil {
		return err
	}
	kernel0, over0 := b.floor.rec.msgs.Load(), b.floor.overflows.Load()
	cursors := make([]int, len(recs))
	for i, r := range recs {
		cursors[i] = r.mark()
	}
	const prefix = "bx"
	want := 2 * b.o.burst
	start := time.Now()
	if err := b.ns.ipBatch(ctx, 5*time.Minute, burstBatch(prefix, b.o.burst)); err != nil {
		return err
	}
	deadline := start.Add(60 * time.Second)
	lasts := make([]time.Duration, len(recs))
	for j, r := range recs {
		seen := map[string]bool{}
		var last time.Time
		_, err := r.waitFor(ctx, &cursors[j], time.Until(deadline), func(s sighting) bool {
			if !s.del && strings.HasPrefix(s.name, prefix) && !seen[s.name] {
				seen[s.name] = true
				last = s.at
			}
			return len(seen) == want
		})
		if err != nil && ctx.Err() != nil {
			return err
		}
		if err != nil {
			logf("burst: %s saw %d of %d new links within 60 s", r.name, len(seen), want)
		}
		if !last.IsZero() {
			lasts[j] = last.Sub(start)
		}
		if j == 1 {
			res.lost = want - len(seen)
		}
	}
	res.floorLast = lasts[0]
	if len(lasts) > 1 {
		res.last = lasts[1]
	}
	// Let the path finish what the burst caused before reading its CPU.
	for _, r := range recs {
		if err := r.quiet(ctx, b.settleQuiet(), 60*time.Second); err != nil {
			return err
		}
	}
	if p.settle != nil {
		if err := p.settle(ctx); err != nil {
			return err
		}
	}
	kernel := b.floor.rec.msgs.Load() - kernel0
	if n := b.floor.overflows.Load() - over0; n > 0 {
		b.rep.note("the floor socket overflowed %d times during a burst (%s): its kernel message count is low", n, p.name)
	}
	ticks1, err := cpuTimes(cpuTime, procs...)
	if err != nil {
		return err
	}
	exec1, err := cpuTimes(execTime, procs...)
	if err != nil {
		return err
	}
	sw1, err := cpuTimes(switches, procs...)
	if err != nil {
		return err
	}
	res.kernelMsgs = kernel
	if kernel > 0 {
		res.cost = (exec1 - exec0) / time.Duration(kernel)
		res.costTicks = (ticks1 - ticks0) / time.Duration(kernel)
		res.switches = float64(sw1-sw0) / float64(kernel)
	}
	if p.rec != nil {
		logf("  burst: %s %.1f µs and %.2f context switches per kernel message (%d messages), last link after %.0f ms (floor %.0f ms), %d lost",
			p.name, micros(res.cost), res.switches, kernel, millis(res.last), millis(res.floorLast), res.lost)
	} else {
		logf("  burst: %s %.1f µs per kernel message (%d messages)", p.name, micros(res.cost), kernel)
	}
	// Remove the burst's links: the next round starts from lat0 alone.
	return b.ns.ipBatch(ctx, 5*time.Minute, deleteBatch(prefix, b.o.burst))
}

// settleQuiet is how long receivers must be quiet after a burst before
// CPU is read: what comes later would be a timer, not the burst.
func (b *bench) settleQuiet() time.Duration {
	if b.o.quick {
		return 150 * time.Millisecond
	}
	return time.Second
}

// record adds each path's medians over rounds to the report, and each
// round's figures.
func (b *bench) record(ps []*path) {
	var floorP50, floorP99 []time.Duration
	for _, p := range ps {
		for i, r := range p.rounds {
			if p.rec != nil {
				floorP50, floorP99 = append(floorP50, r.floorP50), append(floorP99, r.floorP99)
				b.rep.add(fmt.Sprintf("latency_p50_round%d", i+1), p.name, micros(r.p50), "µs")
				b.rep.add(fmt.Sprintf("latency_p99_round%d", i+1), p.name, micros(r.p99), "µs")
				b.rep.add(fmt.Sprintf("latency_runq_wait_round%d", i+1), p.name, micros(r.runqWait), "µs/change")
			}
			b.rep.add(fmt.Sprintf("burst_cost_round%d", i+1), p.name, micros(r.cost), "µs/msg")
		}
		med := func(f func(roundResult) time.Duration) time.Duration {
			var ds []time.Duration
			for _, r := range p.rounds {
				ds = append(ds, f(r))
			}
			return medianRounds(ds)
		}
		if p.rec != nil {
			b.rep.add("latency_p50", p.name, micros(med(func(r roundResult) time.Duration { return r.p50 })), "µs")
			b.rep.add("latency_p90", p.name, micros(med(func(r roundResult) time.Duration { return r.p90 })), "µs")
			b.rep.add("latency_p99", p.name, micros(med(func(r roundResult) time.Duration { return r.p99 })), "µs")
			b.rep.add("latency_max", p.name, micros(med(func(r roundResult) time.Duration { return r.max })), "µs")
			b.rep.add("latency_runq_wait", p.name, micros(med(func(r roundResult) time.Duration { return r.runqWait })), "µs/change")
			b.rep.addSamples(p.name, p.samples)
			lost := 0
			for _, r := range p.rounds {
				lost += r.lost
			}
			b.rep.add("burst_last", p.name, millis(med(func(r roundResult) time.Duration { return r.last })), "ms")
			b.rep.add("burst_last_floor", p.name, millis(med(func(r roundResult) time.Duration { return r.floorLast })), "ms")
			b.rep.add("burst_lost", p.name, float64(lost), "events")
		}
		b.rep.add("burst_cost", p.name, micros(med(func(r roundResult) time.Duration { return r.cost })), "µs/msg")
		b.rep.add("burst_cost_ticks", p.name, micros(med(func(r roundResult) time.Duration { return r.costTicks })), "µs/msg")
		var sw []time.Duration // in thousandths, for medianRounds
		for _, r := range p.rounds {
			sw = append(sw, time.Duration(r.switches*1000))
		}
		b.rep.add("burst_switches", p.name, float64(medianRounds(sw))/1000, "per msg")
		b.rep.add("burst_kernel_msgs", p.name, float64(med(func(r roundResult) time.Duration { return time.Duration(r.kernelMsgs) })), "msgs")
		b.rep.paths = append(b.rep.paths, p.name)
	}
	b.rep.add("latency_p50", "floor", micros(medianRounds(floorP50)), "µs")
	b.rep.add("latency_p99", "floor", micros(medianRounds(floorP99)), "µs")
	b.rep.addSamples("floor", b.floorSamples)
	b.rep.add("burst_expected", "", float64(2*b.o.burst), "events")
	b.rep.add("rounds", "", float64(b.o.rounds), "")
	b.rep.note("latency and CPU: each path alone (the others' processes stopped; the floor always on), in %d interleaved rounds of %d MTU changes and a burst of %d veth pairs; each figure is the median over rounds (of two, their mean)", b.o.rounds, b.o.changes, b.o.burst)
	b.rep.note("burst_cost_ticks is utime+stime from /proc/PID/stat (10 ms ticks); burst_cost is the sum of se.sum_exec_runtime of /proc/PID/task/*/sched (ns); both are CPU time over the burst's kernel messages, counted by the floor socket")
}

// change is one timed MTU change: its receipt by the floor and by a path.
type change struct {
	path  string
	round int
	// start is when the request was sent; floor and at are the times
	// from it to the receipt by the floor and by the path.
	start     time.Time
	floor, at time.Duration
}

// writeChanges writes every timed change to path as CSV: path, round,
// the request's wall time (Unix ns), floor µs, path µs; to see whether a
// path's slow changes were slow for the floor too (the kernel, the
// machine) or for the path alone, and to find them in a trace.
func writeChanges(path string, cs []change) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "path,round,start_unix_ns,floor_us,path_us")
	for _, c := range cs {
		fmt.Fprintf(w, "%s,%d,%d,%.1f,%.1f\n", c.path, c.round, c.start.UnixNano(), micros(c.floor), micros(c.at))
	}
	return errors.Join(w.Flush(), f.Close())
}

// medianRounds returns the median of ds; of an even number, the mean of
// the middle two.
func medianRounds(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// subscribeRelay subscribes to a relay's subject, recording as name: each
// message is one netlink message as the kernel sent it.
func subscribeRelay(nc *nats.Conn, name, subject string) (*recorder, error) {
	rec := newRecorder(name)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		at := time.Now()
		var msg netlink.Message
		if msg.UnmarshalBinary(m.Data) != nil {
			rec.message(at, nil)
			return
		}
		rec.message(at, linkSighting(at, msg))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	return rec, nc.Flush()
}

// startRelay starts the relay (bench/relay) on ns's events, publishing on
// subject to the server at url; its output goes to dir/relay.log.
func startRelay(ns *netNS, bin, dir, url, subject string, args ...string) (*proc, error) {
	logFile, err := os.Create(filepath.Join(dir, "relay"+strings.Join(args, "")+".log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, append([]string{"-netns", ns.path, "-server", strings.TrimPrefix(url, "nats://"), "-subject", subject}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// See bench/relay: no preemption signals to its threads in raw calls.
	cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
	return startProc(nil, "relay", cmd)
}

// startEmbeddedBridge starts nlbridge as host with its embedded NATS
// server listening on listen, without the state bucket; its log goes to
// dir/nlbridge-HOST.log.
func startEmbeddedBridge(ns *netNS, bin, dir, host, listen string) (*proc, error) {
	cfg := fmt.Sprintf(`host: %s
netlink:
  netns: %s
nats:
  embedded:
    listen: %q
encoding: json
dump:
  min_interval: 0s
log:
  level: info
kv:
  bucket: ""
`, host, ns.path, listen)
	return startConfigured(bin, dir, host, cfg)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// connectRetry connects to url, trying again until timeout: the server
// may not listen yet.
func connectRetry(ctx context.Context, url string, timeout time.Duration) (*nats.Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		nc, err := nats.Connect(url, nats.Name("bench"))
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to %s: %w", url, err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
