package sink

import (
	"context"
	"time"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/state"
)

// What nats.go accepted (PublishMsg returned nil) sits in its buffer and
// the sockets' until the server reads it; when the connection breaks,
// that is lost and nats.go does not say. So the sink keeps, for every
// message published since the server last confirmed, the object it was
// about, and after a reconnect it publishes those objects' current state
// again (redo). A flush (PING, then the server's PONG) confirms everything
// written before it on the same connection.
const (
	// confirmEvery is the pause between two flushes while publishing; an
	// idle sink does not flush at all.
	confirmEvery = 200 * time.Millisecond
	// confirmTimeout bounds one flush. A server that does not answer is
	// declared stale by the pings sooner (see pingInterval).
	confirmTimeout = 10 * time.Second
)

// sentMsg is a NEWLINK or NEWADDR published since the last confirmation:
// its seq, type and object (a link's index, or an address's key).
type sentMsg struct {
	seq uint64
	typ event.Type
	key state.AddrKey // Index alone for a link
}

// sentOne records ev, just published as s.seq, until the server confirms
// it. A deletion is kept whole: its object may be forgotten by the table,
// and redo needs its value to publish it again. A SYNC needs no record:
// redo sees that something after confirmed is unconfirmed. s.mu is held.
func (s *NATS) sentOne(ev *event.Event) {
	var m sentMsg
	switch ev.Type {
	case event.NewLink:
		m = sentMsg{seq: s.seq, typ: ev.Type, key: state.AddrKey{Index: ev.Link.Index}}
	case event.NewAddr:
		m = sentMsg{seq: s.seq, typ: ev.Type, key: state.KeyOf(&ev.Addr)}
	case event.DelLink, event.DelAddr:
		s.sentDels = append(s.sentDels, *ev)
	}
	if m.typ != 0 {
		// An object that changes again and again (a flapping link) keeps
		// one record, with the last seq.
		if n := len(s.sent); n > 0 && s.sent[n-1].typ == m.typ && s.sent[n-1].key == m.key {
			s.sent[n-1].seq = m.seq
		} else {
			s.sent = append(s.sent, m)
		}
	}
	if s.seq == s.confirmed+1 {
		select { // the first since the last confirmation
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// confirm is the confirmer, started by Connect and stopped by Close (or by
// the connection's closing): whenever something was published since the
// last confirmation, it waits confirmEvery, notes the last seq published,
// flushes, and on success raises s.confirmed and forgets the records up to
// it. One flush at a time; none when idle.
func (s *NATS) confirm(ctx context.Context) {
	defer close(s.confirmer)
	pause := time.NewTimer(confirmEvery)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		case <-s.kick:
		}
		for more := true; more; {
			pause.Reset(confirmEvery)
			select {
			case <-ctx.Done():
				return
			case <-s.closed:
				return
			case <-pause.C:
			}
			more = s.confirmOnce(ctx)
		}
	}
}

// confirmOnce flushes and confirms what was published before it. It
// reports whether something is left to confirm on this connection. Only a
// flush on the connection that the unconfirmed messages went to confirms
// them: after a reconnect, reconcile redoes them instead.
func (s *NATS) confirmOnce(ctx context.Context) bool {
	s.mu.Lock()
	upto, conn, nc, idle := s.seq, s.conn, s.nc, s.seq == s.confirmed
	s.mu.Unlock()
	if idle {
		return false
	}
	if nc.Stats().Reconnects != conn {
		return false // reconcile will redo them, and publishing again wakes us
	}
	fctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	err := nc.FlushWithContext(fctx)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Debug("cannot confirm what was published; retrying", "error", err, "unconfirmed", s.seq-s.confirmed)
		return ctx.Err() == nil
	}
	// nats.go counts a reconnection before the new connection takes a
	// message, so an unchanged count means that everything up to upto and
	// the PING went to the same connection.
	if conn != s.conn || nc.Stats().Reconnects != conn || upto <= s.confirmed {
		return s.seq > s.confirmed
	}
	s.confirmed = upto
	n := 0
	for n < len(s.sent) && s.sent[n].seq <= upto {
		n++
	}
	s.sent = s.sent[:copy(s.sent, s.sent[n:])]
	n = 0
	for n < len(s.sentDels) && s.sentDels[n].Seq <= upto {
		n++
	}
	m := copy(s.sentDels, s.sentDels[n:])
	clear(s.sentDels[m:]) // let go of names and MACs
	s.sentDels = s.sentDels[:m]
	s.shrink()
	return s.seq > s.confirmed
}

// shrink lets go of empty record slices much larger than a dump of the
// table needs, which an unusual burst may have made; a dump's size is
// kept, so that dumps do not grow them again each time. s.mu is held.
func (s *NATS) shrink() {
	const keep = 4096
	if len(s.sent) == 0 && cap(s.sent) > keep || len(s.sentDels) == 0 && cap(s.sentDels) > keep/8 {
		links, addrs := s.table.Len()
		if n := 2 * (links + addrs); len(s.sent) == 0 && cap(s.sent) > max(keep, n) {
			s.sent = nil
		}
		if n := links + addrs; len(s.sentDels) == 0 && cap(s.sentDels) > max(keep/8, n) {
			s.sentDels = nil
		}
	}
}

// redo runs after a (re)connection, before reconcile publishes anything:
// the messages published on an earlier connection after the last
// confirmation may never have reached the server, so the state table marks
// their objects to be published again as they are now (or as deleted),
// and reconcile publishes them and its SYNC, which stands for any
// unconfirmed SYNC too. s.mu is held.
func (s *NATS) redo() {
	conn := s.nc.Stats().Reconnects
	if conn == s.conn {
		return // the same connection: the confirmer sees to it
	}
	s.conn = conn
	if s.seq == s.confirmed {
		return
	}
	for _, m := range s.sent {
		s.table.RedoNew(m.typ, m.key)
	}
	for i := range s.sentDels {
		s.table.Redo(&s.sentDels[i])
	}
	s.log.Warn("the connection broke before the server confirmed some messages: publishing their objects again",
		"first_seq", s.confirmed+1, "last_seq", s.seq)
	s.pending = true // reconcile publishes a SYNC even when no object is left to publish
	s.confirmed = s.seq
	s.sent = s.sent[:0]
	clear(s.sentDels)
	s.sentDels = s.sentDels[:0]
	s.shrink()
}
