package sink

import "log/slog"

// EmbeddedConfig configures the NATS server that StartEmbedded starts.
type EmbeddedConfig struct {
	// Listen is the host:port the server listens on (port 0 picks a free
	// one), nats.embedded.listen.
	Listen string
	// Prefix is the prefix of the event subjects, subjects.prefix: only
	// nlbridge's own connection may publish on it.
	Prefix string
	// StoreDir is where the server's JetStream keeps file streams,
	// nats.embedded.store_dir; "" gives it a private temporary directory,
	// removed at shutdown (the state bucket is then created in memory).
	StoreDir string
	// Bucket is the state bucket, kv.bucket: only nlbridge's own
	// connection may write it, or delete or change its stream.
	Bucket string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}
