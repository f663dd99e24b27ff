//go:build !linux

package source

import (
	"context"
	"errors"

	"github.com/nlbridge/nlbridge/event"
)

// Netlink is the rtnetlink source. It exists only on Linux; elsewhere Open
// returns an error.
type Netlink struct{}

var errNotLinux = errors.New("source: rtnetlink needs Linux")

// Open returns an error: rtnetlink exists only on Linux.
func Open(Config) (*Netlink, error) { return nil, errNotLinux }

// Run returns an error: rtnetlink exists only on Linux.
func (*Netlink) Run(context.Context, Handler) error { return errNotLinux }

// Dump returns an error: rtnetlink exists only on Linux.
func (*Netlink) Dump(context.Context, event.Reason, string) (event.Event, error) {
	return event.Event{}, errNotLinux
}

// Stats returns zero counters.
func (*Netlink) Stats() Stats { return Stats{} }

// Close does nothing.
func (*Netlink) Close() error { return nil }
