//go:build linux

package source_test

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
	"github.com/nlbridge/nlbridge/source"
)

// BenchmarkPipeline runs captured kernel datagrams through everything after
// the recvfrom: splitting, decoding, stamping, encoding, subject, publishing
// to an in-process NATS server, and a subscriber receiving them. One op is
// one event received.
func BenchmarkPipeline(b *testing.B) {
	for _, name := range []string{"json", "cbor"} {
		b.Run(name, func(b *testing.B) {
			srv, err := sink.StartEmbedded(sink.EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			enc, _ := encode.New(name)
			out, err := sink.Connect(sink.Config{Embedded: srv, Name: "bench", Host: "web-01",
				Subjects: sink.NewSubjects("netlink", "nlbridge", "web-01"), Encoder: enc})
			if err != nil {
				b.Fatal(err)
			}
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			var got atomic.Int64
			done := make(chan struct{}, 1)
			var want int64
			sub, err := nc.Subscribe("netlink.>", func(*nats.Msg) {
				if got.Add(1) == atomic.LoadInt64(&want) {
					done <- struct{}{}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			sub.SetPendingLimits(-1, -1)
			nc.Flush()

			// Two datagrams holding the captured NEWLINK and NEWADDR, one
			// with another MTU and address flags, sent in turn: each
			// message changes something, so the sink publishes every one.
			var dgrams [2][]byte
			for i := range dgrams {
				for _, f := range []string{"newlink-veth.bin", "newaddr-inet6.bin"} {
					m, err := os.ReadFile("testdata/" + f)
					if err != nil {
						b.Fatal(err)
					}
					if i == 1 {
						source.PatchAttr(b, m, 16+16, source.IflaMTU, 1400)      // after nlmsghdr and ifinfomsg
						source.PatchAttr(b, m, 16+8, source.IfaFlags, 0x80|0x20) // permanent deprecated
					}
					dgrams[i] = append(dgrams[i], m...)
				}
			}
			n := source.NewReader()
			var ev event.Event
			b.ReportAllocs()
			b.ResetTimer()
			atomic.StoreInt64(&want, int64(b.N/2*2))
			for i := range b.N / 2 {
				n.Datagram(dgrams[i%2], time.Now(), out, &ev)
			}
			if b.N >= 2 {
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					b.Fatalf("subscriber got %d of %d", got.Load(), b.N/2*2)
				}
			}
			b.StopTimer()
			if s := n.Stats(); s.DecodeErrors != 0 {
				b.Fatalf("decode errors: %+v", s)
			}
		})
	}
}
