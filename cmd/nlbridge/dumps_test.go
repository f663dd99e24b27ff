package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/source"
)

// failingDumper fails its first fails dumps.
type failingDumper struct {
	fails, calls int
}

func (d *failingDumper) Dump(_ context.Context, reason event.Reason, _ string) (event.Event, error) {
	d.calls++
	if d.calls <= d.fails {
		return event.Event{}, errors.New("source: dump: interrupted")
	}
	return event.Event{Type: event.Sync, Seq: 9, Sync: event.SyncInfo{Reason: reason}}, nil
}

// TestStartupDumpRetried: a startup dump that fails is asked for again
// until it is published; it stops when the context ends or the source is
// closed.
func TestStartupDumpRetried(t *testing.T) {
	old := startupRetry
	startupRetry = time.Millisecond
	t.Cleanup(func() { startupRetry = old })

	d := &failingDumper{fails: 3}
	startupDump(context.Background(), d, testLogger(t))
	if d.calls != 4 {
		t.Errorf("%d Dump calls for 3 failures, want 4", d.calls)
	}

	closed := dumperFunc(func(context.Context) error { return source.ErrClosed })
	done := make(chan struct{})
	go func() { startupDump(context.Background(), closed, discardLogger()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("startupDump kept asking a closed source")
	}
}

type dumperFunc func(context.Context) error

func (f dumperFunc) Dump(ctx context.Context, _ event.Reason, _ string) (event.Event, error) {
	return event.Event{}, f(ctx)
}
