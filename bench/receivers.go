//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/mdlayher/netlink"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/sink"
)

// sighting is one link event as a receiver saw it.
type sighting struct {
	// at is when the receiver got it, taken before any parsing.
	at time.Time
	// name is the interface name.
	name string
	// mtu is the link's MTU, or 0 where the receiver did not parse it.
	mtu uint32
	// del is true for DELLINK.
	del bool
}

// recorder keeps every link event that one receiver saw, with the time it
// saw it, and counts all its messages. It is safe for concurrent use: the
// receiver adds, the benchmark waits and reads.
type recorder struct {
	// name is the receiver's name in results.
	name string
	// mu guards got and last.
	mu sync.Mutex
	// got holds the link events in the order seen.
	got []sighting
	// last is when the receiver last got any message.
	last time.Time
	// msgs counts every message, link or not.
	msgs atomic.Int64
	// wake has a token when got grew; capacity 1.
	wake chan struct{}
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, wake: make(chan struct{}, 1)}
}

// message counts a message seen at at; link events are passed as s.
func (r *recorder) message(at time.Time, s *sighting) {
	r.msgs.Add(1)
	r.mu.Lock()
	r.last = at
	if s != nil {
		r.got = append(r.got, *s)
	}
	r.mu.Unlock()
	if s != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// mark returns a cursor for waitFor: the events seen from now on.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// waitFor returns the first event from *cursor on for which match is true,
// and moves the cursor past it. It waits at most timeout.
func (r *recorder) waitFor(ctx context.Context, cursor *int, timeout time.Duration, match func(sighting) bool) (sighting, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		for *cursor < len(r.got) {
			s := r.got[*cursor]
			*cursor++
			if match(s) {
				r.mu.Unlock()
				return s, nil
			}
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-timer.C:
			return sighting{}, fmt.Errorf("%s: no matching event within %v", r.name, timeout)
		case <-ctx.Done():
			return sighting{}, ctx.Err()
		}
	}
}

// quiet waits until the receiver has had no message for d, at most timeout.
func (r *recorder) quiet(ctx context.Context, d, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		idle := time.Since(r.last)
		r.mu.Unlock()
		if idle >= d {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still receiving messages after %v", r.name, timeout)
		}
		select {
		case <-time.After(d - idle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// floor is the baseline receiver: a plain netlink socket in the namespace,
// joined to the link and address groups, read by one goroutine that only
// takes the time and pulls out the name and MTU of link messages.
type floor struct {
	// conn is the netlink socket; Close unblocks the reader.
	conn *netlink.Conn
	// rec gets every kernel message.
	rec *recorder
	// overflows counts ENOBUFS: notifications the kernel dropped for us.
	overflows atomic.Int64
	// done is closed when the reader returns.
	done chan struct{}
}

// startFloor opens the floor socket in ns with a 64 MiB receive buffer
// (SO_RCVBUFFORCE: we are root) and starts reading it.
func startFloor(ns *netNS) (*floor, error) {
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR)
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: groups, NetNS: int(ns.file.Fd())})
	if err != nil {
		return nil, fmt.Errorf("floor: dial netlink: %w", err)
	}
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
		err = errors.Join(err, serr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("floor: set receive buffer: %w", err)
	}
	f := &floor{conn: c, rec: newRecorder("floor"), done: make(chan struct{})}
	go f.read()
	return f, nil
}

func (f *floor) read() {
	defer close(f.done)
	for {
		msgs, err := f.conn.Receive()
		at := time.Now()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				f.overflows.Add(1)
				continue
			}
			return // closed
		}
		for _, m := range msgs {
			f.rec.message(at, linkSighting(at, m))
		}
	}
}

// linkSighting returns the name and MTU of a NEWLINK or DELLINK, or nil.
func linkSighting(at time.Time, m netlink.Message) *sighting {
	t := m.Header.Type
	if t != unix.RTM_NEWLINK && t != unix.RTM_DELLINK || len(m.Data) < unix.SizeofIfInfomsg {
		return nil
	}
	s := &sighting{at: at, del: t == unix.RTM_DELLINK}
	ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			s.name = ad.String()
		case unix.IFLA_MTU:
			s.mtu = ad.Uint32()
		}
	}
	return s
}

// Close closes the socket and waits for the reader.
func (f *floor) Close() {
	f.conn.Close()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
	}
}

// syncMsg is a SYNC that a bridge subscriber received, with what it
// received since the previous SYNC.
type syncMsg struct {
	// at is when the SYNC arrived.
	at time.Time
	// Reason, Links and Addrs are the SYNC's fields.
	Reason string `json:"reason"`
	Links  int    `json:"links"`
	Addrs  int    `json:"addrs"`
	// msgs and bytes count the messages before it (the SYNC left out) and
	// their payload bytes, since the previous SYNC or reset.
	msgs, bytes int
}

// bridgeSub receives everything that one nlbridge publishes.
type bridgeSub struct {
	// rec gets every message; link events as sightings.
	rec *recorder
	// prefix is "netlink.<host>.".
	prefix string
	// cbor says the payloads are CBOR.
	cbor bool
	// watchMTU is the interface whose MTU is parsed from link events.
	watchMTU string
	// first gets the arrival time of the first message; capacity 1.
	first chan time.Time
	// syncs gets every SYNC; buffered.
	syncs chan syncMsg
	// count and bytes are owned by the subscription callback.
	count, bytes int
	// reset makes the callback zero count and bytes at its next message.
	reset atomic.Bool
	// sub is the NATS subscription.
	sub *nats.Subscription
}

// subscribeBridge subscribes to everything nlbridge publishes as host.
// The callback parses only what it must: the SYNC, and the MTU of link
// events of the interface watchMTU.
func subscribeBridge(nc *nats.Conn, name, host string, cborEnc bool, watchMTU string) (*bridgeSub, error) {
	b := newBridgeSub(newRecorder(name), host, cborEnc, watchMTU)
	return b, b.subscribe(nc)
}

// newBridgeSub returns a receiver of host's messages that records into
// rec, not subscribed yet.
func newBridgeSub(rec *recorder, host string, cborEnc bool, watchMTU string) *bridgeSub {
	return &bridgeSub{
		rec:      rec,
		prefix:   "netlink." + host + ".",
		cbor:     cborEnc,
		watchMTU: watchMTU,
		first:    make(chan time.Time, 1),
		syncs:    make(chan syncMsg, 256),
	}
}

// subscribe subscribes b on nc.
func (b *bridgeSub) subscribe(nc *nats.Conn) error {
	sub, err := nc.Subscribe(b.prefix+">", func(m *nats.Msg) { b.handle(time.Now(), m, b.watchMTU) })
	if err != nil {
		return fmt.Errorf("subscribe %s>: %w", b.prefix, err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	b.sub = sub
	return nc.Flush()
}

func (b *bridgeSub) handle(at time.Time, m *nats.Msg, watchMTU string) {
	select {
	case b.first <- at:
	default:
	}
	if b.reset.Swap(false) {
		b.count, b.bytes = 0, 0
	}
	rest := strings.TrimPrefix(m.Subject, b.prefix)
	if rest == "sync" {
		s := syncMsg{at: at, msgs: b.count, bytes: b.bytes}
		var err error
		if b.cbor {
			err = cbor.Unmarshal(m.Data, &s)
		} else {
			err = json.Unmarshal(m.Data, &s)
		}
		if err != nil {
			s.Reason = "undecodable: " + err.Error()
		}
		b.count, b.bytes = 0, 0
		b.rec.message(at, nil)
		select {
		case b.syncs <- s:
		default:
		}
		return
	}
	b.count++
	b.bytes += len(m.Data)
	// link.<name>.new or .del
	tok := strings.Split(rest, ".")
	if len(tok) != 3 || tok[0] != "link" {
		b.rec.message(at, nil)
		return
	}
	name, err := sink.UnescapeToken(tok[1])
	if err != nil {
		name = tok[1]
	}
	s := &sighting{at: at, name: name, del: tok[2] == "del"}
	if name == watchMTU && !b.cbor {
		s.mtu = jsonMTU(m.Data)
	}
	b.rec.message(at, s)
}

// jsonMTU returns the number after the first "mtu": of an nlbridge JSON
// event, or 0. It scans rather than decodes: the subscriber's work and
// garbage weigh on the benchmark's process, which runs the NATS server
// too, and should be as little for nlbridge's paths as for the relay's.
func jsonMTU(data []byte) uint32 {
	_, rest, ok := bytes.Cut(data, []byte(`"mtu":`))
	if !ok {
		return 0
	}
	var v uint32
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint32(c-'0')
	}
	return v
}

// subscribePipeline subscribes to the lines that `ip -o monitor link
// address | nats pub` publishes on subject, and reads link lines such as
// "3: a0@b0: <BROADCAST,MULTICAST> mtu 1400 qdisc ..." or "Deleted 3: ...".
func subscribePipeline(nc *nats.Conn, subject string) (*recorder, error) {
	rec := newRecorder("pipeline")
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		at := time.Now()
		rec.message(at, parseMonitorLine(at, string(m.Data)))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	return rec, nc.Flush()
}

// parseMonitorLine returns the link event of an `ip -o monitor` line, or
// nil for an address line or anything else.
func parseMonitorLine(at time.Time, line string) *sighting {
	s := &sighting{at: at}
	line, s.del = strings.CutPrefix(line, "Deleted ")
	_, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return nil
	}
	name, rest, ok := strings.Cut(rest, ": <")
	if !ok || strings.ContainsAny(name, " \t") {
		return nil // an address line: "3: a0    inet ..."
	}
	name, _, _ = strings.Cut(name, "@")
	s.name = name
	if _, after, ok := strings.Cut(rest, " mtu "); ok {
		v, _, _ := strings.Cut(after, " ")
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			s.mtu = uint32(n)
		}
	}
	return s
}
