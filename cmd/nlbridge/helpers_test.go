package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/schema"
)

// startServer runs a NATS server on a random 127.0.0.1 port until t ends.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// connect connects a test client to s.
func connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect to test server: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// testLogger sends logs to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// msg is one received message, decoded.
type msg struct {
	subject string
	doc     map[string]any // JSON types: float64 numbers, []any, map[string]any
}

func (m msg) str(key string) string  { s, _ := m.doc[key].(string); return s }
func (m msg) num(key string) float64 { f, _ := m.doc[key].(float64); return f }
func (m msg) obj(key string) map[string]any {
	o, _ := m.doc[key].(map[string]any)
	return o
}

// collector subscribes to subject and decodes and validates every message
// against the JSON Schema, whatever its encoding.
type collector struct {
	t      testing.TB
	schema *jsonschema.Schema
	mu     sync.Mutex
	msgs   []msg
	errs   []string
	signal chan struct{}
}

func collect(t testing.TB, nc *nats.Conn, subject string) *collector {
	t.Helper()
	c := newCollector(t)
	sub, err := nc.Subscribe(subject, c.receive)
	if err != nil {
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return c
}

// collectStream reads a JetStream stream from its start, as a consumer that
// must not miss a message while it or the server restarts would.
func collectStream(t testing.TB, js jetstream.JetStream, stream string) *collector {
	t.Helper()
	c := newCollector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		c.receive(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	})
	if err != nil {
		t.Fatalf("consume %s: %v", stream, err)
	}
	t.Cleanup(cc.Stop)
	return c
}

func newCollector(t testing.TB) *collector {
	c := &collector{t: t, schema: compileSchema(t), signal: make(chan struct{}, 1)}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.errs {
			t.Error(e)
		}
	})
	return c
}

// settle waits until no message has arrived for a while, so that all()
// holds everything already sent.
func (c *collector) settle() {
	for n := -1; ; {
		time.Sleep(200 * time.Millisecond)
		m := len(c.all())
		if m == n {
			return
		}
		n = m
	}
}

func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.EventV1))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("event.v1.json", doc); err != nil {
		t.Fatalf("schema: %v", err)
	}
	s, err := c.Compile("event.v1.json")
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	return s
}

// decodePayload decodes a message by its Content-Type into JSON types.
func decodePayload(m *nats.Msg) (map[string]any, error) {
	data := m.Data
	switch ct := m.Header.Get("Content-Type"); ct {
	case "application/json":
	case "application/cbor":
		var v any
		if err := cbor.Unmarshal(m.Data, &v); err != nil {
			return nil, fmt.Errorf("cbor: %w", err)
		}
		// Give CBOR documents the types that JSON decoding gives, so that
		// both formats are checked by the same assertions.
		var err error
		if data, err = json.Marshal(normalise(v)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return doc, nil
}

// normalise turns CBOR's map[any]any into map[string]any.
func normalise(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = normalise(x)
		}
		return m
	case []any:
		for i := range v {
			v[i] = normalise(v[i])
		}
	}
	return v
}

func (c *collector) receive(m *nats.Msg) {
	doc, err := decodePayload(m)
	if err == nil {
		var inst any
		inst, err = jsonschema.UnmarshalJSON(bytes.NewReader(mustJSON(doc)))
		if err == nil {
			err = c.schema.Validate(inst)
		}
	}
	c.mu.Lock()
	if err != nil {
		c.errs = append(c.errs, fmt.Sprintf("message on %s: %v", m.Subject, err))
	} else {
		c.msgs = append(c.msgs, msg{subject: m.Subject, doc: doc})
	}
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// all returns a copy of the messages so far.
func (c *collector) all() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

// waitFor waits until a message after the first `from` satisfies ok and
// returns its position.
func (c *collector) waitFor(from int, what string, ok func(msg) bool) int {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		msgs := c.all()
		for i := from; i < len(msgs); i++ {
			if ok(msgs[i]) {
				return i
			}
		}
		select {
		case <-c.signal:
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s; got %d messages", what, len(msgs))
		}
	}
}

// runBridge runs the bridge until the test ends and checks that it stops
// cleanly when asked to.
func runBridge(t testing.TB, ctx context.Context, cfg config.Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLogger(t)) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("run did not return 10s after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
