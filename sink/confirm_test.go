package sink

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/proxytest"
)

// unconfirmed returns the sink's confirmation bookkeeping.
func unconfirmed(s *NATS) (seq, confirmed uint64, records int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq, s.confirmed, len(s.sent) + len(s.sentDels)
}

// waitConfirmed waits until the server has confirmed everything published.
func waitConfirmed(t *testing.T, s *NATS) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		seq, confirmed, records := unconfirmed(s)
		if seq == confirmed && records == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("seq %d, confirmed %d, %d records: not confirmed within 5s", seq, confirmed, records)
		}
	}
}

// TestConfirm publishes through a proxy: the confirmer confirms within a
// pause and a round trip and forgets its records, and an idle sink sends
// nothing but nats.go's own pings.
func TestConfirm(t *testing.T) {
	srv := runServer(t, server.RANDOM_PORT)
	p := proxytest.New(t, srv.Addr().String())
	s := newSink(t, "nats://"+p.Addr())
	s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
	s.Handle(addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"))
	s.Handle(addrEv(event.DelAddr, 2, "eth0", "192.0.2.1/24"))
	if seq, confirmed, records := unconfirmed(s); seq != 3 || records != 3 || confirmed != 0 {
		t.Errorf("after publishing: seq %d, confirmed %d, %d records; want 3, 0, 3", seq, confirmed, records)
	}
	waitConfirmed(t, s)

	// Idle: at most one PING of nats.go's timer (every 2 s) and its PONG
	// answer to the server's; a flush every pause would be seven.
	time.Sleep(100 * time.Millisecond)
	before := p.Sent()
	time.Sleep(1500 * time.Millisecond)
	if sent := p.Sent() - before; sent > int64(len("PING\r\nPONG\r\n")) {
		t.Errorf("an idle sink sent %d bytes in 1.5s, want at most a PING and a PONG", sent)
	}
	for i := range 20 {
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1400+uint32(i)))
	}
	waitConfirmed(t, s)
}

// TestRedoAfterPartition partitions the sink from its server: what it
// publishes then is taken by nats.go and lost. Once the pings find the
// connection dead and the sink reconnects, it publishes the current state
// of every object whose message was lost, then SYNC reconnect.
func TestRedoAfterPartition(t *testing.T) {
	for _, tc := range []struct {
		name string
		lost func(s *NATS)
		want []string
	}{{
		name: "changes",
		lost: func(s *NATS) {
			s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
			s.Handle(addrEv(event.DelAddr, 2, "eth0", "192.0.2.1/24"))
			s.Handle(addrEv(event.NewAddr, 2, "eth0", "192.0.2.2/24"))
			s.Handle(addrEv(event.DelAddr, 3, "eth1", "2001:db8::1/64"))
			s.Handle(linkEv(event.DelLink, 3, "eth1", 1500))
			s.Handle(linkEv(event.NewLink, 4, "eth2", 1500))
		},
		want: []string{"DELADDR netlink.h.addr.eth0.del", "DELADDR netlink.h.addr.eth1.del", "DELLINK netlink.h.link.eth1.del",
			"NEWLINK netlink.h.link.eth0.new", "NEWLINK netlink.h.link.eth2.new", "NEWADDR netlink.h.addr.eth0.new",
			"SYNC netlink.h.sync"},
	}, {
		name: "a resync that found nothing: its SYNC alone",
		lost: func(s *NATS) {
			dump(s, event.ReasonResync, "", linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 1500),
				linkEv(event.NewLink, 3, "eth1", 1500), addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"),
				addrEv(event.NewAddr, 3, "eth1", "2001:db8::1/64"))
		},
		want: []string{"SYNC netlink.h.sync"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := runServer(t, server.RANDOM_PORT)
			ch := listen(t, srv.ClientURL())
			p := proxytest.New(t, srv.Addr().String())
			s := newSink(t, "nats://"+p.Addr())
			dump(s, event.ReasonStartup, "", linkEv(event.NewLink, 1, "lo", 65536), linkEv(event.NewLink, 2, "eth0", 1500),
				linkEv(event.NewLink, 3, "eth1", 1500), addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"),
				addrEv(event.NewAddr, 3, "eth1", "2001:db8::1/64"))
			next(t, ch, 6)
			waitConfirmed(t, s)

			p.Blackhole()
			start := time.Now()
			tc.lost(s)
			seq, _, _ := unconfirmed(s)
			if st := s.Stats(); st.PublishErrors != 0 || seq == 6 {
				t.Fatalf("stats %+v, seq %d: nats.go did not take the messages", st, seq)
			}
			var got []received
			for deadline := time.After(20 * time.Second); len(got) < len(tc.want); {
				select {
				case r := <-ch:
					got = append(got, r)
				case <-deadline:
					t.Fatalf("after the partition: %v, want %v", names(got), tc.want)
				}
			}
			took := time.Since(start)
			t.Logf("republished %d messages %v after the partition", len(got), took)
			if !slices.Equal(names(got), tc.want) {
				t.Errorf("after the partition: %v, want %v", names(got), tc.want)
			}
			// The lost messages leave a gap, then the catching up follows.
			if got[0].Seq != seq+1 || got[len(got)-1].Reason != "reconnect" || got[len(got)-1].First != seq+1 {
				t.Errorf("after the partition: %+v, want seq from %d and SYNC reconnect", got, seq+1)
			}
			if tc.name == "changes" && got[3].Link.MTU != 9000 {
				t.Errorf("eth0 republished with MTU %d, want its current 9000", got[3].Link.MTU)
			}
			if took > 15*time.Second || took < 3*time.Second {
				t.Errorf("the dead connection was found after %v, want 4 to 6 s (2 pings unanswered)", took)
			}
			if p.Accepted() != 2 {
				t.Errorf("%d connections through the proxy, want 2", p.Accepted())
			}
			quiet(t, ch)
			waitConfirmed(t, s)
		})
	}
}
