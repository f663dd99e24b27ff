//go:build linux

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// Memory per object: a fresh nlbridge with the default configuration
// (state bucket on) watches a namespace of its own, empty but for lo; its
// resident set is read once it idles, then again once memPairs veth pairs,
// each end with an IPv4 and an IPv6 address, are created, published, and
// written to the bucket. The growth over the objects the kernel added
// (links plus addresses) is what each costs, read once the resident set has
// stayed within 64 KiB for 2 s. The namespace is its own so
// that the other nlbridges are not disturbed, nor timed while it fills.

var memPairs = flag.Int("mem-pairs", 10000, "veth pairs (2 links and 4 addresses each) for the memory per object; 0 leaves it out (-quick: 500)")

// maxBytesPerObject is the target for the resident set's growth per
// published object.
const maxBytesPerObject = 400

// memory measures nlbridge's resident set growth per published object.
func (b *bench) memory(ctx context.Context) error {
	pairs := *memPairs
	if b.o.quick && !flagGiven("mem-pairs") {
		pairs = 500
	}
	if pairs == 0 {
		b.rep.note("the memory per object was left out (-mem-pairs 0)")
		return nil
	}
	if pairs < 0 || pairs > 10000 {
		return fmt.Errorf("-mem-pairs %d: want 0 to 10000", pairs)
	}
	ns, err := newNetNS()
	if err != nil {
		return err
	}
	defer ns.Close()
	const host, receiver = "benchmem", "nlbridge-mem"
	s, err := subscribeBridge(b.nc, receiver, host, false, "")
	if err != nil {
		return err
	}
	defer s.sub.Unsubscribe()
	port, err := freePort()
	if err != nil {
		return err
	}
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := startMemBridge(ns, b.bin, b.o.out, host, b.url, metricsAddr)
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	if _, err := waitSync(ctx, s, "startup", 60*time.Second); err != nil {
		return err
	}
	metrics := "http://" + metricsAddr + "/metrics"
	// A scrape before the idle reading: its own code and buffers are then
	// part of the idle process, not of the growth.
	if _, err := scrape(ctx, metrics); err != nil {
		return err
	}
	time.Sleep(time.Second)
	idle, err := readMem(ctx, p, metrics)
	if err != nil {
		return err
	}
	links0, addrs0, err := ns.counts()
	if err != nil {
		return err
	}
	msgs0 := s.rec.msgs.Load()

	logf("memory: %d veth pairs with addresses in one ip -batch run", pairs)
	start := time.Now()
	if err := ns.ipBatch(ctx, 10*time.Minute, nstest.VethPairsBatch("m", 0, pairs)); err != nil {
		return err
	}
	created := time.Since(start)
	links1, addrs1, err := ns.counts()
	if err != nil {
		return err
	}
	objects := links1 - links0 + addrs1 - addrs0
	// Settled: every object published, the bucket written, no message for
	// a second.
	for deadline := time.Now().Add(5 * time.Minute); s.rec.msgs.Load()-msgs0 < int64(objects); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s published %d messages for %d new objects within 5 minutes", receiver, s.rec.msgs.Load()-msgs0, objects)
		}
	}
	if err := s.rec.quiet(ctx, time.Second, 5*time.Minute); err != nil {
		return err
	}
	var grown memReading
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		if grown, err = readMem(ctx, p, metrics); err != nil {
			return err
		}
		if grown.pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %v keys still waiting for the state bucket after 2 minutes", receiver, grown.pending)
		}
	}
	// Settled: the resident set within 64 KiB for 2 s (nlbridge gives
	// back the garbage of a burst once it is quiet). Only /proc is read
	// meanwhile: a scrape every half second is work for nlbridge (more
	// than a Prometheus server's every 15 s or so) that would keep it from
	// ever being quiet.
	for stable, last, deadline := 0, grown.rssKiB, time.Now().Add(30*time.Second); stable < 4 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		rss, err := statusKiB(p.pid(), "VmRSS")
		if err != nil {
			return err
		}
		if stable++; rss > last+64 || rss < last-64 {
			stable = 0
		}
		last = rss
	}
	if grown, err = readMem(ctx, p, metrics); err != nil {
		return err
	}
	perObject := float64(grown.rssKiB-idle.rssKiB) * 1024 / float64(objects)
	heapPerObject := (grown.heapInuse - idle.heapInuse) / float64(objects)
	name := func(what string) string { return fmt.Sprintf("%s_%dpairs", what, pairs) }
	b.rep.add("mem_idle_rss", receiver, float64(idle.rssKiB)/1024, "MiB")
	b.rep.add(name("mem_ip_batch"), "ip -batch", millis(created), "ms")
	b.rep.add(name("mem_objects"), "kernel", float64(objects), "objects")
	b.rep.add(name("mem_rss"), receiver, float64(grown.rssKiB)/1024, "MiB")
	b.rep.add(name("mem_rss_peak"), receiver, float64(grown.hwmKiB)/1024, "MiB")
	b.rep.add(name("mem_rss_per_object"), receiver, perObject, "bytes")
	b.rep.add(name("mem_anon_per_object"), receiver, float64(grown.anonKiB-idle.anonKiB)*1024/float64(objects), "bytes")
	b.rep.add(name("mem_heap_per_object"), receiver, heapPerObject, "bytes")
	b.rep.add(name("mem_kv_pending"), receiver, grown.pending, "keys")
	verdict := "NOT MET"
	switch {
	case pairs < 10000:
		verdict = "target not checked below 10,000 pairs, where what a first burst costs once (buffers grown, garbage not yet given back) outweighs the objects"
	case perObject <= maxBytesPerObject:
		verdict = "met"
	}
	b.rep.note("memory per object (%s): %s, RSS %.1f → %.1f MiB over %d pairs (%d links, %d addresses): %.0f bytes per object against %d; Go heap in use %.0f bytes per object (garbage not yet collected included)",
		receiver, verdict, float64(idle.rssKiB)/1024, float64(grown.rssKiB)/1024, pairs, links1-links0, addrs1-addrs0,
		perObject, maxBytesPerObject, heapPerObject)
	logf("memory: %d objects in %v: RSS %.1f → %.1f MiB, %.0f bytes per object (heap %.0f)", objects,
		created.Round(time.Millisecond), float64(idle.rssKiB)/1024, float64(grown.rssKiB)/1024, perObject, heapPerObject)
	if err := p.stop(10 * time.Second); err != nil {
		return fmt.Errorf("%s did not stop cleanly: %w", receiver, err)
	}
	return nil
}

// memReading is what readMem reads of an nlbridge.
type memReading struct {
	rssKiB, hwmKiB, anonKiB int
	// heapInuse is go_memstats_heap_inuse_bytes; pending is
	// nlbridge_kv_pending_keys.
	heapInuse, pending float64
}

// readMem reads p's resident set from /proc and its heap and bucket
// backlog from its metrics.
func readMem(ctx context.Context, p *proc, metricsURL string) (memReading, error) {
	m, err := scrape(ctx, metricsURL)
	if err != nil {
		return memReading{}, err
	}
	var r memReading
	var ok1, ok2 bool
	r.heapInuse, ok1 = m["go_memstats_heap_inuse_bytes"]
	r.pending, ok2 = m["nlbridge_kv_pending_keys"]
	if !ok1 || !ok2 {
		return r, fmt.Errorf("%s: no go_memstats_heap_inuse_bytes or nlbridge_kv_pending_keys", metricsURL)
	}
	if r.rssKiB, err = statusKiB(p.pid(), "VmRSS"); err != nil {
		return r, err
	}
	if r.hwmKiB, err = statusKiB(p.pid(), "VmHWM"); err != nil {
		return r, err
	}
	if r.anonKiB, err = statusKiB(p.pid(), "RssAnon"); err != nil {
		return r, err
	}
	return r, nil
}

// scrape returns the samples without labels of a Prometheus text page.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// flagGiven reports whether the named flag was on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// startMemBridge starts nlbridge for host with the default configuration
// but for what the benchmark needs: the namespace, the server, and metrics
// on metricsAddr. Its log goes to dir/nlbridge-HOST.log.
func startMemBridge(ns *netNS, bin, dir, host, url, metricsAddr string) (*proc, error) {
	cfg := fmt.Sprintf(`host: %s
netlink:
  netns: %s
nats:
  servers: [%q]
metrics:
  listen: %q
`, host, ns.path, url, metricsAddr)
	return startConfigured(bin, dir, host, cfg)
}
