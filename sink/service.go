package sink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/event"
)

// Dumper publishes a dump, of every interface or of the one named iface,
// through the sink and returns its SYNC marker as published
// (source.Netlink is a Dumper).
type Dumper interface {
	Dump(ctx context.Context, reason event.Reason, iface string) (event.Event, error)
}

// ServiceName is the NATS micro service name that `nats micro ls` lists.
const ServiceName = "nlbridge"

const (
	// maxInFlight bounds the dump requests being served at once; more get a
	// 503 reply rather than a goroutine each.
	maxInFlight = 1024
	// dumpTimeout bounds how long one request waits for its dump, and the
	// timeout a request may ask for.
	dumpTimeout = 30 * time.Second
)

// DumpRequest is the body of a dump request. An empty body is the same as
// {}, a dump of every interface.
type DumpRequest struct {
	// Interface narrows the dump to the link of that name and its
	// addresses.
	Interface string `json:"interface,omitempty"`
	// Timeout is how long the caller waits for the reply, as a Go
	// duration ("100ms", "5s"), at most 30s; nlbridge drops the request
	// when it has passed. Empty means 30s.
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration // Timeout, parsed
}

// DumpReply is the reply to a dump request, sent once every message of the
// dump and its SYNC marker have reached the NATS server.
type DumpReply struct {
	Host      string `json:"host"`
	Boot      string `json:"boot"`
	Interface string `json:"interface,omitempty"` // as requested
	Links     int    `json:"links"`
	Addrs     int    `json:"addrs"`
	FirstSeq  uint64 `json:"first_seq"` // seq of the dump's first message
	LastSeq   uint64 `json:"last_seq"`  // seq of the SYNC marker that closed it
}

// ParseDumpRequest checks a request body: empty, or a JSON object with no
// unknown fields.
func ParseDumpRequest(body []byte) (DumpRequest, error) {
	var req DumpRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("bad dump request: %w (want an empty body or a JSON object)", err)
	}
	// Decoder.More reports false before a '}' or ']', so check the rest
	// itself: only whitespace may follow the object.
	if rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return req, fmt.Errorf("bad dump request: trailing data after the JSON object: %q", truncate(rest, 16))
	}
	if err := checkIfname(req.Interface); err != nil {
		return req, fmt.Errorf("bad dump request: interface: %w", err)
	}
	req.timeout = dumpTimeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil {
			return req, fmt.Errorf("bad dump request: timeout: %w", err)
		}
		if d <= 0 || d > dumpTimeout {
			return req, fmt.Errorf("bad dump request: timeout %s is not in (0s, %s]", req.Timeout, dumpTimeout)
		}
		req.timeout = d
	}
	return req, nil
}

// truncate returns b, cut to n bytes.
func truncate(b []byte, n int) []byte { return b[:min(len(b), n)] }

// checkIfname checks what Linux accepts as an interface name (or "").
func checkIfname(s string) error {
	switch {
	case s == "":
		return nil
	case len(s) > 15:
		return fmt.Errorf("%q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not an interface name", s)
	case strings.ContainsAny(s, "/: \t\n\x00"):
		return fmt.Errorf("%q holds '/', ':', whitespace or NUL", s)
	}
	return nil
}

// Service is the NATS micro service that answers dump requests on
// <control>.<host>.dump and, for the whole fleet, on <control>.dump.
type Service struct {
	svc    micro.Service
	sink   *NATS
	dumper Dumper
	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	slots  chan struct{} // one per request in flight

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup // requests in flight
}

// NewService registers the dump service on the sink's connection.
func NewService(s *NATS, d Dumper, version string) (*Service, error) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Service{sink: s, dumper: d, ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxInFlight)}
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     version,
		Description: "Publishes Linux rtnetlink link and address events to NATS; answers dump requests",
		Metadata:    map[string]string{"host": s.host, "boot": s.boot},
		// Every bridge answers a fleet-wide request, not one of a queue.
		QueueGroupDisabled: true,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sink: add micro service: %w", err)
	}
	for _, ep := range []struct{ name, subject string }{
		{"dump", s.subj.HostDump()},
		{"dump-all", s.subj.FleetDump()},
	} {
		if err := svc.AddEndpoint(ep.name, micro.HandlerFunc(srv.handle), micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = svc.Stop()
			cancel()
			return nil, fmt.Errorf("sink: add endpoint %s on %s: %w", ep.name, ep.subject, err)
		}
	}
	srv.svc = svc
	if s.nc.IsConnected() {
		// Have the server register the endpoints before returning, so
		// that a request made right after NewService reaches them. When
		// not connected, the client subscribes as it connects.
		if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
			s.log.Debug("dump service: flush after subscribing", "error", err)
		}
	}
	return srv, nil
}

// handle runs on the subscription's goroutine: it checks the request and
// serves it on a goroutine of its own, so that concurrent requests can
// share one dump.
func (srv *Service) handle(req micro.Request) {
	body, err := ParseDumpRequest(req.Data())
	if err != nil {
		_ = req.Error("400", err.Error(), nil)
		return
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.stopped {
		_ = req.Error("503", "nlbridge is shutting down", nil)
		return
	}
	select {
	case srv.slots <- struct{}{}:
	default:
		_ = req.Error("503", "too many dump requests in flight", nil)
		return
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		defer func() { <-srv.slots }()
		srv.serve(req, body)
	}()
}

// serve asks for a dump and replies once the server has all of it. The
// dumper drops the request when its timeout has passed, so that requests
// whose callers have gone do not pile up.
func (srv *Service) serve(req micro.Request, body DumpRequest) {
	ctx, cancel := context.WithTimeout(srv.ctx, cmp.Or(body.timeout, dumpTimeout))
	defer cancel()
	conn := srv.sink.nc.Stats().Reconnects
	marker, err := srv.dumper.Dump(ctx, event.ReasonRequest, body.Interface)
	if err == nil {
		err = srv.sink.Flush(ctx)
	}
	if err == nil && srv.sink.nc.Stats().Reconnects != conn {
		// The flush went over a new connection: messages of the dump may
		// have been lost with the old one (they are published again, but
		// after the SYNC).
		marker.Seq = 0
	}
	switch {
	case errors.Is(err, event.ErrNoInterface):
		srv.replyError(req, "404", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		srv.replyError(req, "504", "dump not complete within the request's timeout")
	case err != nil:
		srv.replyError(req, "500", "dump failed: "+err.Error())
	case marker.Seq == 0:
		// The SYNC, or a message of the dump, did not reach the NATS
		// client or the server: a reply must name only seqs that were
		// published, and a range without holes.
		srv.replyError(req, "503", "dump not published: NATS unreachable; retry")
	default:
		data, _ := json.Marshal(DumpReply{ // cannot fail
			Host:      srv.sink.host,
			Boot:      srv.sink.boot,
			Interface: body.Interface,
			Links:     marker.Sync.Links,
			Addrs:     marker.Sync.Addrs,
			FirstSeq:  marker.Sync.FirstSeq,
			LastSeq:   marker.Seq,
		})
		srv.reply(req, &nats.Msg{Data: data})
	}
}

// replyError sends a micro error reply from serve.
func (srv *Service) replyError(req micro.Request, code, description string) {
	srv.reply(req, &nats.Msg{Header: nats.Header{
		micro.ErrorHeader:     []string{description},
		micro.ErrorCodeHeader: []string{code},
	}})
}

// reply sends m to the requester. serve runs after the micro handler has
// returned, and micro.Request's Respond and Error record their outcome in
// the request, which micro reads once the handler returns: calling them
// from serve would be a data race. So serve publishes its reply itself.
func (srv *Service) reply(req micro.Request, m *nats.Msg) {
	if req.Reply() == "" {
		return // nobody waits
	}
	m.Subject = req.Reply()
	if err := srv.sink.nc.PublishMsg(m); err != nil {
		srv.sink.log.Debug("dump service: reply", "error", err)
	}
}

// Stop stops taking requests, fails those in flight and waits for them.
// It is idempotent.
func (srv *Service) Stop() error {
	srv.mu.Lock()
	was := srv.stopped
	srv.stopped = true
	srv.mu.Unlock()
	if was {
		return nil
	}
	err := srv.svc.Stop()
	srv.cancel()
	srv.wg.Wait()
	if err != nil {
		return fmt.Errorf("sink: stop service: %w", err)
	}
	return nil
}
