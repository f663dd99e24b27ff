//go:build noembedded

package sink

import (
	"errors"
	"log/slog"
)

// HasEmbedded reports whether this build holds the embedded NATS server:
// built with the tag noembedded, it does not.
const HasEmbedded = false

// ErrNoEmbedded is what StartEmbedded returns in a build without the
// embedded server.
var ErrNoEmbedded = errors.New("sink: this nlbridge was built without the embedded NATS server (go build -tags noembedded): set nats.servers")

// StartEmbedded fails: this build leaves the NATS server out, which makes
// the binary about half the size and its idle memory about 3 MiB smaller.
func StartEmbedded(string, *slog.Logger, ...EmbeddedOption) (EmbeddedServer, error) {
	return nil, ErrNoEmbedded
}
