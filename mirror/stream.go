package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
)

// repairWorkers bounds the dump requests a Mirror has in flight.
const repairWorkers = 8

// streamState is what a Mirror reading the event stream keeps besides
// the hosts.
type streamState struct {
	queue      []string // hosts waiting for a dump request
	delayed    []string // hosts whose last request failed, waiting to retry
	queueWake  chan struct{}
	fleetOpen  bool // the fleet-wide request's replies are awaited
	reconnects uint64
}

// repairState is what the repair recipe tracks for one host.
type repairState struct {
	last       uint64 // seq of the last message applied, in boot
	maxMissing uint64 // highest seq of boot never received, 0 for none
	// mentioned holds, per object, the seq of the last message about it
	// since the last repair completed.
	mentioned map[dirtyKey]uint64
	reply     *sink.DumpReply // the dump being waited for
	queued    bool            // a request is queued, in flight or delayed
	// backoff is how long to wait after the next failed request;
	// retryAt is when a delayed request is due.
	backoff time.Duration
	retryAt time.Time
}

// objKey names the object of a link or address event.
func objKey(ev *event.Event) dirtyKey {
	if ev.Type.IsLink() {
		return dirtyKey{kind: kindLink, index: ev.Link.Index}
	}
	return dirtyKey{kind: kindAddr, index: ev.Addr.Index, id: ev.Addr.ID()}
}

// startStream subscribes to the events, asks every host for a dump and
// starts the repair workers.
func (m *Mirror) startStream() error {
	m.stream = &streamState{queueWake: make(chan struct{}, 1), fleetOpen: true}
	m.stream.reconnects = m.nc.Stats().Reconnects
	subject := m.opts.prefix + ".*.>"
	if m.opts.hosts != "" && !strings.ContainsAny(m.opts.hosts, `*?[\`) {
		subject = m.opts.prefix + "." + sink.EscapeToken(m.opts.hosts) + ".>"
	}
	sub, err := m.nc.Subscribe(subject, m.onMessage)
	if err != nil {
		return fmt.Errorf("mirror: subscribe %s: %w", subject, err)
	}
	// A slow consumer loses messages, which shows as a gap and is
	// repaired; the limits only bound how much is held meanwhile.
	_ = sub.SetPendingLimits(4*nats.DefaultSubPendingMsgsLimit, 4*nats.DefaultSubPendingBytesLimit)
	inbox := m.nc.NewInbox()
	fleet, err := m.nc.Subscribe(inbox, m.onFleetReply)
	if err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("mirror: subscribe %s: %w", inbox, err)
	}
	m.subs = []*nats.Subscription{sub, fleet}
	// Every message of a dump is published after its request arrives, so
	// subscribe first, and have the server know it, then ask.
	if err := m.nc.Flush(); err != nil {
		m.log.Warn("flush before the fleet dump request", "error", err)
	}
	body := fmt.Appendf(nil, `{"timeout":%q}`, m.opts.requestTimeout.String())
	if err := m.nc.PublishRequest(m.opts.control+".dump", inbox, body); err != nil {
		m.log.Warn("fleet dump request", "error", err)
	}
	for range repairWorkers {
		m.wg.Add(1)
		go m.repairWorker()
	}
	m.wg.Add(1)
	go m.watchStream()
	return nil
}

// watchStream closes the fleet request's window, and, after the Mirror's
// own connection was broken (it may have missed anything while it was),
// has every host repaired.
func (m *Mirror) watchStream() {
	defer m.wg.Done()
	window := time.NewTimer(m.opts.fleetWait)
	defer window.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-window.C:
			m.mu.Lock()
			m.stream.fleetOpen = false
			for _, h := range m.hosts {
				if !h.synced && h.repair.reply == nil {
					m.queueRepair(h)
				}
			}
			m.checkStreamReady()
			m.mu.Unlock()
		case now := <-tick.C:
			n := m.nc.Stats().Reconnects
			m.mu.Lock()
			m.retryDue(now)
			if n != m.stream.reconnects {
				m.stream.reconnects = n
				m.log.Info("connection to NATS restored: repairing every host")
				for _, h := range m.hosts {
					h.synced = false
					m.queueRepair(h)
				}
			}
			m.mu.Unlock()
		}
	}
}

// retryDue queues the delayed requests that are due. Callers hold mu.
func (m *Mirror) retryDue(now time.Time) {
	kept := m.stream.delayed[:0]
	for _, name := range m.stream.delayed {
		if now.Before(m.hosts[name].repair.retryAt) {
			kept = append(kept, name)
			continue
		}
		m.stream.queue = append(m.stream.queue, name)
	}
	clear(m.stream.delayed[len(kept):])
	m.stream.delayed = kept
	if len(m.stream.queue) > 0 {
		select {
		case m.stream.queueWake <- struct{}{}:
		default:
		}
	}
}

// checkStreamReady closes ready once the fleet window is over and every
// host is synced. Callers hold mu.
func (m *Mirror) checkStreamReady() {
	if m.readyDone || m.stream.fleetOpen {
		return
	}
	for _, h := range m.hosts {
		if !h.synced {
			return
		}
	}
	m.setReady()
}

// hostOf returns the host name of an event subject and whether the Mirror
// follows it. Only the subscription's goroutine calls it.
func (m *Mirror) hostOf(subject string) (string, bool) {
	rest := subject[len(m.opts.prefix)+1:]
	tok, _, _ := strings.Cut(rest, ".")
	if hint, ok := m.names[tok]; ok {
		return hint.name, hint.ok
	}
	name, err := sink.UnescapeToken(tok)
	hint := hostNameHint{name: name, ok: err == nil && m.glob(name)}
	if len(m.names) < 1<<16 {
		m.names[tok] = hint
	}
	return hint.name, hint.ok
}

// onMessage runs on the NATS client's delivery goroutine: it decodes and
// applies one event, and never blocks on anything but mu.
func (m *Mirror) onMessage(msg *nats.Msg) {
	name, ok := m.hostOf(msg.Subject)
	if !ok {
		return
	}
	ev, err := encode.Decode(msg.Header.Get("Content-Type"), msg.Data)
	if err != nil {
		m.log.Debug("bad message skipped", "subject", msg.Subject, "error", err)
		return
	}
	if ev.Host != name {
		m.log.Debug("message for another host skipped", "subject", msg.Subject, "host", ev.Host)
		return
	}
	m.apply(name, &ev)
}

// apply applies a decoded event of host name's stream.
func (m *Mirror) apply(name string, ev *event.Event) {
	m.mu.Lock()
	m.applyEvent(m.streamHost(name), ev)
	m.mu.Unlock()
	m.kick()
}

// streamHost returns the state of a host in stream mode. Callers hold mu.
func (m *Mirror) streamHost(name string) *host {
	h := m.host(name)
	if h.repair == nil {
		h.repair = &repairState{mentioned: map[dirtyKey]uint64{}}
		m.setPresent(h, true)
	}
	return h
}

// applyEvent applies one event of h's stream, following the repair
// recipe. Callers hold mu.
func (m *Mirror) applyEvent(h *host, ev *event.Event) {
	r := h.repair
	switch {
	case ev.Boot != h.boot:
		// A new run of nlbridge, or the first message seen: seqs restart,
		// and what was mentioned before means nothing in the new boot.
		h.boot = ev.Boot
		r.last, r.maxMissing = 0, ev.Seq-1
		clear(r.mentioned)
		h.synced = false
		m.mark(dirtyKey{host: h.name})
		if r.reply != nil && r.reply.Boot != ev.Boot {
			r.reply = nil
		}
		if r.reply == nil {
			m.queueRepair(h)
		}
	case ev.Seq == 0 || ev.Seq <= r.last:
		return // a duplicate (nlbridge's seqs start at 1)
	case ev.Seq > r.last+1:
		r.maxMissing = ev.Seq - 1
		h.synced = false
		if r.reply == nil {
			m.queueRepair(h)
		}
	}
	r.last = ev.Seq
	switch ev.Type {
	case event.NewLink:
		m.upsertLink(h, ev.Link)
	case event.DelLink:
		m.removeLink(h, ev.Link.Index)
	case event.NewAddr:
		m.upsertAddr(h, ev.Addr)
	case event.DelAddr:
		m.removeAddr(h, AddrKey{ev.Addr.Index, ev.Addr.ID()})
	}
	if ev.Type.IsLink() || ev.Type.IsAddr() {
		r.mentioned[objKey(ev)] = ev.Seq
	}
	m.checkReply(h)
}

// checkReply completes h's repair once everything up to the dump reply's
// last_seq is applied: it drops what no message of the dump mentioned.
// A reply whose range has a hole is dropped and the host asked again.
// Callers hold mu.
func (m *Mirror) checkReply(h *host) {
	r := h.repair
	rep := r.reply
	if rep == nil || rep.Boot != h.boot {
		return
	}
	if r.maxMissing >= rep.FirstSeq {
		r.reply = nil
		m.queueRepair(h)
		return
	}
	if r.last < rep.LastSeq {
		return
	}
	for index := range h.links {
		if r.mentioned[dirtyKey{kind: kindLink, index: index}] < rep.FirstSeq {
			m.removeLink(h, index)
		}
	}
	for k := range h.addrs {
		if r.mentioned[dirtyKey{kind: kindAddr, index: k.Index, id: k.ID}] < rep.FirstSeq {
			m.removeAddr(h, k)
		}
	}
	clear(r.mentioned)
	r.reply = nil
	h.synced = true
	m.checkStreamReady()
}

// queueRepair has a dump of h requested, unless one is already queued or
// in flight. While the fleet request's replies are awaited, the window's
// end queues what they did not repair. Callers hold mu.
func (m *Mirror) queueRepair(h *host) {
	if h.repair.queued || m.stream.fleetOpen || m.ctx.Err() != nil {
		return
	}
	h.repair.queued = true
	m.stream.queue = append(m.stream.queue, h.name)
	select {
	case m.stream.queueWake <- struct{}{}:
	default:
	}
}

// onFleetReply takes a host's reply to the fleet-wide dump request.
func (m *Mirror) onFleetReply(msg *nats.Msg) {
	rep, err := parseReply(msg)
	if err != nil {
		m.log.Debug("fleet dump reply", "error", err)
		return
	}
	if !m.glob(rep.Host) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.streamHost(rep.Host)
	if h.repair.queued || h.repair.reply != nil || h.synced {
		return
	}
	h.repair.reply = &rep
	if h.boot == "" {
		h.boot = rep.Boot // what follows is the range's first message
		h.repair.last = rep.FirstSeq - 1
	}
	m.checkReply(h)
}

// parseReply reads a dump reply, or the error it carries.
func parseReply(msg *nats.Msg) (sink.DumpReply, error) {
	var rep sink.DumpReply
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return rep, fmt.Errorf("dump request: %s %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("dump reply: %w", err)
	}
	if rep.Host == "" || rep.Boot == "" || rep.FirstSeq == 0 || rep.LastSeq < rep.FirstSeq {
		return rep, errors.New("dump reply: missing host, boot or seqs")
	}
	return rep, nil
}

// repairWorker asks hosts for dumps, retrying with backoff.
func (m *Mirror) repairWorker() {
	defer m.wg.Done()
	for {
		m.mu.Lock()
		var name string
		if q := m.stream.queue; len(q) > 0 {
			name, m.stream.queue = q[0], q[1:]
			if len(m.stream.queue) > 0 {
				select {
				case m.stream.queueWake <- struct{}{}:
				default:
				}
			}
		}
		m.mu.Unlock()
		if name == "" {
			select {
			case <-m.ctx.Done():
				return
			case <-m.stream.queueWake:
			}
			continue
		}
		m.repairHost(name)
	}
}

// repairHost requests a dump of one host. A failed request is retried
// after a backoff (100 ms doubling to 5 s, with jitter), without holding a
// worker meanwhile.
func (m *Mirror) repairHost(name string) {
	subject := m.opts.control + "." + sink.EscapeToken(name) + ".dump"
	body := fmt.Appendf(nil, `{"timeout":%q}`, m.opts.requestTimeout.String())
	msg, err := m.nc.RequestWithContext(m.ctx, subject, body)
	var rep sink.DumpReply
	if err == nil {
		rep, err = parseReply(msg)
	}
	if m.ctx.Err() != nil {
		return
	}
	if err == nil && rep.Host != name {
		err = fmt.Errorf("dump reply for host %q", rep.Host)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hosts[name]
	r := h.repair
	if err == nil && h.boot != "" && rep.Boot != h.boot {
		// The messages come from another run of nlbridge than the reply:
		// one of them is stale; ask again.
		err = fmt.Errorf("dump reply from boot %s, messages from boot %s", rep.Boot, h.boot)
	}
	if err != nil {
		r.backoff = min(max(2*r.backoff, 100*time.Millisecond), 5*time.Second)
		r.retryAt = time.Now().Add(r.backoff + rand.N(r.backoff/2))
		m.stream.delayed = append(m.stream.delayed, name)
		m.log.Debug("dump request failed; retrying", "host", name, "error", err, "backoff", r.backoff)
		return
	}
	r.queued, r.backoff = false, 0
	r.reply = &rep
	if h.boot == "" {
		h.boot, r.last = rep.Boot, rep.FirstSeq-1
	}
	m.checkReply(h)
	m.kick()
}
