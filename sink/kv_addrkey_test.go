package sink

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/event"
)

// An address whose link's NEWLINK was lost (a netlink overflow, or a
// notification that could not be decoded) reaches the sink with no
// interface name, before its link. It waits for the link: consumers are
// never told of an address of a link they do not hold, the bucket files it
// under the link's name once the resync brings the link, and the link's
// DELLINK leaves no key of it behind.
func TestKVAddrBeforeLink(t *testing.T) {
	srv := runJetStream(t, server.RANDOM_PORT, t.TempDir())
	ch := listen(t, srv.ClientURL())
	s := newKVSink(t, srv.ClientURL(), "fa", nil)
	dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 2, "eth0", 1500))
	kv := bucket(t, srv.ClientURL())
	waitContents(t, kv, "fa", []string{"fa.link.eth0=NEWLINK 2 eth0 mtu 1500"})

	// The NEWLINK of e0 (index 3) was lost; its address's notification was
	// read, and the decoder, which never saw the link, could not name it.
	s.Handle(addrEv(event.NewAddr, 3, "", "192.0.2.1/24"))
	s.Handle(addrEv(event.NewAddr, 3, "", "2001:db8::1/64"))
	// The resync that the loss queued.
	dump(s, event.ReasonResync, "", linkEv(event.NewLink, 2, "eth0", 1500), linkEv(event.NewLink, 3, "e0", 1500),
		addrEv(event.NewAddr, 3, "e0", "192.0.2.1/24"), addrEv(event.NewAddr, 3, "e0", "2001:db8::1/64"))
	waitContents(t, kv, "fa", []string{
		"fa.link.eth0=NEWLINK 2 eth0 mtu 1500",
		"fa.link.e0=NEWLINK 3 e0 mtu 1500",
		"fa.addr.e0.192=2E0=2E2=2E1=2F24=NEWADDR 3 e0 192.0.2.1/24",
		"fa.addr.e0.2001=3Adb8=3A=3A1=NEWADDR 3 e0 2001:db8::1",
	})

	s.Handle(linkEv(event.DelLink, 3, "e0", 1500))
	waitContents(t, kv, "fa", []string{"fa.link.eth0=NEWLINK 2 eth0 mtu 1500"})

	// What a consumer of the stream saw: no address of a link it did not
	// hold, and each address under its link's name.
	want := []string{
		"NEWLINK netlink.fa.link.eth0.new",
		"SYNC netlink.fa.sync",
		"NEWLINK netlink.fa.link.e0.new",
		"NEWADDR netlink.fa.addr.e0.new",
		"NEWADDR netlink.fa.addr.e0.new",
		"SYNC netlink.fa.sync",
		"DELLINK netlink.fa.link.e0.del",
	}
	var got []string
	for deadline := time.After(5 * time.Second); len(got) < len(want); {
		select {
		case r := <-ch:
			got = append(got, r.String())
		case <-deadline:
			t.Fatalf("received %q, want %q", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("received\n %q\nwant\n %q", got, want)
	}
}
