package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/proxytest"
)

// closeWithin closes s with a timeout of d and returns what Close said.
func closeWithin(t *testing.T, s *NATS, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Close(ctx)
}

// TestCloseReport: Close says what may not have reached the server: nil
// when it confirmed everything; the changes never published while it was
// unreachable; the messages it did not confirm when the drain timed out.
func TestCloseReport(t *testing.T) {
	t.Run("delivered", func(t *testing.T) {
		srv := runServer(t, server.RANDOM_PORT)
		ch := listen(t, srv.ClientURL())
		s := newSink(t, srv.ClientURL())
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
		s.Handle(addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"))
		// Closed at once, before the confirmer's pause: the drain must
		// still deliver both, and Close know it.
		if err := closeWithin(t, s, 5*time.Second); err != nil {
			t.Errorf("Close with the server up = %v, want nil", err)
		}
		next(t, ch, 2)
		if err := closeWithin(t, s, time.Second); err != nil {
			t.Errorf("Close again = %v, want nil", err)
		}
	})

	t.Run("server down", func(t *testing.T) {
		srv := runServer(t, server.RANDOM_PORT)
		s := newSink(t, srv.ClientURL())
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
		s.Handle(linkEv(event.NewLink, 3, "eth1", 1500))
		waitConfirmed(t, s)
		srv.Shutdown()
		srv.WaitForShutdown()
		for deadline := time.Now().Add(5 * time.Second); s.Conn().IsConnected(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the sink did not notice the server's shutdown")
			}
		}
		// Three objects changed, one of them a thousand times, and one
		// was created and deleted: consumers never heard of it.
		for i := range 1000 {
			s.Handle(linkEv(event.NewLink, 2, "eth0", 1000+uint32(i)))
		}
		s.Handle(linkEv(event.DelLink, 3, "eth1", 1500))
		s.Handle(addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"))
		s.Handle(linkEv(event.NewLink, 4, "eth2", 1500))
		s.Handle(linkEv(event.DelLink, 4, "eth2", 1500))
		start := time.Now()
		err := closeWithin(t, s, 5*time.Second)
		u, ok := errors.AsType[*UndeliveredError](err)
		if !ok || u.Unpublished != 3 || u.Unconfirmed != 0 || u.Undelivered() != 3 {
			t.Fatalf("Close = %#v, want an *UndeliveredError of 3 unpublished, 0 unconfirmed", err)
		}
		if !errors.Is(err, nats.ErrConnectionReconnecting) {
			t.Errorf("Close = %v, want it to wrap %v", err, nats.ErrConnectionReconnecting)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %v while disconnected, want no wait", took)
		}
		if got, want := err.Error(), "sink: 3 events not delivered to NATS (3 changes never published, 0 messages not confirmed by the server): sink: drain: nats: connection reconnecting"; got != want {
			t.Errorf("Close = %q, want %q", got, want)
		}
	})

	t.Run("drain times out", func(t *testing.T) {
		srv := runServer(t, server.RANDOM_PORT)
		p := proxytest.New(t, srv.Addr().String())
		s := newSink(t, "nats://"+p.Addr())
		s.Handle(linkEv(event.NewLink, 2, "eth0", 1500))
		waitConfirmed(t, s)
		p.Blackhole() // the connection stays up; nothing reaches the server
		s.Handle(linkEv(event.NewLink, 2, "eth0", 9000))
		s.Handle(addrEv(event.NewAddr, 2, "eth0", "192.0.2.1/24"))
		s.Handle(addrEv(event.DelAddr, 2, "eth0", "192.0.2.1/24"))
		start := time.Now()
		err := closeWithin(t, s, 500*time.Millisecond)
		u, ok := errors.AsType[*UndeliveredError](err)
		if !ok || u.Unpublished != 0 || u.Unconfirmed != 3 {
			t.Fatalf("Close = %#v, want an *UndeliveredError of 0 unpublished, 3 unconfirmed", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want it to wrap the deadline", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Close took %v with a 500ms timeout", took)
		}
	})
}
