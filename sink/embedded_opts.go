package sink

import (
	"fmt"
	"os"
)

// An EmbeddedOption configures the server StartEmbedded starts.
type EmbeddedOption func(*embeddedOptions)

// embeddedOptions are what EmbeddedOptions set.
type embeddedOptions struct {
	storeDir string // JetStream's directory; "" for a temporary one
}

// StoreDir keeps the embedded server's JetStream file storage in dir, so
// that a file bucket survives restarts. Without it, JetStream gets a
// private temporary directory, removed at shutdown, and nlbridge creates
// the state bucket in memory (see the KVConfig that cmd/nlbridge builds).
func StoreDir(dir string) EmbeddedOption {
	return func(o *embeddedOptions) { o.storeDir = dir }
}

// jetStreamDir returns the directory JetStream is to use and what removes
// it once the server has stopped: nothing for StoreDir's. nats-server's
// own default, a directory under /tmp shared by every process, may belong
// to another user.
func (o *embeddedOptions) jetStreamDir() (string, func(), error) {
	if o.storeDir != "" {
		return o.storeDir, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "nlbridge-jetstream-")
	if err != nil {
		return "", nil, fmt.Errorf("sink: embedded NATS server: JetStream directory: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// cleanupServer is an embedded server that removes its temporary
// directory once it has shut down.
type cleanupServer struct {
	EmbeddedServer
	cleanup func()
}

func (s cleanupServer) Shutdown() {
	s.EmbeddedServer.Shutdown()
	s.WaitForShutdown()
}

func (s cleanupServer) WaitForShutdown() {
	s.EmbeddedServer.WaitForShutdown()
	s.cleanup()
}
