package mirror_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/mirror"
)

// fleet starts an in-process NATS server whose state bucket holds what
// nlbridge on host web-01 would write: its presence, a link and an
// address. It returns the server's URL, the bucket, and a function that
// stops the server.
func fleet() (string, jetstream.KeyValue, func()) {
	dir, err := os.MkdirTemp("", "mirror-example-")
	if err != nil {
		log.Fatal(err)
	}
	opts := natsserver.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = server.RANDOM_PORT, true, dir
	srv := natsserver.RunServer(&opts)
	stop := func() { srv.Shutdown(); os.RemoveAll(dir) }
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "netlink", LimitMarkerTTL: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	put := func(key string, ev event.Event) {
		ev.Host, ev.Boot, ev.Seq, ev.Time = "web-01", "5d64e52ef04fe2a7", 1, time.Unix(0, 0).UTC()
		data, err := encode.JSON{}.Append(nil, &ev)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, data); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := kv.Put(ctx, "web-01.presence", []byte(`{"host":"web-01","boot":"5d64e52ef04fe2a7","version":"0.1.0","started":"2026-12-02T04:35:41Z","seq":3}`)); err != nil {
		log.Fatal(err)
	}
	put("web-01.link.eth0", event.Event{Type: event.NewLink, Link: event.Link{
		Index: 2, Name: "eth0", Kind: "veth", State: 6, MTU: 1500, Flags: event.IFFUp | event.IFFRunning, Carrier: true}})
	put("web-01.addr.eth0.192=2E0=2E2=2E10=2F24", event.Event{Type: event.NewAddr, Addr: event.Addr{
		Index: 2, Ifname: "eth0", Family: event.Inet, Address: netip.MustParseAddr("192.0.2.10"), PrefixLen: 24,
		ValidLft: event.Forever, PreferredLft: event.Forever}})
	return srv.ClientURL(), kv, func() { nc.Close(); stop() }
}

// A Mirror reads the state bucket: Ready says when its first full view is
// complete, and Snapshot returns a copy of it.
func Example() {
	url, _, stop := fleet()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	m, err := mirror.New(nc, mirror.WithHosts("web-*"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	<-m.Ready()
	for name, h := range m.Snapshot() {
		fmt.Println(name, "running nlbridge", h.Version, "gone:", h.Gone)
		for _, i := range slices.Sorted(maps.Keys(h.Links)) {
			fmt.Printf("  %d: %s mtu %d\n", i, h.Links[i].Name, h.Links[i].MTU)
		}
		for k := range h.Addrs {
			fmt.Printf("  %d: %s\n", k.Index, k.ID)
		}
	}
	// Output:
	// web-01 running nlbridge 0.1.0 gone: false
	//   2: eth0 mtu 1500
	//   2: 192.0.2.10/24
}

// WithChanges delivers typed changes from a goroutine of the Mirror: here
// the initial view, then a link deleted (its address goes with it), then
// the host going away, in an order that can be applied one by one.
func ExampleWithChanges() {
	url, kv, stop := fleet()
	defer stop()
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	added, gone := make(chan struct{}), make(chan struct{})
	m, err := mirror.New(nc, mirror.WithChanges(func(c mirror.Change) {
		switch c := c.(type) {
		case mirror.HostAppeared:
			fmt.Println(c.Host, "appeared")
		case mirror.LinkAdded:
			fmt.Println(c.Host, "link added:", c.Link.Name)
		case mirror.LinkChanged:
			fmt.Println(c.Host, "link changed:", c.Link.Name, c.Changed)
		case mirror.LinkRemoved:
			fmt.Println(c.Host, "link removed:", c.Link.Name)
		case mirror.AddrAdded:
			fmt.Println(c.Host, "address added:", c.Addr.ID(), "on", c.Addr.Ifname)
			close(added)
		case mirror.AddrRemoved:
			fmt.Println(c.Host, "address removed:", c.Addr.ID())
		case mirror.HostGone:
			fmt.Println(c.Host, "gone")
			close(gone)
		}
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	// Changes are coalesced: had the link gone before the callback was
	// told of it, the callback would hear of neither.
	<-added
	ctx := context.Background()
	_ = kv.Delete(ctx, "web-01.link.eth0")
	_ = kv.Delete(ctx, "web-01.presence")
	<-gone
	// Output:
	// web-01 appeared
	// web-01 link added: eth0
	// web-01 address added: 192.0.2.10/24 on eth0
	// web-01 address removed: 192.0.2.10/24
	// web-01 link removed: eth0
	// web-01 gone
}
