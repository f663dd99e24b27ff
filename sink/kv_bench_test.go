package sink

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// BenchmarkHandleKV is BenchmarkHandle with the state bucket on: each
// event also marks its key, which the writer writes meanwhile. One op is
// one event.
func BenchmarkHandleKV(b *testing.B) {
	for _, links := range []uint32{1, 1000} {
		b.Run(fmt.Sprintf("links=%d", links), func(b *testing.B) {
			s := benchKVSink(b)
			ev := linkEv(event.NewLink, 2, "eth0", 1500)
			i := uint32(0)
			b.ReportAllocs()
			for b.Loop() {
				i++
				ev.Link.Index = 2 + i%links
				ev.Link.Name = fmt.Sprint("eth", ev.Link.Index)
				ev.Link.MTU = 1280 + (i/links)%1000 // changed since its last event
				s.Handle(ev)
			}
		})
	}
}

// BenchmarkKVWrite is the writer's throughput: links renamed in a burst,
// each a value written and a deletion, until nothing is pending. One op is
// one link renamed.
func BenchmarkKVWrite(b *testing.B) {
	s := benchKVSink(b)
	const links = 2000
	for i := range uint32(links) {
		s.Handle(linkEv(event.NewLink, i+2, fmt.Sprint("a", i), 1500))
	}
	wait := func() {
		for s.KVStats().Pending != 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wait()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		for i := uint32(0); i < links && n < b.N; i, n = i+1, n+1 {
			s.Handle(linkEv(event.NewLink, i+2, fmt.Sprintf("r%d-%d", n/links, i), 1500))
		}
		wait()
	}
}

// benchKVSink connects a sink with the state bucket to a JetStream server
// of its own; both are closed when b ends.
func benchKVSink(b *testing.B) *NATS {
	b.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, b.TempDir()
	srv := natsserver.RunServer(&opts)
	b.Cleanup(srv.Shutdown)
	s, err := Connect(Config{Servers: []string{srv.ClientURL()}, Name: "bench", Host: "h",
		Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard(),
		KV: KVConfig{Bucket: "netlink", Replicas: 1, Memory: true, PresenceTTL: time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	closeAtCleanup(b, s)
	return s
}
