//go:build noembedded

package sink

import "errors"

// HasEmbedded reports whether this build holds the embedded NATS server:
// built with the tag noembedded, it does not.
const HasEmbedded = false

// ErrNoEmbedded is what StartEmbedded returns in a build without the
// embedded server.
var ErrNoEmbedded = errors.New("sink: this nlbridge was built without the embedded NATS server (go build -tags noembedded): set nats.servers")

// StartEmbedded fails: this build leaves the NATS server out, which makes
// the binary about half the size and its idle memory about 3 MiB smaller.
func StartEmbedded(EmbeddedConfig) (EmbeddedServer, error) { return nil, ErrNoEmbedded }
