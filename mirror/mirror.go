// Package mirror keeps a live, concurrency-safe copy of the links and
// addresses that nlbridge publishes for every host of a fleet.
//
// A Mirror reads the state bucket when it exists: the current values, then
// every change, as nats.go's jetstream KeyValue watchers deliver them. It
// falls back to the event stream otherwise, and then repairs what it
// missed the way the README's Guarantees section tells consumers to: per
// host it tracks boot and seq, and on a new boot, a gap, or the first
// message of a host it asks that host for a dump, applies everything up to
// the reply's last_seq and drops what no message of the dump mentioned.
//
// Snapshot and Host return copies and never wait for NATS. Changes reach
// the application through a callback (WithChanges) that a goroutine owned
// by the Mirror calls; the NATS client's delivery goroutines only mark
// what changed, so a slow callback never blocks them and never makes a
// queue grow: it sees the current state of what changed since its last
// call, coalesced.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/event"
)

// Option configures a Mirror.
type Option func(*options)

type options struct {
	prefix   string       // events: <prefix>.<host>.…
	control  string       // dump requests: <control>.<host>.dump
	bucket   string       // state bucket, "" for the stream only
	hosts    string       // glob of host names, "" for all
	onChange func(Change) // nil: no changes are tracked
	log      *slog.Logger
	// fleetWait is how long a mirror from the stream waits for the replies
	// of its fleet-wide dump request before asking hosts one by one.
	fleetWait time.Duration
	// requestTimeout bounds one dump request.
	requestTimeout time.Duration
}

// WithPrefix sets the subject prefix nlbridge publishes events under
// (subjects.prefix); the default is "netlink".
func WithPrefix(prefix string) Option { return func(o *options) { o.prefix = prefix } }

// WithControl sets the prefix of nlbridge's dump requests
// (subjects.control); the default is "nlbridge".
func WithControl(control string) Option { return func(o *options) { o.control = control } }

// WithBucket names the state bucket (kv.bucket); the default is "netlink".
// An empty name, or a bucket that does not exist when New runs, makes the
// Mirror read the event stream instead.
func WithBucket(bucket string) Option { return func(o *options) { o.bucket = bucket } }

// WithHosts restricts the Mirror to the hosts whose names match glob, as
// path.Match reads it ("web-*"). The default is every host.
func WithHosts(glob string) Option { return func(o *options) { o.hosts = glob } }

// WithChanges has the Mirror call f with every change, one at a time, from
// a goroutine of its own. Changes are coalesced: f sees, for each object
// that changed since its previous call, how its current state differs from
// what f was last told, so a slow f loses nothing and queues nothing.
// From the bucket, changes wait while the Mirror's watcher lags behind it
// (a second at most), so that f is told a renamed link or address as
// changed, not removed and added again. f may call Snapshot and Host, but
// not Close.
func WithChanges(f func(Change)) Option { return func(o *options) { o.onChange = f } }

// WithFleetWait sets how long a Mirror that reads the event stream waits
// for the replies to its fleet-wide dump request before its first view can
// be Ready; hosts that answer later, or stay silent, are missed until
// their first event. The default is 2 s.
func WithFleetWait(d time.Duration) Option { return func(o *options) { o.fleetWait = d } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// ErrConfig is wrapped by New's errors for invalid options.
var ErrConfig = errors.New("mirror: invalid option")

func (o *options) valid() error {
	for _, p := range []struct{ name, v string }{{"prefix", o.prefix}, {"control", o.control}} {
		if p.v == "" || !validSubject(p.v) {
			return fmt.Errorf("%w: %s %q is not a subject without wildcards", ErrConfig, p.name, p.v)
		}
	}
	if _, err := path.Match(o.hosts, ""); err != nil {
		return fmt.Errorf("%w: hosts %q: %w", ErrConfig, o.hosts, err)
	}
	if o.fleetWait <= 0 {
		return fmt.Errorf("%w: fleet wait %v is not positive", ErrConfig, o.fleetWait)
	}
	return nil
}

// validSubject reports whether s is a subject of non-empty tokens without
// wildcards or whitespace.
func validSubject(s string) bool {
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '*' || c == '>' || c <= ' ' || c == '.' && prev == '.' {
			return false
		}
		prev = c
	}
	return prev != '.'
}

// AddrKey identifies an address: its interface index and its id, as the
// event schema defines them.
type AddrKey struct {
	Index uint32
	ID    string
}

// Host is the state of one host as the Mirror holds it.
type Host struct {
	Name string
	// Boot is the id of the nlbridge run whose state this is: from the
	// presence key, or, in bucket mode when no presence was seen (a host
	// gone before the Mirror started), from the first value read.
	Boot string
	// Version, Started and LastSeen come from the host's presence key
	// (bucket mode only): nlbridge's version, when it started, and when
	// the presence was last written.
	Version  string
	Started  time.Time
	LastSeen time.Time
	// Gone is true once the host's presence expired or was deleted (bucket
	// mode), or before any presence was seen. Its last state is kept.
	Gone bool
	// GoneSince is when the host's presence expired or was deleted, as
	// the bucket dates the deletion marker (bucket mode), also when that
	// happened before the Mirror started. It is zero while the host is
	// present, and when no deletion of its presence was seen.
	GoneSince time.Time
	// Synced is true when the state is complete: the bucket's initial view
	// has been read, or a dump has repaired the host and no message was
	// missed since.
	Synced bool
	Links  map[uint32]event.Link
	Addrs  map[AddrKey]event.Addr
}

// Mirror holds the state of every matching host. Its methods are safe for
// concurrent use.
type Mirror struct {
	nc     *nats.Conn
	opts   options
	log    *slog.Logger
	bucket bool // reading the state bucket, not the stream

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the Mirror
	wake   chan struct{}  // the dirty set is not empty
	ready  chan struct{}  // closed when the first full view is complete

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	hosts     map[string]*host
	dirty     map[dirtyKey]struct{}   // what changed since the callback's last view
	delivered map[string]*hostView    // what the callback was told
	readyDone bool                    // ready is closed
	lagging   bool                    // the bucket's watcher is behind: changes wait (bucket.go)
	stream    *streamState            // nil in bucket mode
	watcher   jetstream.KeyWatcher    // nil in stream mode
	subs      []*nats.Subscription    // stream mode
	glob      func(string) bool       // host filter
	names     map[string]hostNameHint // escaped token → host name, stream mode
}

// hostNameHint caches the unescaped name of a host token and whether it
// matches the filter.
type hostNameHint struct {
	name string
	ok   bool
}

// New starts a Mirror on nc. It reads the state bucket when there is one,
// and the event stream otherwise. It returns once its subscriptions are in
// place; Ready says when the first full view is complete.
func New(nc *nats.Conn, opts ...Option) (*Mirror, error) {
	o := options{
		prefix: "netlink", control: "nlbridge", bucket: "netlink",
		fleetWait: 2 * time.Second, requestTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.valid(); err != nil {
		return nil, err
	}
	m := newMirror(o)
	m.nc = nc
	if o.bucket != "" {
		kv, err := m.openBucket()
		if err != nil {
			m.cancel()
			return nil, err
		}
		if kv != nil {
			if err := m.startBucket(kv); err != nil {
				m.cancel()
				return nil, err
			}
			m.startDelivery()
			return m, nil
		}
	}
	if err := m.startStream(); err != nil {
		m.cancel()
		return nil, err
	}
	m.startDelivery()
	return m, nil
}

// newMirror builds a Mirror that is not connected to anything yet.
func newMirror(o options) *Mirror {
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		opts: o, log: o.log.With("component", "mirror"),
		ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), ready: make(chan struct{}),
		hosts: map[string]*host{}, dirty: map[dirtyKey]struct{}{}, delivered: map[string]*hostView{},
		names: map[string]hostNameHint{},
	}
	m.glob = func(string) bool { return true }
	if o.hosts != "" {
		m.glob = func(name string) bool { ok, _ := path.Match(o.hosts, name); return ok }
	}
	return m
}

// openBucket returns the state bucket, or nil when there is none to read.
func (m *Mirror) openBucket() (jetstream.KeyValue, error) {
	js, err := jetstream.New(m.nc)
	if err != nil {
		return nil, fmt.Errorf("mirror: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, m.opts.bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		m.log.Info("no state bucket: reading the event stream", "bucket", m.opts.bucket, "reason", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("mirror: open bucket %s: %w", m.opts.bucket, err)
	}
	return kv, nil
}

// FromBucket reports whether the Mirror reads the state bucket rather than
// the event stream.
func (m *Mirror) FromBucket() bool { return m.bucket }

// Ready is closed once the first full view is complete: the bucket's
// current values are read, or, from the stream, every host that answered
// the fleet-wide dump request (or showed up meanwhile) is repaired.
func (m *Mirror) Ready() <-chan struct{} { return m.ready }

// Snapshot returns a copy of every host's state, by host name.
func (m *Mirror) Snapshot() map[string]Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Host, len(m.hosts))
	for name, h := range m.hosts {
		out[name] = h.copy()
	}
	return out
}

// Host returns a copy of one host's state.
func (m *Mirror) Host(name string) (Host, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[name]
	if !ok {
		return Host{}, false
	}
	return h.copy(), true
}

// Close stops the Mirror: it unsubscribes, stops watching, and waits for
// its goroutines, including a callback in progress. It is idempotent.
func (m *Mirror) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.mu.Lock()
		subs, w := m.subs, m.watcher
		m.mu.Unlock()
		var errs []error
		for _, s := range subs {
			if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, err)
			}
		}
		if w != nil {
			// Stop deletes the watcher's consumer, which the server may
			// have removed already (an ordered consumer that missed its
			// heartbeats is replaced): that is no failure.
			if err := w.Stop(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) &&
				!errors.Is(err, nats.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, err)
			}
		}
		m.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			m.closeErr = fmt.Errorf("mirror: close: %w", err)
		}
	})
	return m.closeErr
}

// setReady closes ready once. Callers hold mu.
func (m *Mirror) setReady() {
	if !m.readyDone {
		m.readyDone = true
		close(m.ready)
	}
}

// host is the state of one host.
type host struct {
	name     string
	links    map[uint32]event.Link
	addrs    map[AddrKey]event.Addr
	present  bool // not gone
	boot     string
	version  string
	started  time.Time
	lastSeen time.Time
	gone     time.Time // when the presence was deleted, zero while present
	synced   bool

	repair *repairState // stream mode
	keys   *keyIndex    // bucket mode
}

func newHost(name string) *host {
	return &host{name: name, links: map[uint32]event.Link{}, addrs: map[AddrKey]event.Addr{}}
}

func (h *host) copy() Host {
	c := Host{
		Name: h.name, Boot: h.boot, Version: h.version, Started: h.started, LastSeen: h.lastSeen,
		Gone: !h.present, GoneSince: h.gone, Synced: h.synced,
		Links: make(map[uint32]event.Link, len(h.links)), Addrs: make(map[AddrKey]event.Addr, len(h.addrs)),
	}
	for i, l := range h.links {
		l.MAC = slices.Clone(l.MAC)
		c.Links[i] = l
	}
	maps.Copy(c.Addrs, h.addrs)
	return c
}

// host returns the state of name, made if needed. Callers hold mu.
func (m *Mirror) host(name string) *host {
	h := m.hosts[name]
	if h == nil {
		h = newHost(name)
		m.hosts[name] = h
		m.mark(dirtyKey{host: name})
	}
	return h
}

// upsertLink and the functions below change a host's state and mark what
// they change. Callers hold mu.
func (m *Mirror) upsertLink(h *host, l event.Link) {
	h.links[l.Index] = l
	m.mark(dirtyKey{host: h.name, kind: kindLink, index: l.Index})
}

func (m *Mirror) removeLink(h *host, index uint32) {
	if _, ok := h.links[index]; ok {
		delete(h.links, index)
		m.mark(dirtyKey{host: h.name, kind: kindLink, index: index})
	}
	// A deleted link's addresses go with it.
	for k := range h.addrs {
		if k.Index == index {
			m.removeAddr(h, k)
		}
	}
}

func (m *Mirror) upsertAddr(h *host, a event.Addr) {
	k := AddrKey{a.Index, a.ID()}
	h.addrs[k] = a
	m.mark(dirtyKey{host: h.name, kind: kindAddr, index: k.Index, id: k.ID})
}

func (m *Mirror) removeAddr(h *host, k AddrKey) {
	if _, ok := h.addrs[k]; ok {
		delete(h.addrs, k)
		m.mark(dirtyKey{host: h.name, kind: kindAddr, index: k.Index, id: k.ID})
	}
}

func (m *Mirror) setPresent(h *host, present bool) {
	if h.present != present {
		h.present = present
		m.mark(dirtyKey{host: h.name})
	}
}
