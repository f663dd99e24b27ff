package mirror

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
)

// BenchmarkApply measures what the NATS client's delivery goroutine does
// per event in stream mode: decode, check boot and seq, apply, mark for
// the callback (which runs too, with nothing to do). The events change
// the MTU of 20 links and add and delete addresses on them, on 10 hosts.
// Run it with -cpu 1 for the one-core figure; events/cpu-s is the same
// per second of the process's CPU time.
func BenchmarkApply(b *testing.B) {
	for _, enc := range []encode.Encoder{encode.JSON{}, encode.CBOR{}} {
		b.Run(enc.ContentType()[len("application/"):], func(b *testing.B) {
			m := newMirror(options{prefix: "netlink", control: "nlbridge", onChange: func(Change) {}})
			m.stream = &streamState{queueWake: make(chan struct{}, 1), fleetOpen: true} // no dump requests
			m.startDelivery()
			defer m.Close()
			const hosts = 10
			subj := make([]sink.Subjects, hosts)
			for i := range subj {
				subj[i] = sink.NewSubjects("netlink", "nlbridge", fmt.Sprintf("web-%02d", i))
			}
			msgs := make([]*nats.Msg, 0, 8192)
			var seq uint64
			fill := func() {
				msgs = msgs[:0]
				for range cap(msgs) / hosts {
					seq++
					for h := range hosts {
						ev := benchEvent(seq)
						ev.Host, ev.Boot, ev.Seq, ev.Time = fmt.Sprintf("web-%02d", h), "boot", seq, time.Unix(1, 0).UTC()
						data, err := enc.Append(nil, &ev)
						if err != nil {
							b.Fatal(err)
						}
						msgs = append(msgs, &nats.Msg{Subject: string(subj[h].Append(nil, &ev)), Data: data,
							Header: nats.Header{"Content-Type": {enc.ContentType()}}})
					}
				}
			}
			var cpu time.Duration // the process's, while the timer runs
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				b.StopTimer()
				fill()
				b.StartTimer()
				before, _ := processCPU()
				for _, msg := range msgs[:min(len(msgs), b.N-i)] {
					m.onMessage(msg)
					i++
				}
				after, _ := processCPU()
				cpu += after - before
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if _, ok := processCPU(); ok && cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
			}
			h, _ := m.Host("web-00")
			if b.N >= 1000 && len(h.Links) != 20 {
				b.Fatalf("web-00 has %d links, want 20", len(h.Links))
			}
		})
	}
}

// processCPU returns the CPU time the process has used, where the system
// says (cputime_unix_test.go). On a machine shared with other work,
// events per second of CPU time tell what one core does better than
// events per second of wall time: with -cpu 1 the process uses at most
// one core, and the time other processes take it away does not count.
var processCPU = func() (time.Duration, bool) { return 0, false }

// BenchmarkApplyDecoded measures the same as BenchmarkApply without
// decoding: the mirror's own work per event.
func BenchmarkApplyDecoded(b *testing.B) {
	m := newMirror(options{prefix: "netlink", control: "nlbridge", onChange: func(Change) {}})
	m.stream = &streamState{queueWake: make(chan struct{}, 1), fleetOpen: true}
	m.startDelivery()
	defer m.Close()
	const hosts = 10
	names := make([]string, hosts)
	for i := range names {
		names[i] = fmt.Sprintf("web-%02d", i)
	}
	evs := make([]event.Event, 0, 8192)
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		evs = evs[:0]
		for range cap(evs) / hosts {
			seq++
			for h := range hosts {
				ev := benchEvent(seq)
				ev.Host, ev.Boot, ev.Seq = names[h], "boot", seq
				evs = append(evs, ev)
			}
		}
		b.StartTimer()
		for j := range evs[:min(len(evs), b.N-i)] {
			m.apply(evs[j].Host, &evs[j])
			i++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchEvent is the event of a given seq: mostly MTU changes, and
// addresses added and deleted.
func benchEvent(seq uint64) event.Event {
	index := uint32(seq/4%20) + 1
	name := fmt.Sprintf("eth%d", index)
	switch seq % 4 {
	case 1:
		return event.Event{Type: event.NewAddr, Addr: addr(index, name, fmt.Sprintf("10.0.%d.%d/24", index, seq%200+1))}
	case 3:
		return event.Event{Type: event.DelAddr, Addr: addr(index, name, fmt.Sprintf("10.0.%d.%d/24", index, (seq-2)%200+1))}
	}
	return event.Event{Type: event.NewLink, Changed: 1 << 5, Link: link(index, name, uint32(1000+seq%500))}
}

// BenchmarkFirstView measures how long a new Mirror takes to read a
// bucket of 1,000 hosts with 20 links each (and their presences) into its
// first full view.
func BenchmarkFirstView(b *testing.B) {
	srv := runServer(b, true)
	nc := connect(b, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "netlink", Storage: jetstream.MemoryStorage}); err != nil {
		b.Fatal(err)
	}
	const hosts, links = 1000, 20
	for h := range hosts {
		host := fmt.Sprintf("web-%04d", h)
		pres := fmt.Sprintf(`{"host":%q,"boot":"b","version":"0.1.0","started":"2026-12-02T04:35:41Z","seq":21}`, host)
		if _, err := js.PublishAsync("$KV.netlink."+host+".presence", []byte(pres)); err != nil {
			b.Fatal(err)
		}
		for l := range links {
			ev := event.Event{Type: event.NewLink, Host: host, Boot: "b", Seq: uint64(l + 1), Time: time.Unix(1, 0).UTC(),
				Link: link(uint32(l+1), fmt.Sprintf("eth%d", l), 1500)}
			data, err := encode.JSON{}.Append(nil, &ev)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishAsync("$KV.netlink."+host+".link."+ev.Link.Name, data); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("filling the bucket took more than 30 s")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m, err := New(connect(b, srv))
		if err != nil {
			b.Fatal(err)
		}
		<-m.Ready()
		b.StopTimer()
		snap := m.Snapshot()
		if len(snap) != hosts || len(snap["web-0999"].Links) != links {
			b.Fatalf("the first view has %d hosts, web-0999 %d links", len(snap), len(snap["web-0999"].Links))
		}
		m.Close()
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/view")
}
