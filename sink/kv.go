package sink

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// The state bucket is a JetStream key-value bucket that holds, for each
// host, what a consumer applying the host's event stream holds:
//
//	<host>.link.<ifname>                the link's last NEWLINK payload
//	<host>.addr.<ifname>.<address>      the address's last NEWADDR payload
//	<host>.presence                     {host, boot, version, started, seq}, with a TTL
//
// Every token is escaped as subject tokens are (EscapeToken): <host> and
// <ifname> are the names, <address> is event.Addr.ID, such as
// "10=2E0=2E0=2E1=2F24" for 10.0.0.1/24 or "fe80=3A=3A1" for fe80::1. An
// address is named by the name of its link as consumers hold it, and a link
// or address whose name nlbridge never learned by "_<index>".
//
// The sink marks a key when it publishes a message that changes it, under
// its lock, and the writer goroutine writes the marks in the order they
// were made: a JetStream stream stores the asynchronous publishes of one
// connection in the order they were sent, so a watcher of the bucket sees
// the keys change in the order the events happened. That order matters
// across keys: a rename writes the new keys before it deletes the old
// ones, so that a watcher sees each object move and never sees it deleted;
// a new link's key comes before its addresses' keys, and a deleted link's
// addresses go before (or with) the link's key. The marks stay bounded by
// the number of objects: a key's new value replaces a pending value of the
// same object in place, a deletion of a key whose deletion is pending is
// dropped, and when the marks still grow past a few times the number of
// keys they name (the bucket unreachable under churn), they are compacted
// to the last mark of each key, the values first and then the deletions
// (see compact). What fails is marked again, in order, from the first
// write that failed. A DELLINK deletes every address key under the link's
// name (a purge of that prefix, listed from the bucket), so that a link's
// addresses need not be remembered after its deletion.

// KVConfig configures the state bucket.
type KVConfig struct {
	// Bucket names the JetStream key-value bucket; "" turns the state
	// bucket off.
	Bucket string
	// Replicas and Memory (memory storage rather than file) are used only
	// when nlbridge creates the bucket.
	Replicas int
	Memory   bool
	// PresenceTTL is how long the presence key lives unless refreshed; it
	// is refreshed every third of it.
	PresenceTTL time.Duration
	// Version is written in the presence key.
	Version string
	// AwaitStartup holds every write of a link or an address until the
	// startup dump's SYNC has read the bucket: set it when nlbridge dumps
	// at start, so that the read finds the last run's keys, not this
	// run's values already written over them (a link whose name now has
	// another index would otherwise never get its DELLINK).
	AwaitStartup bool
}

const (
	// kvTimeout bounds one write's acknowledgement, opening the bucket
	// and listing keys.
	kvTimeout = 5 * time.Second
	// kvReadTimeout bounds reading the host's keys at startup, which
	// holds up the startup dump's SYNC, and every event with it;
	// kvStartupOpen bounds opening the bucket then, when the writer has
	// not opened it yet: a bucket that does not answer that soon is read
	// later, by the writer.
	kvReadTimeout = 5 * time.Second
	kvStartupOpen = 2 * time.Second
	// kvLinger gathers the marks of a burst into one batch.
	kvLinger = 20 * time.Millisecond
	// kvChunk is how many writes are in flight at once.
	kvChunk = 512
	// kvRetryMin and kvRetryMax bound the backoff after a failure;
	// kvNoJetStream is the pause when the server has no JetStream.
	kvRetryMin    = 250 * time.Millisecond
	kvRetryMax    = 5 * time.Second
	kvNoJetStream = 30 * time.Second
)

// kvOp is one mark: a key's value, its deletion, or a purge of every key
// under a prefix.
type kvOp struct {
	key   string // the key, or the prefix of a purge
	data  []byte // the value; nil for a deletion or a purge
	index uint32 // the object a value holds: a link's index, an address's link's
	del   bool
	purge bool
	seq   uint64 // when it was marked, to order it with purges
}

// kvWriter is the state bucket's writer: its marks, guarded by the sink's
// mu, and the goroutine that writes them.
type kvWriter struct {
	cfg      KVConfig
	prefix   string // "<host>.": every key this host writes starts with it
	subj     string // "$KV.<bucket>.": a key's messages go to subj + key
	presence string // "<host>.presence"
	log      *slog.Logger
	started  time.Time

	// Guarded by NATS.mu.
	ops      []*kvOp          // the marks to write, in order
	last     map[string]*kvOp // key (or purge prefix, which ends with '.') → its last op in ops
	seq      uint64           // counts marks
	inflight int              // marks the writer is writing
	quiet    map[string]bool  // keys whose deletion startup reconciliation marked itself
	unread   bool             // stale keys are yet to be removed (the bucket was unreachable at startup)
	awaiting bool             // no mark is written before the startup read (KVConfig.AwaitStartup)
	buf      []byte           // addresses encoded again after a rename, reused

	kick chan struct{}      // wakes the writer
	stop context.CancelFunc // stops the writer
	done chan struct{}      // closed when the writer has returned

	openMu sync.Mutex // guards js, kv and ttl, which the startup read opens too
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	ttl    bool // the bucket takes per-message TTLs

	// Owned by the writer goroutine.
	noJS         bool      // warned that the server has no JetStream
	down         bool      // the last attempt failed, and that was logged
	claimed      bool      // presence written once (and another claim checked)
	tried        bool      // a presence write was sent, which shutdown deletes
	lastPresence time.Time // when presence was last written

	noJetStream atomic.Bool // the writer's last attempt found no JetStream

	writes   atomic.Uint64
	failures atomic.Uint64
	pending  atomic.Int64
	up       atomic.Bool
}

// KVStats are the state bucket's counters.
type KVStats struct {
	Enabled   bool   // a bucket is configured
	Writes    uint64 // keys written or deleted
	Failures  uint64 // writes that failed, to be tried again
	Pending   int64  // keys (and link purges) waiting to be written
	Reachable bool   // the last attempt to write reached the bucket
}

func newKVWriter(cfg KVConfig, host string, log *slog.Logger) *kvWriter {
	h := EscapeToken(host)
	return &kvWriter{
		cfg:      cfg,
		prefix:   h + ".",
		subj:     "$KV." + cfg.Bucket + ".",
		presence: h + ".presence",
		log:      log.With("bucket", cfg.Bucket),
		started:  time.Now(),
		last:     make(map[string]*kvOp),
		awaiting: cfg.AwaitStartup,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

// wake wakes the writer. w may be nil.
func (w *kvWriter) wake() {
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// appendName appends the token of a link name, or "_<index>".
func appendName(b []byte, name string, index uint32) []byte {
	if name == "" {
		return strconv.AppendUint(append(b, '_'), uint64(index), 10)
	}
	return appendToken(b, name)
}

func (w *kvWriter) linkKey(name string, index uint32) string {
	return string(appendName(append([]byte(w.prefix), "link."...), name, index))
}

// addrPrefix returns the prefix of the keys of the addresses of a link.
func (w *kvWriter) addrPrefix(name string, index uint32) string {
	return string(append(appendName(append([]byte(w.prefix), "addr."...), name, index), '.'))
}

func (w *kvWriter) addrKey(linkName string, a *event.Addr) string {
	b := appendName(append([]byte(w.prefix), "addr."...), linkName, a.Index)
	b = append(b, '.')
	var id [64]byte
	return string(appendToken(b, string(a.AppendID(id[:0]))))
}

// addrPrefixOf returns the addrPrefix that key is under, or "".
func (w *kvWriter) addrPrefixOf(key string) string {
	rest, ok := strings.CutPrefix(key, w.prefix+"addr.")
	if !ok {
		return ""
	}
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return ""
	}
	return key[:len(key)-len(rest)+i+1]
}

// kvCompactMin is how many marks more than twice the keys they name are
// let to pile up before they are compacted.
const kvCompactMin = 4096

// put marks key to be written with data, a value of the object index.
// NATS.mu is held.
func (w *kvWriter) put(key string, index uint32, data []byte) {
	if op := w.last[key]; op != nil && !op.del && op.index == index && !w.purgedSince(key, op.seq) {
		// A newer value of the same object: nothing in between depends
		// on the older one, which is dropped.
		op.data = append(op.data[:0], data...)
		return
	}
	w.add(&kvOp{key: key, data: append([]byte(nil), data...), index: index})
}

// del marks key to be deleted. NATS.mu is held.
func (w *kvWriter) del(key string) {
	if op := w.last[key]; op != nil && op.del {
		return // already to be deleted
	}
	w.add(&kvOp{key: key, del: true})
}

// purge marks every key under prefix to be deleted: keys marked before it
// are deleted too, keys marked after it are written after it. NATS.mu is
// held.
func (w *kvWriter) purge(prefix string) {
	w.add(&kvOp{key: prefix, purge: true})
}

// purgedSince reports whether the prefix of the address key key has a
// pending purge marked after seq. NATS.mu is held.
func (w *kvWriter) purgedSince(key string, seq uint64) bool {
	p := w.addrPrefixOf(key)
	if p == "" {
		return false
	}
	op := w.last[p]
	return op != nil && op.seq > seq
}

// add appends op to the marks. NATS.mu is held.
func (w *kvWriter) add(op *kvOp) {
	w.seq++
	op.seq = w.seq
	w.ops = append(w.ops, op)
	w.last[op.key] = op
	if len(w.ops) > 2*len(w.last)+kvCompactMin {
		w.compact()
	}
	w.count()
}

// compact keeps the last mark of each key, and of each purge's prefix,
// dropping the values and deletions that a later purge takes: the marks
// shrink to the number of keys they name. It gives up the order across
// keys, which only a long outage under churn comes to: the values are
// written first, in order, then the deletions and purges, so that a
// watcher sees a renamed object at its new key before its old key's
// deletion (only names swapped among links can still show as a removal
// and an addition). NATS.mu is held.
func (w *kvWriter) compact() {
	ops := make([]*kvOp, 0, len(w.last))
	var dels []*kvOp
	for _, op := range w.ops {
		switch {
		case w.last[op.key] != op:
		case !op.purge && w.purgedSince(op.key, op.seq):
			delete(w.last, op.key) // the purge deletes it
		case op.del || op.purge:
			dels = append(dels, op)
		default:
			ops = append(ops, op)
		}
	}
	w.ops = append(ops, dels...)
}

func (w *kvWriter) count() { w.pending.Store(int64(len(w.ops) + w.inflight)) }

// kvSent marks the keys that ev, just published with payload data,
// changes. s.mu is held.
func (s *NATS) kvSent(ev *event.Event, data []byte) {
	w := s.kv
	switch ev.Type {
	case event.NewLink:
		l := &ev.Link
		if old, ok := s.table.PublishedLink(l.Index); ok && old.Name != l.Name {
			s.kvRename(&old, ev, data)
			break
		}
		w.put(w.linkKey(l.Name, l.Index), l.Index, data)
	case event.DelLink:
		l := &ev.Link
		key := w.linkKey(l.Name, l.Index)
		if w.quiet[key] {
			return
		}
		// The addresses first, as the kernel deletes them.
		w.purge(w.addrPrefix(l.Name, l.Index))
		w.del(key)
	case event.NewAddr:
		w.put(w.addrKey(s.linkName(&ev.Addr), &ev.Addr), ev.Addr.Index, data)
	case event.DelAddr:
		key := w.addrKey(s.linkName(&ev.Addr), &ev.Addr)
		if w.quiet[key] {
			return
		}
		w.del(key)
	default:
		return
	}
	w.wake()
}

// linkName returns the name of a's link as consumers hold it, or a's
// Ifname when they hold no link with its index. s.mu is held.
func (s *NATS) linkName(a *event.Addr) string {
	if l, ok := s.table.PublishedLink(a.Index); ok {
		return l.Name
	}
	return a.Ifname
}

// kvRename moves the keys of a link that ev, published as data, renames,
// whose old value consumers hold: the link's key, and its addresses',
// each written again as a NEWADDR with the new name, stamped as ev. The
// new keys are written before the old ones are deleted, the link's before
// its addresses', so that a watcher sees the link and its addresses
// renamed, never removed. s.mu is held.
func (s *NATS) kvRename(old *event.Link, ev *event.Event, data []byte) {
	w := s.kv
	w.put(w.linkKey(ev.Link.Name, ev.Link.Index), ev.Link.Index, data)
	for a := range s.table.HeldAddrs(old.Index, false) {
		m := event.Event{Type: event.NewAddr, Time: ev.Time, Host: ev.Host, Boot: ev.Boot, Seq: ev.Seq, Addr: *a}
		m.Addr.Ifname = ev.Link.Name
		b, err := s.enc.Append(w.buf[:0], &m)
		if err != nil {
			continue // cannot happen for a value the encoder took before
		}
		w.buf = b
		w.put(w.addrKey(ev.Link.Name, a), a.Index, b)
	}
	for a := range s.table.HeldAddrs(old.Index, false) {
		w.del(w.addrKey(old.Name, a))
	}
	w.del(w.linkKey(old.Name, old.Index))
}

// kvOpen returns the bucket, creating it when it is missing.
func (s *NATS) kvOpen(ctx context.Context) (jetstream.JetStream, jetstream.KeyValue, error) {
	w := s.kv
	// The lock is not held across the requests: the startup dump's SYNC
	// opens the bucket too, with the sink's lock held, and must not wait
	// for the writer's attempt on a slow server on top of its own.
	w.openMu.Lock()
	if w.kv != nil {
		js, kv := w.js, w.kv
		w.openMu.Unlock()
		return js, kv, nil
	}
	if w.js == nil {
		js, err := jetstream.New(s.nc, jetstream.WithPublishAsyncTimeout(kvTimeout),
			jetstream.WithPublishAsyncMaxPending(2*kvChunk))
		if err != nil {
			w.openMu.Unlock()
			return nil, nil, err
		}
		w.js = js
	}
	js := w.js
	w.openMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, w.cfg.Bucket)
	created := false
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		storage := jetstream.FileStorage
		if w.cfg.Memory {
			storage = jetstream.MemoryStorage
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         w.cfg.Bucket,
			Description:    "nlbridge: links and addresses of each host, and their presence",
			History:        1,
			Replicas:       w.cfg.Replicas,
			Storage:        storage,
			LimitMarkerTTL: w.cfg.PresenceTTL,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, w.cfg.Bucket) // another host created it meanwhile
		} else if err == nil {
			created = true
			w.log.Info("created the state bucket", "replicas", w.cfg.Replicas, "storage", storage.String(),
				"limit_marker_ttl", w.cfg.PresenceTTL)
		}
	}
	if errors.Is(err, nats.ErrNoResponders) {
		err = fmt.Errorf("%w (%w)", jetstream.ErrJetStreamNotEnabled, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open bucket %s: %w", w.cfg.Bucket, err)
	}
	info, err := js.Stream(ctx, "KV_"+w.cfg.Bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("open bucket %s: %w", w.cfg.Bucket, err)
	}
	c := info.CachedInfo().Config
	if !created {
		s.kvCompare(&c)
	}
	w.openMu.Lock()
	defer w.openMu.Unlock()
	w.ttl = c.AllowMsgTTL
	w.kv = kv
	return js, kv, nil
}

// kvCompare warns when an existing bucket's settings differ from the
// configuration's; nlbridge never changes them.
func (s *NATS) kvCompare(c *jetstream.StreamConfig) {
	w := s.kv
	want := jetstream.FileStorage
	if w.cfg.Memory {
		want = jetstream.MemoryStorage
	}
	var diffs []any
	if c.Replicas != w.cfg.Replicas {
		diffs = append(diffs, "replicas", c.Replicas, "configured_replicas", w.cfg.Replicas)
	}
	if c.Storage != want {
		diffs = append(diffs, "storage", c.Storage.String(), "configured_storage", want.String())
	}
	if c.MaxMsgsPerSubject != 1 {
		diffs = append(diffs, "history", c.MaxMsgsPerSubject)
	}
	if !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL == 0 {
		diffs = append(diffs, "allow_msg_ttl", c.AllowMsgTTL, "limit_marker_ttl", c.SubjectDeleteMarkerTTL)
	}
	if len(diffs) > 0 {
		w.log.Warn("the existing state bucket differs from the configuration; using it as it is (without per-message TTLs, presence does not expire)",
			diffs...)
	}
}

// kvForget drops the bucket handle after a failure, so that the next
// attempt opens it again (it may have been deleted, or JetStream lost).
func (w *kvWriter) forget() {
	w.openMu.Lock()
	w.kv = nil
	w.openMu.Unlock()
}

// kvRun is the writer, started by Connect and stopped by Close.
func (s *NATS) kvRun(ctx context.Context) {
	w := s.kv
	defer close(w.done)
	retry := time.NewTimer(0)
	defer retry.Stop()
	refresh := time.NewTicker(w.cfg.PresenceTTL / 3)
	defer refresh.Stop()
	linger := time.NewTimer(kvLinger)
	defer linger.Stop()
	backoff := kvRetryMin
	for {
		select {
		case <-ctx.Done():
			s.kvShutdown()
			return
		case <-w.kick:
			linger.Reset(kvLinger)
			select {
			case <-ctx.Done():
				s.kvShutdown()
				return
			case <-linger.C:
			}
		case <-retry.C:
		case <-refresh.C:
		}
		err := s.kvStep(ctx)
		switch {
		case err == nil:
			backoff = kvRetryMin
			continue
		case noJetStream(err):
			retry.Reset(kvNoJetStream)
		default:
			retry.Reset(backoff)
			backoff = min(2*backoff, kvRetryMax)
		}
	}
}

// errNotConnected stops a step while NATS is unreachable; the reconnect
// wakes the writer.
var errNotConnected = errors.New("not connected to NATS")

// kvStep opens the bucket if needed, claims the host, removes stale keys
// after a startup that could not, writes what is marked and refreshes
// presence when due.
func (s *NATS) kvStep(ctx context.Context) error {
	w := s.kv
	if !s.nc.IsConnected() {
		w.up.Store(false)
		return errNotConnected
	}
	js, kv, err := s.kvOpen(ctx)
	if err == nil && !w.claimed {
		err = s.kvClaim(ctx, js, kv)
	}
	if err == nil {
		s.mu.Lock()
		unread := w.unread
		s.mu.Unlock()
		if unread {
			err = s.kvLateStartup(ctx, kv)
		}
	}
	if err == nil {
		err = s.kvFlush(ctx, js, kv)
	}
	if err == nil && time.Since(w.lastPresence) >= w.cfg.PresenceTTL/3 {
		err = s.kvPresence(ctx, js)
	}
	if err != nil {
		if ctx.Err() != nil {
			return err // shutting down: kvShutdown tries once more
		}
		s.kvFailed(err)
		return err
	}
	w.up.Store(true)
	w.noJetStream.Store(false)
	if w.down || w.noJS {
		w.down, w.noJS = false, false
		w.log.Info("state bucket reachable again: caught up")
	}
	return nil
}

// noJetStream reports whether err says that the server has no JetStream.
// kvOpen reports an API that nothing answers so; a write that nothing
// answers is a stream without a leader, for a while.
func noJetStream(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
}

// kvFailed logs the first failure of a run: once for a server without
// JetStream, once when the bucket becomes unreachable.
func (s *NATS) kvFailed(err error) {
	w := s.kv
	w.up.Store(false)
	w.forget()
	if noJetStream(err) {
		w.noJetStream.Store(true)
		if !w.noJS {
			w.noJS = true
			w.log.Warn("the NATS server has no JetStream: the state bucket is not written (events are published as usual); trying again every 30s",
				"error", err)
		}
		return
	}
	if !w.down {
		w.down = true
		w.log.Warn("state bucket unreachable: the changes are kept and written once it is reachable", "error", err,
			"pending", w.pending.Load())
		return
	}
	w.log.Debug("state bucket still unreachable", "error", err, "pending", w.pending.Load())
}

// kvFlush writes what is marked, in order. A purge lists the keys under
// its prefix and deletes them where it stands. The writes go out
// asynchronously, kvChunk at a time, which the stream stores in the order
// sent; when one fails, it and every mark after it are marked again, in
// order, before what was marked meanwhile, since the writes after it may
// have been stored before it is.
func (s *NATS) kvFlush(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) error {
	w := s.kv
	s.mu.Lock()
	batch := w.ops
	if len(batch) == 0 || w.awaiting {
		s.mu.Unlock()
		return nil
	}
	w.ops, w.last = nil, make(map[string]*kvOp)
	w.inflight = len(batch)
	s.mu.Unlock()

	purged := make(map[string]uint64) // prefix → seq of its last purge in the batch
	latest := make(map[string]uint64) // key → seq of its last mark in the batch
	for _, op := range batch {
		if op.purge {
			purged[op.key] = max(purged[op.key], op.seq)
		} else {
			latest[op.key] = max(latest[op.key], op.seq)
		}
	}
	type write struct {
		src    int // the index in batch of the mark it writes
		key    string
		data   []byte
		del    bool
		future jetstream.PubAckFuture
	}
	var writes []write
	stop := len(batch) // the first mark that is to be marked again
	var firstErr error
	for i, op := range batch {
		if op.purge {
			keys, err := listKeys(ctx, kv, op.key+">")
			if err != nil {
				stop, firstErr = i, fmt.Errorf("list %s>: %w", op.key, err)
				break
			}
			for _, k := range keys {
				if latest[k] < op.seq { // else written after the purge anyway
					writes = append(writes, write{src: i, key: k, del: true})
				}
			}
			continue
		}
		if p := w.addrPrefixOf(op.key); p != "" && purged[p] > op.seq {
			continue // the purge deletes it
		}
		writes = append(writes, write{src: i, key: op.key, data: op.data, del: op.del})
	}

	// Publish in chunks, and wait for each chunk's acknowledgements.
	for len(writes) > 0 {
		chunk := writes[:min(kvChunk, len(writes))]
		writes = writes[len(chunk):]
		failed := -1 // the first write of chunk that failed
		for i := range chunk {
			wr := &chunk[i]
			m := &nats.Msg{Subject: w.subj + wr.key, Data: wr.data}
			if wr.del {
				m.Header = nats.Header{"KV-Operation": {"DEL"}}
			}
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				// What follows must not overtake it.
				failed, firstErr = i, cmp.Or(firstErr, err)
				chunk = chunk[:i+1]
				break
			}
			wr.future = f
		}
		for i, wr := range chunk {
			var err error
			if wr.future == nil {
				continue // counted above
			}
			select {
			case <-wr.future.Ok():
			case err = <-wr.future.Err():
			case <-ctx.Done():
				err = ctx.Err()
			}
			if err == nil {
				w.writes.Add(1)
				continue
			}
			w.failures.Add(1)
			firstErr = cmp.Or(firstErr, err)
			if failed < 0 || i < failed {
				failed = i
			}
		}
		if failed >= 0 {
			stop = min(stop, chunk[failed].src)
			break
		}
	}

	// Mark again what failed and what follows it, before what was marked
	// meanwhile, which is newer.
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop < len(batch) {
		rest := batch[stop:]
		for _, op := range rest {
			if newer := w.last[op.key]; newer == nil || newer.seq < op.seq {
				w.last[op.key] = op
			}
		}
		w.ops = append(slices.Clip(rest), w.ops...)
		if len(w.ops) > 2*len(w.last)+kvCompactMin {
			w.compact()
		}
	}
	w.inflight = 0
	w.count()
	if firstErr != nil {
		return fmt.Errorf("write: %w", firstErr)
	}
	return nil
}

// listKeys returns the keys of kv that match filter.
func listKeys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	l, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

// presenceValue is the value of a host's presence key.
type presenceValue struct {
	Host    string    `json:"host"`
	Boot    string    `json:"boot"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Seq     uint64    `json:"seq"` // the last seq published when it was written
}

// kvClaim logs an error when another nlbridge's presence for this host
// is in the bucket, then writes this one's.
func (s *NATS) kvClaim(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) error {
	w := s.kv
	gctx, cancel := context.WithTimeout(ctx, kvTimeout)
	e, err := kv.Get(gctx, w.presence)
	cancel()
	switch {
	case err == nil:
		var p presenceValue
		if json.Unmarshal(e.Value(), &p) == nil && p.Boot != s.boot {
			w.log.Error("another nlbridge claims this host: two processes publish as the same host (set host differently, or stop one)",
				"host", s.host, "other_boot", p.Boot, "other_started", p.Started, "other_version", p.Version,
				"boot", s.boot)
		}
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
	default:
		return fmt.Errorf("read presence: %w", err)
	}
	if err := s.kvPresence(ctx, js); err != nil {
		return err
	}
	w.claimed = true
	return nil
}

// kvPresence writes this host's presence, with a TTL when the bucket
// takes them.
func (s *NATS) kvPresence(ctx context.Context, js jetstream.JetStream) error {
	w := s.kv
	s.mu.Lock()
	seq := s.seq
	s.mu.Unlock()
	data, err := json.Marshal(presenceValue{Host: s.host, Boot: s.boot, Version: w.cfg.Version, Started: w.started.UTC(), Seq: seq})
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: w.subj + w.presence, Data: data, Header: nats.Header{}}
	w.openMu.Lock()
	ttl := w.ttl
	w.openMu.Unlock()
	if ttl {
		m.Header.Set("Nats-TTL", strconv.Itoa(int(w.cfg.PresenceTTL/time.Second))+"s")
	}
	pctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	w.tried = true
	if _, err := js.PublishMsg(pctx, m); err != nil {
		w.failures.Add(1)
		return fmt.Errorf("write presence: %w", err)
	}
	w.writes.Add(1)
	w.lastPresence = time.Now()
	return nil
}

// kvShutdown runs when the sink closes: a last write of what is marked,
// then the presence key's deletion, each within a few seconds.
func (s *NATS) kvShutdown() {
	w := s.kv
	if !w.tried || !s.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	s.mu.Lock()
	w.awaiting = false // no startup read is coming: what this run marked is better written than lost
	s.mu.Unlock()
	js, kv, err := s.kvOpen(ctx)
	if err == nil {
		err = s.kvFlush(ctx, js, kv)
	}
	if err != nil {
		w.log.Warn("state bucket: some changes were not written before exiting", "error", err, "pending", w.pending.Load())
	}
	if kv != nil {
		if err := kv.Delete(ctx, w.presence); err != nil {
			w.log.Warn("state bucket: cannot delete the presence key; it expires", "error", err)
		}
	}
}

// kvStartup runs at the startup dump's SYNC, s.mu held: it removes from
// the bucket the keys of this host that the kernel no longer has, and
// publishes their deletions before the SYNC, as part of the dump. When the
// bucket cannot be read, the writer does it once it can.
func (s *NATS) kvStartup(ev *event.Event) {
	w := s.kv
	defer func() {
		w.awaiting = false // the dump's marks are written now, after the read
		w.wake()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), kvReadTimeout)
	defer cancel()
	var entries map[string][]byte
	err := errNotConnected
	switch {
	case s.nc == nil || !s.nc.IsConnected():
	case w.noJetStream.Load():
		err = jetstream.ErrJetStreamNotEnabled // as the writer found: no request while the events wait
	default:
		octx, ocancel := context.WithTimeout(ctx, kvStartupOpen)
		var kv jetstream.KeyValue
		_, kv, err = s.kvOpen(octx)
		ocancel()
		if err == nil {
			entries, err = s.kvRead(ctx, kv)
		}
	}
	if err != nil {
		w.unread = true
		w.log.Warn("cannot read the state bucket at startup: keys of objects deleted while nlbridge was down are removed once it is readable",
			"error", err)
		return
	}
	if s.kvStale(entries) > 0 {
		s.out = append(s.out[:0], s.table.Dirty()...)
		s.publishOut(ev)
	}
	w.quiet = nil // clear would keep its buckets, sized for every stale key, for good
}

// kvLateStartup is kvStartup for a bucket that became readable after the
// startup dump: the deletions are published as a reconcile, with their own
// SYNC.
func (s *NATS) kvLateStartup(ctx context.Context, kv jetstream.KeyValue) error {
	w := s.kv
	rctx, cancel := context.WithTimeout(ctx, kvReadTimeout)
	entries, err := s.kvRead(rctx, kv)
	cancel()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.unread = false
	if s.kvStale(entries) > 0 {
		s.pending = true
		s.reconcileLocked()
	}
	w.quiet = nil // clear would keep its buckets, sized for every stale key, for good
	return nil
}

// kvRead returns this host's link and address keys and their values.
func (s *NATS) kvRead(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	w := s.kv
	watcher, err := kv.WatchFiltered(ctx, []string{w.prefix + "link.>", w.prefix + "addr.>"},
		jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s>: %w", w.prefix, err)
	}
	defer watcher.Stop()
	entries := make(map[string][]byte)
	for {
		select {
		case e, ok := <-watcher.Updates():
			if !ok {
				return nil, fmt.Errorf("read %s>: watcher stopped", w.prefix)
			}
			if e == nil {
				return entries, nil // the current values are all in
			}
			entries[e.Key()] = e.Value()
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s>: %w", w.prefix, ctx.Err())
		}
	}
}

// kvStale compares entries, read from the bucket, with what consumers
// hold. A key that holds an object consumers do not hold (a link with
// another index, for a link's key) is stale: it is marked to be deleted,
// unless it names what consumers hold now, and the table is told that
// consumers hold the object (state.Table.Redo), so that Dirty returns its
// deletion: a link's DELLINK, which takes its addresses with it, and an
// address's DELADDR when its link lives on. It returns how many deletions
// Dirty now returns. s.mu is held.
func (s *NATS) kvStale(entries map[string][]byte) int {
	w := s.kv
	live := make(map[string]uint32) // key → index of what consumers hold
	for l := range s.table.HeldLinks() {
		live[w.linkKey(l.Name, l.Index)] = l.Index
	}
	for a := range s.table.HeldAddrs(0, true) {
		live[w.addrKey(s.linkName(a), a)] = a.Index
	}
	if w.quiet == nil {
		w.quiet = make(map[string]bool)
	}
	n, keys := 0, 0
	goneLinks := make(map[uint32]bool) // indexes of the stale links
	var addrs []event.Event
	for key, data := range entries {
		ev, err := encode.Decode(contentTypeOf(data), data)
		link := strings.HasPrefix(key, w.prefix+"link.")
		if err == nil && (link && ev.Type != event.NewLink || !link && ev.Type != event.NewAddr) {
			err = fmt.Errorf("holds a %s", ev.Type)
		}
		index, isLive := live[key]
		switch {
		case err != nil:
			w.log.Warn("state bucket: deleting a key whose value is not this host's", "key", key, "error", err)
			if !isLive {
				w.del(key)
				keys++
			}
			continue
		case link && isLive && index == ev.Link.Index, !link && isLive:
			continue
		}
		if !isLive {
			w.del(key)
			keys++
		}
		w.quiet[key] = true
		if link {
			goneLinks[ev.Link.Index] = true
			s.table.Redo(&event.Event{Type: event.DelLink, Link: ev.Link})
			n++
		} else {
			addrs = append(addrs, event.Event{Type: event.DelAddr, Addr: ev.Addr})
		}
	}
	for i := range addrs {
		if !goneLinks[addrs[i].Addr.Index] {
			s.table.Redo(&addrs[i])
			n++
		}
	}
	if keys > 0 || n > 0 {
		w.log.Info("state bucket: removing what the kernel no longer has", "keys", keys, "deletions", n)
		w.wake()
	}
	return n
}

// contentTypeOf tells a JSON payload from a CBOR one: a JSON event is an
// object, and a CBOR map never starts with '{'.
func contentTypeOf(data []byte) string {
	if len(data) > 0 && data[0] == '{' {
		return "application/json"
	}
	return "application/cbor"
}

// KVStats returns the state bucket's counters.
func (s *NATS) KVStats() KVStats {
	w := s.kv
	if w == nil {
		return KVStats{}
	}
	return KVStats{Enabled: true, Writes: w.writes.Load(), Failures: w.failures.Load(), Pending: w.pending.Load(),
		Reachable: w.up.Load()}
}
