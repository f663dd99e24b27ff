package sink

// An EmbeddedOption configures the server StartEmbedded starts.
type EmbeddedOption func(*embeddedOptions)

// embeddedOptions are what EmbeddedOptions set.
type embeddedOptions struct {
	storeDir string // JetStream's directory; "" for nats-server's default
}

// StoreDir keeps the embedded server's JetStream file storage in dir. The
// state bucket is created with memory storage unless a store directory is
// set (see the KVConfig that cmd/nlbridge builds).
func StoreDir(dir string) EmbeddedOption {
	return func(o *embeddedOptions) { o.storeDir = dir }
}
