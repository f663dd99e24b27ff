// Package sink publishes events to NATS: it stamps each event with the
// host, the boot id and a sequence number, encodes it with the injected
// Encoder and publishes it on its subject. It also answers dump requests
// (see Service) and can start an embedded NATS server (see StartEmbedded).
package sink

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/event"
)

// Encoder turns an event into the bytes of one message (encode.JSON and
// encode.CBOR are Encoders).
type Encoder interface {
	ContentType() string
	Append(dst []byte, ev *event.Event) ([]byte, error)
}

// Config configures a NATS sink.
type Config struct {
	// Servers are the NATS URLs to connect to. When empty, Embedded must be
	// set and the sink connects to it in-process.
	Servers  []string
	Embedded *server.Server
	// Name is the connection name that servers show (nats server report
	// connections).
	Name string
	// Host names this machine in subjects and payloads.
	Host     string
	Subjects Subjects
	Encoder  Encoder
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
}

// NATS publishes events to NATS. Handle must be called from one goroutine
// at a time (the source's); the other methods are safe for concurrent use.
type NATS struct {
	nc     *nats.Conn
	enc    Encoder
	subj   Subjects
	host   string
	boot   string
	log    *slog.Logger
	closed chan struct{} // closed by nats.go's closed callback

	// Owned by the goroutine that calls Handle.
	seq       uint64   // the last seq stamped
	firstDump uint64   // seq of the first dump message since the last SYNC, or 0
	data      []byte   // encoded payload, reused
	subject   []byte   // subject, reused
	msg       nats.Msg // reused: PublishMsg copies what it sends
	failing   uint64   // publish errors since the last success

	published atomic.Uint64
	errs      atomic.Uint64
}

// Stats are the sink's counters.
type Stats struct {
	Published     uint64 // messages handed to the NATS client
	PublishErrors uint64 // messages the NATS client refused (lost)
	Reconnects    uint64 // reconnections to a server
}

// NewBoot returns a random id for one run of nlbridge.
func NewBoot() string {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Connect connects to NATS. It does not wait for a server: nlbridge starts
// in any order with its servers, keeps trying forever with a capped
// backoff, and buffers what it publishes meanwhile (up to the NATS
// client's reconnect buffer). It fails only on settings that can never
// work, such as a malformed URL.
func Connect(cfg Config) (*NATS, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Encoder == nil {
		return nil, errors.New("sink: no encoder")
	}
	s := &NATS{
		enc:    cfg.Encoder,
		subj:   cfg.Subjects,
		host:   cfg.Host,
		boot:   NewBoot(),
		log:    log,
		closed: make(chan struct{}),
		msg:    nats.Msg{Header: nats.Header{"Content-Type": {cfg.Encoder.ContentType()}}},
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS, reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Debug("NATS connection attempt failed", "error", err)
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			log.Error("NATS error", "error", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
	}
	url := strings.Join(cfg.Servers, ",")
	if len(cfg.Servers) == 0 {
		if cfg.Embedded == nil {
			return nil, errors.New("sink: no NATS servers and no embedded server")
		}
		opts = append(opts, nats.InProcessServer(cfg.Embedded))
		url = cfg.Embedded.ClientURL() // for the logs; the connection is in-process
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("sink: connect to NATS %s: %w", url, err)
	}
	if !nc.IsConnected() {
		log.Warn("no NATS server reachable yet: publishing to the reconnect buffer and retrying", "servers", url)
	}
	s.nc = nc
	return s, nil
}

// reconnectDelay doubles from 100 ms to a 5 s cap, with jitter so that a
// fleet restarting together does not reconnect in lock step.
func reconnectDelay(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(attempts, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// Boot returns the random id of this run.
func (s *NATS) Boot() string { return s.boot }

// Host returns the host name that this sink publishes as.
func (s *NATS) Host() string { return s.host }

// Conn returns the NATS connection, for the dump service.
func (s *NATS) Conn() *nats.Conn { return s.nc }

// Handle stamps ev with the host, boot id and next seq, encodes and
// publishes it. A SYNC marker also gets the seq of its dump's first message.
// Errors are counted and logged, never returned: the source must go on
// reading the kernel.
func (s *NATS) Handle(ev *event.Event) {
	s.seq++
	ev.Host, ev.Boot, ev.Seq = s.host, s.boot, s.seq
	if ev.Dump && s.firstDump == 0 {
		s.firstDump = s.seq
	}
	if ev.Type == event.Sync {
		ev.Sync.FirstSeq = s.firstDump
		if ev.Sync.FirstSeq == 0 {
			ev.Sync.FirstSeq = s.seq // an empty dump
		}
		s.firstDump = 0
	}
	data, err := s.enc.Append(s.data[:0], ev)
	if err != nil {
		s.publishFailed(ev, fmt.Errorf("encode: %w", err))
		return
	}
	s.data = data
	s.subject = s.subj.Append(s.subject[:0], ev)
	s.msg.Subject = string(s.subject)
	s.msg.Data = data
	if err := s.nc.PublishMsg(&s.msg); err != nil {
		s.publishFailed(ev, err)
		return
	}
	s.published.Add(1)
	if s.failing > 0 {
		s.log.Info("publishing again", "lost", s.failing)
		s.failing = 0
	}
}

// publishFailed counts a lost message; the first of a run of failures is
// logged as an error, the rest at debug level.
func (s *NATS) publishFailed(ev *event.Event, err error) {
	s.errs.Add(1)
	level := slog.LevelDebug
	if s.failing == 0 {
		level = slog.LevelError
	}
	s.failing++
	s.log.Log(context.Background(), level, "publish failed: message lost (consumers see a gap in seq)",
		"type", ev.Type.String(), "seq", ev.Seq, "error", err)
}

// Stats returns the sink's counters.
func (s *NATS) Stats() Stats {
	return Stats{
		Published:     s.published.Load(),
		PublishErrors: s.errs.Load(),
		Reconnects:    s.nc.Stats().Reconnects,
	}
}

// Flush waits until the server has received everything published so far.
func (s *NATS) Flush(ctx context.Context) error {
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("sink: flush: %w", err)
	}
	return nil
}

// Close drains the connection: everything published so far is sent before
// the connection closes. It waits for that until ctx is done, then closes
// the connection at once.
func (s *NATS) Close(ctx context.Context) error {
	if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.nc.Close()
		return fmt.Errorf("sink: drain: %w", err)
	}
	select {
	case <-s.closed:
		return nil
	case <-ctx.Done():
		s.nc.Close()
		return fmt.Errorf("sink: drain: %w", ctx.Err())
	}
}
