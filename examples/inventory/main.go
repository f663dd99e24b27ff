// Command inventory keeps an inventory of a fleet's interfaces and
// addresses with package mirror, and prints each change as it comes:
//
//	go run ./examples/inventory -server nats://127.0.0.1:4222 -hosts 'web-*'
//
// On SIGINT or SIGTERM it prints how many links and addresses each host
// has, and exits.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/mirror"
)

func main() {
	server := flag.String("server", nats.DefaultURL, "NATS server URL")
	hosts := flag.String("hosts", "", "glob of the host names to follow (default all)")
	bucket := flag.String("bucket", "netlink", `state bucket; "" reads the event stream`)
	flag.Parse()

	nc, err := nats.Connect(*server, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	m, err := mirror.New(nc, mirror.WithHosts(*hosts), mirror.WithBucket(*bucket), mirror.WithChanges(show))
	if err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for name, h := range m.Snapshot() {
		fmt.Printf("%s: %d links, %d addresses, gone %v\n", name, len(h.Links), len(h.Addrs), h.Gone)
	}
	if err := m.Close(); err != nil {
		log.Fatal(err)
	}
}

// show prints one change; the Mirror calls it from a goroutine of its own.
func show(c mirror.Change) {
	switch c := c.(type) {
	case mirror.HostAppeared:
		fmt.Printf("%s: up (boot %s)\n", c.Host, c.Boot)
	case mirror.HostGone:
		fmt.Printf("%s: gone\n", c.Host)
	case mirror.LinkAdded:
		fmt.Printf("%s: + link %d %s %s mtu %d\n", c.Host, c.Link.Index, c.Link.Name, c.Link.State, c.Link.MTU)
	case mirror.LinkChanged:
		fmt.Printf("%s: ~ link %d %s %v\n", c.Host, c.Link.Index, c.Link.Name, c.Changed)
	case mirror.LinkRemoved:
		fmt.Printf("%s: - link %d %s\n", c.Host, c.Link.Index, c.Link.Name)
	case mirror.AddrAdded:
		fmt.Printf("%s: + addr %s on %s\n", c.Host, c.Addr.ID(), c.Addr.Ifname)
	case mirror.AddrChanged:
		fmt.Printf("%s: ~ addr %s on %s %v\n", c.Host, c.Addr.ID(), c.Addr.Ifname, c.Changed)
	case mirror.AddrRemoved:
		fmt.Printf("%s: - addr %s on %s\n", c.Host, c.Addr.ID(), c.Addr.Ifname)
	}
}
