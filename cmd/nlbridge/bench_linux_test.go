//go:build linux

package main

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// benchBridge starts a NATS server and the bridge on ns, and waits until
// the bridge answers requests.
func benchBridge(b *testing.B, ns *nstest.NS, enc config.Encoding) *nats.Conn {
	b.Helper()
	srv := startServer(b)
	nc := connect(b, srv)
	cfg := testConfig("bench", ns, srv.ClientURL())
	cfg.Dump.OnStart = false
	cfg.Dump.MinInterval = 0 // the dump benchmark asks back to back
	cfg.Encoding = enc
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, discardLogger()) }()
	b.Cleanup(func() { cancel(); <-done })
	// "No responders" comes back at once while the bridge starts: retry
	// for a while.
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, err := nc.Request("nlbridge.bench.dump", nil, time.Second)
		if err == nil {
			return nc
		}
		if time.Now().After(deadline) {
			b.Fatalf("bridge not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// percentile returns the p-th percentile (0-100) of sorted durations in µs.
func percentile(sorted []time.Duration, p float64) float64 {
	i := int(float64(len(sorted)-1) * p / 100)
	return float64(sorted[i].Nanoseconds()) / 1e3
}

// BenchmarkIntegrationLatency measures, for each MTU change on a veth, the
// time from the rtnetlink request to (a) a plain netlink socket reading the
// notification — the floor — and (b) a NATS subscriber receiving nlbridge's
// event, side by side in the same run. One op is one MTU change.
func BenchmarkIntegrationLatency(b *testing.B) {
	ns := nstest.New(b)
	idx, _ := ns.AddVeth(b, "lat0", "lat1")
	nc := benchBridge(b, ns, config.EncodingJSON)

	type seen struct {
		mtu uint32
		at  time.Time
	}
	viaNATS := make(chan seen, 1024)
	sub, err := nc.Subscribe("netlink.bench.link.lat0.new", func(m *nats.Msg) {
		at := time.Now()
		var doc struct{ Link struct{ MTU uint32 } }
		if json.Unmarshal(m.Data, &doc) == nil {
			viaNATS <- seen{doc.Link.MTU, at}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	f, err := os.Open(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	floor, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_LINK, NetNS: int(f.Fd())})
	if err != nil {
		b.Fatal(err)
	}
	defer floor.Close()
	viaFloor := make(chan seen, 1024)
	go func() {
		for {
			msgs, err := floor.Receive()
			at := time.Now()
			if err != nil {
				close(viaFloor)
				return
			}
			for _, m := range msgs {
				// struct ifinfomsg, then attributes; find IFLA_MTU (4).
				if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < 16 || m.Data[0] != 0 {
					continue
				}
				ad, err := netlink.NewAttributeDecoder(m.Data[16:])
				if err != nil {
					continue
				}
				for ad.Next() {
					if ad.Type() == unix.IFLA_MTU {
						viaFloor <- seen{ad.Uint32(), at}
					}
				}
			}
		}
	}()
	wait := func(ch chan seen, mtu uint32) time.Time {
		timeout := time.After(5 * time.Second)
		for {
			select {
			case s := <-ch:
				if s.mtu == mtu {
					return s.at
				}
			case <-timeout:
				b.Fatalf("no event for mtu %d", mtu)
			}
		}
	}

	var floorLat, natsLat []time.Duration
	i := 0
	for b.Loop() {
		i++
		mtu := 1300 + uint32(i%400) // never the previous value
		start := time.Now()
		ns.SetMTU(b, idx, mtu)
		floorLat = append(floorLat, wait(viaFloor, mtu).Sub(start))
		natsLat = append(natsLat, wait(viaNATS, mtu).Sub(start))
	}
	b.StopTimer()
	slices.Sort(floorLat)
	slices.Sort(natsLat)
	b.ReportMetric(percentile(floorLat, 50), "floor-p50-µs")
	b.ReportMetric(percentile(floorLat, 99), "floor-p99-µs")
	b.ReportMetric(percentile(natsLat, 50), "nlbridge-p50-µs")
	b.ReportMetric(percentile(natsLat, 99), "nlbridge-p99-µs")
	b.ReportMetric(percentile(natsLat, 100), "nlbridge-max-µs")
	b.ReportMetric(percentile(natsLat, 50)-percentile(floorLat, 50), "overhead-p50-µs")
}

// benchPairs is the number of veth pairs of BenchmarkIntegrationDump:
// NLBENCH_PAIRS, or 2000.
func benchPairs(b *testing.B) int {
	if s := os.Getenv("NLBENCH_PAIRS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			b.Fatalf("NLBENCH_PAIRS=%q: want 1 to 10000", s)
		}
		return n
	}
	return 2000
}

// BenchmarkIntegrationDump measures a full dump of a namespace holding many
// veth pairs with an IPv4 and an IPv6 address on each end: from the dump
// request to a NATS subscriber holding every link and address, beside
// `ip -j link show` plus `ip -j addr show` on the same namespace, side by
// side in the same run. One op is one of each.
func BenchmarkIntegrationDump(b *testing.B) {
	for _, enc := range []config.Encoding{config.EncodingJSON, config.EncodingCBOR} {
		b.Run(string(enc), func(b *testing.B) { benchDump(b, enc) })
	}
}

func benchDump(b *testing.B, enc config.Encoding) {
	ns := nstest.New(b)
	pairs := benchPairs(b)
	ns.AddVethPairs(b, "d", pairs)
	nc := benchBridge(b, ns, enc)

	var count, bytes int
	syncs := make(chan int, 16)
	sub, err := nc.Subscribe("netlink.bench.>", func(m *nats.Msg) {
		count++
		bytes += len(m.Data)
		if m.Subject == "netlink.bench.sync" {
			syncs <- count
			count = 0
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()
	nc.Flush()

	var bridge, ip time.Duration
	var msgs int
	for b.Loop() {
		bytes = 0
		start := time.Now()
		if err := nc.PublishRequest("nlbridge.bench.dump", nc.NewRespInbox(), nil); err != nil {
			b.Fatal(err)
		}
		select {
		case msgs = <-syncs:
		case <-time.After(60 * time.Second):
			b.Fatal("no SYNC within 60s")
		}
		bridge += time.Since(start)

		start = time.Now()
		for _, what := range []string{"link", "addr"} {
			if _, err := ns.Command("ip", nil, "-j", what, "show"); err != nil {
				b.Fatal(err)
			}
		}
		ip += time.Since(start)
	}
	b.StopTimer()
	// 2 links per pair plus lo; 4 addresses per pair plus IPv6 link-local
	// ones only on links that are up (none), plus the SYNC.
	if want := 2*pairs + 1 + 4*pairs + 1; msgs != want {
		b.Errorf("a dump had %d messages, want %d", msgs, want)
	}
	n := float64(b.N)
	b.ReportMetric(float64(bridge.Milliseconds())/n, "nlbridge-ms")
	b.ReportMetric(float64(ip.Milliseconds())/n, "ip-j-ms")
	b.ReportMetric(float64(bridge)/float64(ip), "ratio")
	b.ReportMetric(float64(bytes)/float64(msgs), "bytes/msg")
}
