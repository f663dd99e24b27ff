package mirror

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/sink"
)

// keyIndex maps a host's bucket keys to the objects their values hold,
// both ways: a rename moves a link's key, and the old key's deletion may
// come after the new key's value.
type keyIndex struct {
	obj map[string]dirtyKey // key → object
	key map[dirtyKey]string // object → its current key
}

// settleWait is how long a watcher that skipped a revision waits for
// more entries before its changes are delivered, and settleMax how long
// the changes of a watcher that lags wait at most.
const (
	settleWait = 100 * time.Millisecond
	settleMax  = time.Second
)

// presence is the value of a <host>.presence key.
type presence struct {
	Host    string    `json:"host"`
	Boot    string    `json:"boot"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Seq     uint64    `json:"seq"`
}

// startBucket watches the bucket's keys of the matching hosts.
func (m *Mirror) startBucket(kv jetstream.KeyValue) error {
	filter := ">"
	if m.opts.hosts != "" && !strings.ContainsAny(m.opts.hosts, `*?[\`) {
		filter = sink.EscapeToken(m.opts.hosts) + ".>"
	}
	w, err := kv.WatchFiltered(m.ctx, []string{filter})
	if err != nil {
		return fmt.Errorf("mirror: watch bucket %s: %w", m.opts.bucket, err)
	}
	m.bucket = true
	m.watcher = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// While the watcher lags behind the bucket, the changes wait: with
		// one value per key, the bucket drops a key's value that a newer
		// one replaced before the watcher read it, so a lagging watcher
		// may see a renamed object's old key deleted before it sees the
		// object's newer key. Once it has caught up, the callback sees the
		// coalesced result: renamed, not removed and added again. The
		// watcher lags while its entries say more are pending, and after
		// it skipped a revision (a value dropped, or another host's when
		// filtered) until no entry came for settleWait: the pending count
		// can read 0 while the writer's next writes are on their way. A
		// watcher that never catches up still has its changes delivered
		// every settleMax.
		held := time.NewTimer(time.Hour) // settleMax since the changes began to wait
		held.Stop()
		defer held.Stop()
		quiet := time.NewTimer(time.Hour) // settleWait since the last entry after a skip
		quiet.Stop()
		defer quiet.Stop()
		holding, skipped := false, false
		var last uint64 // the last revision read
		deliver := func() {
			m.mu.Lock()
			m.lagging = false
			m.mu.Unlock()
			held.Stop()
			quiet.Stop()
			holding, skipped = false, false
			m.kick()
		}
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-held.C:
				deliver()
			case <-quiet.C:
				deliver()
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				m.mu.Lock()
				if e == nil {
					// The current values are all in: the first view is
					// complete.
					for _, h := range m.hosts {
						h.synced = true
					}
					m.setReady()
				} else {
					m.applyEntry(e.Key(), e.Value(), e.Operation(), e.Created())
					if last != 0 && e.Revision() > last+1 {
						skipped = true
					}
					last = max(last, e.Revision())
				}
				lagging := e != nil && e.Delta() > 0
				if !lagging && !skipped || e == nil {
					m.mu.Unlock()
					deliver()
					continue
				}
				m.lagging = true
				m.mu.Unlock()
				if !holding {
					holding = true
					held.Reset(settleMax)
				}
				if lagging {
					quiet.Stop() // the pending count says when it has caught up
				} else {
					quiet.Reset(settleWait)
				}
			}
		}
	}()
	return nil
}

// applyEntry applies one bucket entry. Callers hold mu.
func (m *Mirror) applyEntry(key string, value []byte, op jetstream.KeyValueOp, created time.Time) {
	tok, rest, _ := strings.Cut(key, ".")
	name, err := sink.UnescapeToken(tok)
	if err != nil || !m.glob(name) {
		return
	}
	h := m.host(name)
	if h.keys == nil {
		h.keys = &keyIndex{obj: map[string]dirtyKey{}, key: map[dirtyKey]string{}}
		h.synced = m.readyDone
	}
	put := op == jetstream.KeyValuePut
	if rest == "presence" {
		if !put {
			if h.gone.IsZero() {
				h.gone = created // the first deletion marker's time
			}
			m.setPresent(h, false)
			return
		}
		var p presence
		if err := json.Unmarshal(value, &p); err != nil {
			m.log.Debug("bad presence skipped", "key", key, "error", err)
			return
		}
		if p.Boot != h.boot {
			h.boot = p.Boot
			m.mark(dirtyKey{host: name})
		}
		h.version, h.started, h.lastSeen, h.gone = p.Version, p.Started, created, time.Time{}
		m.setPresent(h, true)
		return
	}
	if !put {
		obj, ok := h.keys.obj[key]
		if !ok {
			return
		}
		delete(h.keys.obj, key)
		if h.keys.key[obj] != key {
			return // the object has moved to another key since
		}
		delete(h.keys.key, obj)
		if obj.kind == kindLink {
			m.removeKeyedLink(h, obj.index, key)
		} else {
			m.removeAddr(h, AddrKey{obj.index, obj.id})
		}
		return
	}
	ev, err := encode.Decode(contentType(value), value)
	if err != nil {
		m.log.Debug("bad value skipped", "key", key, "error", err)
		return
	}
	if h.boot == "" {
		// No presence seen (it may be gone before the Mirror started):
		// the values name the run whose state they are.
		h.boot = ev.Boot
	}
	var obj dirtyKey
	switch {
	case ev.Type == event.NewLink && strings.HasPrefix(rest, "link."):
		obj = dirtyKey{kind: kindLink, index: ev.Link.Index}
		m.upsertLink(h, ev.Link)
	case ev.Type == event.NewAddr && strings.HasPrefix(rest, "addr."):
		obj = dirtyKey{kind: kindAddr, index: ev.Addr.Index, id: ev.Addr.ID()}
		m.upsertAddr(h, ev.Addr)
	default:
		m.log.Debug("unexpected value skipped", "key", key, "type", ev.Type)
		return
	}
	if old, ok := h.keys.key[obj]; ok && old != key {
		delete(h.keys.obj, old)
	}
	if prev, ok := h.keys.obj[key]; ok && prev != obj && h.keys.key[prev] == key {
		// The key now holds another object (a link of the same name with
		// another index): the one it held is gone.
		delete(h.keys.key, prev)
		if prev.kind == kindLink {
			m.removeKeyedLink(h, prev.index, key)
		} else {
			m.removeAddr(h, AddrKey{prev.index, prev.id})
		}
	}
	h.keys.obj[key] = obj
	h.keys.key[obj] = key
}

// removeKeyedLink removes the link that the link key key held, and the
// link's addresses filed under that key's name: their keys are deleted
// one by one too, and what is left of them goes with the link, as a
// DELLINK says. The link's addresses filed under another name stay: a
// rename (or a new link taking the index) wrote them there, and the
// link's new key is yet to come, since the bucket orders the writes of
// each key but not those of different keys. Callers hold mu.
func (m *Mirror) removeKeyedLink(h *host, index uint32, key string) {
	tok, rest, _ := strings.Cut(key, ".")
	prefix := tok + ".addr." + strings.TrimPrefix(rest, "link.") + "."
	if _, ok := h.links[index]; ok {
		delete(h.links, index)
		m.mark(dirtyKey{host: h.name, kind: kindLink, index: index})
	}
	for k := range h.addrs {
		if k.Index != index {
			continue
		}
		obj := dirtyKey{kind: kindAddr, index: k.Index, id: k.ID}
		if ak, ok := h.keys.key[obj]; ok && !strings.HasPrefix(ak, prefix) {
			continue
		}
		m.removeAddr(h, k)
	}
}

// contentType tells the encodings of a bucket value apart: a JSON event
// is an object, a CBOR one a map, whose first byte is never '{'.
func contentType(value []byte) string {
	if len(value) > 0 && value[0] == '{' {
		return "application/json"
	}
	return "application/cbor"
}
