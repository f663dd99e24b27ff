package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// BenchmarkHandle is the hot path: Handle of a NEWLINK that changed (so it
// is published), through a TCP connection to a NATS server, for one link
// that changes again and again and for changes that go round 1000 links.
// One op is one event.
func BenchmarkHandle(b *testing.B) {
	for _, links := range []uint32{1, 1000} {
		b.Run(fmt.Sprintf("links=%d", links), func(b *testing.B) {
			opts := natsserver.DefaultTestOptions
			opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
			srv := natsserver.RunServer(&opts)
			defer srv.Shutdown()
			s, err := Connect(Config{Servers: []string{srv.ClientURL()}, Name: "bench", Host: "h",
				Subjects: NewSubjects("netlink", "nlbridge", "h"), Encoder: encode.JSON{}, Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Close(ctx)
			}()
			ev := linkEv(event.NewLink, 2, "eth0", 1500)
			i := uint32(0)
			b.ReportAllocs()
			for b.Loop() {
				i++
				ev.Link.Index = 2 + i%links
				ev.Link.MTU = 1280 + (i/links)%1000 // changed since its last event
				s.Handle(ev)
			}
		})
	}
}
