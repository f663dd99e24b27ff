//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// The state bucket's cost: a second nlbridge, "nlbridge-kv" (host
// benchkv), with the bucket, receives the same kernel events as
// "nlbridge" (host bench), without it, in the latency, burst and scaling
// phases; and a third starts with 10,000 stale keys of its host in the
// bucket, which its startup must remove.

// staleKeys is how many keys of vanished links the stale startup removes.
const staleKeys = 10000

// startKV starts nlbridge-kv, which creates the bucket, and measures the
// stale startup. What it starts is stopped by the cleanups it appends.
func (b *bench) startKV(ctx context.Context, cleanups *[]func()) error {
	var err error
	if b.kvSub, err = subscribeBridge(b.nc, "nlbridge-kv", "benchkv", false, "lat0"); err != nil {
		return err
	}
	if b.kvBridge, err = startBridge(b.ns, b.bin, b.o.out, "benchkv", "json", b.url, true); err != nil {
		return err
	}
	*cleanups = append(*cleanups, func() {
		if b.kvBridge == nil {
			return // stopped for the rounds
		}
		if err := b.kvBridge.stop(10 * time.Second); err != nil {
			logf("stop nlbridge-kv: %v", err)
		}
	})
	if err := b.startup(ctx, b.kvBridge, b.kvSub, "nlbridge-kv"); err != nil {
		return err
	}
	return b.staleStartup(ctx)
}

// bucket returns the bucket, waiting for nlbridge-kv to create it.
func (b *bench) bucket(ctx context.Context) (jetstream.JetStream, jetstream.KeyValue, error) {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		kv, err := js.KeyValue(ctx, "netlink")
		if err == nil {
			return js, kv, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("bucket netlink: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// staleStartup writes staleKeys link keys for host benchstale, of links
// that do not exist, starts nlbridge as benchstale, and measures its
// startup: the startup SYNC comes after the DELLINK of every one.
func (b *bench) staleStartup(ctx context.Context) error {
	js, kv, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	var data []byte
	var futures []jetstream.PubAckFuture
	for i := range staleKeys {
		ev := event.Event{Type: event.NewLink, Host: "benchstale", Boot: "0000000000000000", Seq: uint64(i + 1),
			Time: time.Now(), Link: event.Link{Index: uint32(100000 + i), Name: fmt.Sprintf("gone%d", i), MTU: 1500}}
		if data, err = (encode.JSON{}).Append(data[:0], &ev); err != nil {
			return err
		}
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: fmt.Sprintf("$KV.netlink.benchstale.link.gone%d", i),
			Data: append([]byte(nil), data...)})
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s, err := subscribeBridge(b.nc, "nlbridge-kv-stale", "benchstale", false, "")
	if err != nil {
		return err
	}
	defer s.sub.Unsubscribe()
	logf("state bucket: nlbridge starts with %d stale keys", staleKeys)
	p, err := startBridge(b.ns, b.bin, b.o.out, "benchstale", "json", b.url, true)
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	if err := b.startup(ctx, p, s, "nlbridge-kv-stale"); err != nil {
		return err
	}
	sync, _ := b.rep.get("startup_sync", "nlbridge-kv-stale")
	base, _ := b.rep.get("startup_sync", "nlbridge-kv")
	b.rep.add("kv_stale_startup", "nlbridge-kv-stale", sync-base, "ms")
	// The keys go once the writer has deleted them.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		keys, err := kv.ListKeysFiltered(ctx, "benchstale.link.>")
		n := 0
		if err == nil {
			for k := range keys.Keys() {
				if strings.HasPrefix(k, "benchstale.link.gone") {
					n++
				}
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d stale keys left 30 s after the startup", n)
		}
	}
	logf("state bucket: startup SYNC %.0f ms after the fork with %d stale keys (%.0f ms without)", sync, staleKeys, base)
	if err := p.stop(10 * time.Second); err != nil {
		return fmt.Errorf("nlbridge-kv-stale did not stop cleanly: %w", err)
	}
	return nil
}

// kvSettle waits until the bucket has taken no write for half a second
// (a fifth with -quick), so that nlbridge-kv's CPU time includes its
// writes.
func (b *bench) kvSettle(ctx context.Context) error {
	if b.kvSub == nil {
		return nil
	}
	js, _, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	pause := 500 * time.Millisecond
	if b.o.quick {
		pause = 200 * time.Millisecond
	}
	last := uint64(0)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		info, err := js.Stream(ctx, "KV_netlink")
		if err != nil {
			return err
		}
		if seq := info.CachedInfo().State.LastSeq; seq != last {
			last = seq
			time.Sleep(pause)
			continue
		}
		return nil
	}
	return fmt.Errorf("the bucket still takes writes after 60 s")
}
