// Package sink publishes events to NATS: it stamps each event with the
// host, the boot id and a sequence number, encodes it with the injected
// Encoder and publishes it on its subject. It also answers dump requests
// (see Service) and can start an embedded NATS server (see StartEmbedded).
package sink

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/filter"
	"github.com/nlbridge/nlbridge/internal/natsconn"
	"github.com/nlbridge/nlbridge/state"
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
	Embedded EmbeddedServer
	// Name is the connection name that servers show (nats server report
	// connections).
	Name string
	// Host names this machine in subjects and payloads.
	Host     string
	Subjects Subjects
	Encoder  Encoder
	// Filter drops the events it rejects before the state table, so they
	// are never published; nil keeps all.
	Filter *filter.Filter
	// Logger receives the sink's logs; nil discards them.
	Logger *slog.Logger
	// Auth and TLS secure the connection to Servers. They must be valid
	// as config.Config.Validate checks them; Connect checks only the files
	// they name.
	Auth Auth
	TLS  TLS
	// KV configures the state bucket; a zero KV turns it off.
	KV KVConfig
}

// NATS publishes events to NATS. It keeps a state.Table of what it
// published: a change that changes nothing is not published again, a dump
// that nlbridge made by itself (resync) publishes only differences and
// deletions, and what could not be published while NATS was unreachable is
// published once, as one message per object, when it is reachable again.
// NATS is safe for concurrent use.
type NATS struct {
	nc     *nats.Conn
	enc    Encoder
	subj   Subjects
	host   string
	boot   string
	log    *slog.Logger
	filter *filter.Filter
	closed chan struct{} // closed by nats.go's closed callback

	mu       sync.Mutex
	table    *state.Table
	seq      uint64 // the last seq published
	dumping  bool   // between a Begin and its SYNC
	dump     event.SyncInfo
	firstSeq uint64        // seq of the current dump's first message, or 0
	data     []byte        // encoded payload, reused
	subject  []byte        // subject, reused
	msgID    []byte        // Nats-Msg-Id, reused
	msg      nats.Msg      // reused: PublishMsg copies what it sends
	failing  uint64        // publish errors since the last success
	pending  bool          // something was not published: reconcile on reconnect
	dumpLost bool          // a message since the dump's Begin was not published
	out      []event.Event // what the table says to publish, reused

	// What the server has not confirmed yet (see confirm and redo).
	confirmed uint64        // the last seq the server confirmed, or that redo handled
	conn      uint64        // the connection (nats.go's Reconnects) that seqs after confirmed went to
	sent      []sentMsg     // NEWLINKs and NEWADDRs published after confirmed, by seq; reused
	sentDels  []event.Event // DELLINKs and DELADDRs published after confirmed, by seq; reused
	kick      chan struct{} // wakes the confirmer when something follows confirmed
	stop      func()        // stops the confirmer
	confirmer chan struct{} // closed when the confirmer has returned

	attempts   atomic.Uint64 // failed connection attempts in a row
	published  atomic.Uint64
	errs       atomic.Uint64
	unchanged  atomic.Uint64
	reconciled atomic.Uint64
	filtered   atomic.Uint64
	held       atomic.Uint64

	kv *kvWriter // the state bucket's writer (kv.go); nil when it is off
}

// Stats are the sink's counters.
type Stats struct {
	Published     uint64 // messages handed to the NATS client
	PublishErrors uint64 // messages the NATS client refused, kept for reconciling
	Unchanged     uint64 // kernel notifications that changed nothing published, dropped
	Reconciled    uint64 // messages published to catch up after an outage
	Reconnects    uint64 // reconnections to a server
	Filtered      uint64 // events the filter dropped
	HeldBack      uint64 // NEWADDRs held back until their link's NEWLINK (see state.Table.AddrWaits)
}

// NewBoot returns a random id for one run of nlbridge.
func NewBoot() string {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Connect connects to NATS. It does not wait for a server: nlbridge starts
// in any order with its servers, keeps trying forever with a capped
// backoff, and keeps what it could not publish meanwhile in its state
// table, to publish after connecting (see reconcile). It fails only on settings that can never
// work, such as a malformed URL or an unreadable or malformed key,
// certificate or credentials file. A server that refuses the credentials
// is retried like an unreachable one: they may be fixed on the server.
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
		msg:    nats.Msg{Header: nats.Header{"Content-Type": {cfg.Encoder.ContentType()}, "Nats-Msg-Id": {""}}},
		table:  state.New(scope(cfg.Filter)),
		filter: cfg.Filter,
		kick:   make(chan struct{}, 1),
	}
	if cfg.KV.Bucket != "" {
		s.kv = newKVWriter(cfg.KV, cfg.Host, log)
	}
	security, err := securityOptions(cfg.Auth, cfg.TLS)
	if err != nil {
		return nil, err
	}
	auth, secure := cfg.Auth.Method(), cfg.TLS.Enabled()
	connectFailed := func(nc *nats.Conn, err error) {
		// The first failure of a run says why (refused, TLS, auth);
		// the retries that follow would only repeat it.
		level := slog.LevelDebug
		if s.attempts.Add(1) == 1 {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "cannot connect to NATS; retrying with backoff", "error", err,
			"auth", auth, "tls", secure)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// nats.go would give up for good on a second authorization error.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
		// No reconnect buffer: while disconnected publishing fails at once,
		// and the state table, not a backlog, keeps what to catch up on.
		nats.ReconnectBufSize(-1),
		// A server that stops answering is found in seconds (conn.go).
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) {
			s.attempts.Store(0)
			log.Info("connected to NATS", "server", config.RedactURL(nc.ConnectedUrl()), "auth", auth, "tls", secure)
			s.reconcile()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS, reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.attempts.Store(0)
			log.Info("reconnected to NATS", "server", config.RedactURL(nc.ConnectedUrl()))
			s.reconcile()
		}),
		nats.ReconnectErrHandler(connectFailed),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if sub == nil && isAuthError(err) {
				connectFailed(nc, err) // a server refusing each reconnection
				return
			}
			log.Error("NATS error", "error", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
	}
	opts = append(opts, security...)
	url := strings.Join(cfg.Servers, ",")
	if len(cfg.Servers) == 0 {
		if cfg.Embedded == nil {
			return nil, errors.New("sink: no NATS servers and no embedded server")
		}
		opts = append(opts, nats.InProcessServer(cfg.Embedded), cfg.Embedded.clientAuth())
		auth = "nkey"
		url = cfg.Embedded.ClientURL() // for the logs; the connection is in-process
	} else {
		opts = append(opts, nats.SetCustomDialer(natsconn.NewDialer(nats.DefaultTimeout, tcpUserTimeout)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("sink: connect to NATS %s: %w", config.RedactURL(url), config.RedactError(err))
	}
	s.mu.Lock()
	s.nc = nc
	s.conn = nc.Stats().Reconnects
	s.mu.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.confirmer = stop, make(chan struct{})
	go s.confirm(ctx)
	if s.kv != nil {
		kctx, stop := context.WithCancel(context.Background())
		s.kv.stop = stop
		go s.kvRun(kctx)
	}
	if !nc.IsConnected() {
		log.Warn("no NATS server reachable yet: keeping state and retrying", "servers", config.RedactURL(url))
	}
	// The first connection may have come before s.nc was set.
	s.reconcile()
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

// Handle publishes what ev changes for consumers, stamped with the host,
// the boot id and the next seq: usually ev itself; nothing when consumers
// hold it already; a DELLINK first when the kernel reused the index of a
// link consumers still hold; a DELLINK when a link leaves the filter's
// scope, and the link with its addresses when it enters it (see
// state.Table.Apply). Begin opens a dump and is not published (a second
// Begin for the same dump restarts it: the source reads it again); a SYNC
// ends it: objects that the dump did not show are published as deleted
// before it. On return, a SYNC's Seq is the seq it was published with, or
// 0 when it or any message since its Begin did not reach the NATS client.
// Errors are counted and logged, never returned: the source must go on
// reading the kernel, and what was not published is published after the
// next reconnect.
func (s *NATS) Handle(ev *event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Type {
	case event.Begin:
		if !s.dumping || s.dump.Reason != ev.Sync.Reason || s.dump.Interface != ev.Sync.Interface {
			s.dumping, s.dump, s.firstSeq, s.dumpLost = true, ev.Sync, 0, false
		}
		// A Begin of the dump in progress is a retry (the kernel
		// interrupted it): only the last attempt's objects count, and
		// the range still starts at the first attempt's first message.
		s.dump.Links, s.dump.Addrs = 0, 0
		s.table.BeginDump()
		return
	case event.Sync:
		lost := false
		if s.dumping {
			s.out = s.table.Vanished(s.dump.Interface, s.out[:0])
			s.publishOut(ev)
			if s.kv != nil && s.dump.Reason == event.ReasonStartup {
				s.kvStartup(ev) // the deletions of what vanished while nlbridge was down
			}
			ev.Sync.Links, ev.Sync.Addrs = s.dump.Links, s.dump.Addrs
			lost = s.dumpLost
		}
		s.dumping = false
		if !s.publish(ev) || lost {
			ev.Seq = 0
		}
		return
	}
	if !ev.Type.IsLink() && !ev.Type.IsAddr() {
		s.publish(ev) // not an event the source makes: the encoder says what is wrong
		return
	}
	inScope := false
	if ev.Dump && s.dumping {
		name := ev.Link.Name
		if ev.Type.IsAddr() {
			name = ev.Addr.Ifname
		}
		inScope = s.dump.Interface == "" || name == s.dump.Interface
	}
	var visible bool
	s.out, visible = s.table.Apply(ev, inScope && s.dump.Reason.Full(), s.out[:0])
	switch {
	case !visible && ev.Type.IsAddr() && s.table.AddrWaits(&ev.Addr):
		// Not the filter's doing: the address waits for its link (a
		// DELADDR forgets one that waited), and is not counted in a dump.
		if ev.Type == event.NewAddr {
			s.held.Add(1)
		}
	case !visible:
		s.filtered.Add(1) // never published, never counted in a dump
	case inScope && ev.Type.IsLink():
		s.dump.Links++
	case inScope:
		s.dump.Addrs++
	case len(s.out) == 0 && !ev.Type.IsDel():
		s.unchanged.Add(1) // the consumers hold this already
	}
	s.publishOut(ev)
}

// publishOut publishes the messages in s.out, timed as ev, in order, and
// records each in the table. After the first that fails, the rest are
// recorded as not published without trying: they must not overtake it (a
// NEWLINK must not reach consumers without the DELLINK before it). The
// filter's event types leave some out, recorded as published. s.mu is
// held.
func (s *NATS) publishOut(ev *event.Event) {
	failed := false
	for i := range s.out {
		m := &s.out[i]
		m.Time = ev.Time
		if !s.filter.AllowType(m.Type) {
			s.filtered.Add(1)
			s.table.Published(m, true) // consumers asked not to be told
			continue
		}
		ok := !failed && s.publish(m)
		if !ok {
			failed, s.pending = true, true
			if s.dumping {
				s.dumpLost = true
			}
		}
		s.table.Published(m, ok)
	}
}

// publish stamps, encodes and publishes ev, and reports whether the NATS
// client took it. A seq is used up only by a message that was taken, so
// that consumers see no gap for what nlbridge publishes later instead.
// s.mu is held.
func (s *NATS) publish(ev *event.Event) bool {
	ev.Host, ev.Boot, ev.Seq = s.host, s.boot, s.seq+1
	ok := s.send(ev)
	if !ok {
		ev.Seq = 0 // not used up: the next message takes it
	}
	return ok
}

// send is publish without the seq bookkeeping on failure.
func (s *NATS) send(ev *event.Event) bool {
	if ev.Type == event.Sync {
		ev.Sync.FirstSeq = cmp.Or(s.firstSeq, ev.Seq)
	}
	data, err := s.enc.Append(s.data[:0], ev)
	if err != nil {
		s.publishFailed(ev, fmt.Errorf("encode: %w", err))
		return false
	}
	s.data = data
	s.subject = s.subj.Append(s.subject[:0], ev)
	s.msgID = append(append(append(append(s.msgID[:0], s.host...), '.'), s.boot...), '.')
	s.msgID = strconv.AppendUint(s.msgID, ev.Seq, 10)
	if string(s.subject) != s.msg.Subject {
		// A link that changes again and again keeps its subject: the
		// comparison does not allocate, the conversion would.
		s.msg.Subject = string(s.subject)
	}
	s.msg.Header["Nats-Msg-Id"][0] = string(s.msgID)
	s.msg.Data = data
	if s.nc == nil {
		s.publishFailed(ev, nats.ErrConnectionClosed) // still connecting
		return false
	}
	if err := s.nc.PublishMsg(&s.msg); err != nil {
		s.publishFailed(ev, err)
		return false
	}
	s.seq++
	s.sentOne(ev)
	if s.kv != nil {
		s.kvSent(ev, data)
	}
	if s.dumping && s.firstSeq == 0 && ev.Type != event.Sync {
		s.firstSeq = s.seq
	}
	s.published.Add(1)
	if s.failing > 0 {
		s.log.Info("publishing again", "failed", s.failing)
		s.failing = 0
	}
	return true
}

// publishFailed counts a message that did not reach NATS; the first of a
// run of failures is logged as an error, the rest at debug level. The
// state table keeps what it said, to publish after the next reconnect.
func (s *NATS) publishFailed(ev *event.Event, err error) {
	s.errs.Add(1)
	s.pending = true
	level := slog.LevelDebug
	if s.failing == 0 {
		level = slog.LevelError
	}
	s.failing++
	s.log.Log(context.Background(), level, "publish failed; the change is kept and published after reconnecting",
		"type", ev.Type.String(), "error", err)
}

// reconcile runs after every (re)connection: it publishes, as one message
// per object, what changed while nothing could be published, then a SYNC
// with reason "reconnect", so that consumers that missed messages converge
// and know it.
func (s *NATS) reconcile() {
	s.kv.wake() // the state bucket may be reachable again too
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
}

// reconcileLocked is reconcile with s.mu held.
func (s *NATS) reconcileLocked() {
	if s.nc == nil || !s.nc.IsConnected() {
		return
	}
	s.redo()
	dirty := s.table.Dirty()
	if len(dirty) == 0 && !s.pending {
		return // nothing was lost: the outage went unnoticed
	}
	// A dump may be in flight: keep its range apart from this one. Its
	// reply can no longer be trusted: messages of it may have been lost
	// with the connection.
	dumping, dumpFirst, dumpLost := s.dumping, s.firstSeq, s.dumpLost
	s.dumping, s.firstSeq, s.dumpLost = true, 0, false
	defer func() { s.dumping, s.firstSeq, s.dumpLost = dumping, dumpFirst, dumpLost || dumping }()
	now, before := time.Now(), s.published.Load()
	s.out = append(s.out[:0], dirty...)
	s.publishOut(&event.Event{Time: now})
	sent := int(s.published.Load() - before)
	links, addrs := s.table.Len()
	sync := event.Event{Type: event.Sync, Time: now, Sync: event.SyncInfo{
		Reason: event.ReasonReconnect, Links: links, Addrs: addrs}}
	if s.publish(&sync) && !s.dumpLost {
		s.pending = false
	}
	s.reconciled.Add(uint64(sent))
	s.log.Info("reconciled state after connecting to NATS", "published", sent, "pending", len(dirty)-sent,
		"links", links, "addrs", addrs)
}

// scope is the filter as the state table's scope.
func scope(f *filter.Filter) state.Scope {
	if f == nil {
		return nil
	}
	return f
}

// Stats returns the sink's counters.
func (s *NATS) Stats() Stats {
	return Stats{
		Published:     s.published.Load(),
		PublishErrors: s.errs.Load(),
		Unchanged:     s.unchanged.Load(),
		Reconciled:    s.reconciled.Load(),
		Reconnects:    s.nc.Stats().Reconnects,
		Filtered:      s.filtered.Load(),
		HeldBack:      s.held.Load(),
	}
}

// Flush waits until the server has received everything published so far.
func (s *NATS) Flush(ctx context.Context) error {
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("sink: flush: %w", err)
	}
	return nil
}

// UndeliveredError is the error Close returns when events may not have
// reached the server: changes that could not be published (the server was
// unreachable), and messages that the NATS client took but the server did
// not confirm before the connection closed.
type UndeliveredError struct {
	// Unpublished counts the objects (links and addresses, deletions
	// included) whose last change was never published.
	Unpublished int
	// Unconfirmed counts the messages published since the server last
	// confirmed what it received; some of them may have reached it.
	Unconfirmed uint64
	// Err says why the drain did not complete, or is nil.
	Err error
}

// Undelivered returns how many events were not delivered, at most.
func (e *UndeliveredError) Undelivered() uint64 { return uint64(e.Unpublished) + e.Unconfirmed }

func (e *UndeliveredError) Error() string {
	msg := fmt.Sprintf("sink: %d events not delivered to NATS (%d changes never published, %d messages not confirmed by the server)",
		e.Undelivered(), e.Unpublished, e.Unconfirmed)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *UndeliveredError) Unwrap() error { return e.Err }

// Close stops confirming, has the server confirm what was published, and
// drains the connection: everything published so far is sent before the
// connection closes. It waits for that until ctx is done, then closes the
// connection at once. It returns an *UndeliveredError when some events may
// not have reached the server, and nil when the server confirmed them all,
// or else the error that stopped the drain (nothing was lost to it). Call
// Close once nothing calls Handle any more; it may be called more than
// once.
func (s *NATS) Close(ctx context.Context) error {
	if s.kv != nil {
		s.kv.stop() // writes what it can, then deletes the presence key
		<-s.kv.done
	}
	s.stop()
	<-s.confirmer
	// A completed drain flushes too, but nats.go closes the connection
	// whether that flush succeeded or not; a confirmation says. (While
	// reconnecting, a flush would only wait for ctx.)
	if s.nc.IsConnected() {
		s.confirmOnce(ctx)
	}
	err := s.drain(ctx)
	s.mu.Lock()
	u := &UndeliveredError{Unpublished: len(s.table.Dirty()), Unconfirmed: s.seq - s.confirmed, Err: err}
	s.mu.Unlock()
	if u.Undelivered() > 0 {
		return u
	}
	return err
}

// drain drains the connection and waits until it is closed or ctx is done.
func (s *NATS) drain(ctx context.Context) error {
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

// EmbeddedServer is a NATS server running inside nlbridge, as StartEmbedded
// starts it (a *server.Server of nats-server), which the sink reaches
// in-process, without a socket.
type EmbeddedServer interface {
	nats.InProcessConnProvider
	ClientURL() string
	Shutdown()
	WaitForShutdown()
	// clientAuth authenticates the sink as the one user that may publish
	// events.
	clientAuth() nats.Option
}
