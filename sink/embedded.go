//go:build !noembedded

package sink

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// HasEmbedded reports whether this build holds the embedded NATS server.
// A build with the tag noembedded leaves it out (see embedded_none.go).
const HasEmbedded = true

// StartEmbedded starts a NATS server inside nlbridge, listening on listen
// (host:port; port 0 picks a free one), for machines where no NATS server is
// configured. The caller shuts it down after closing the sink. It runs
// JetStream, for the state bucket (see StoreDir).
func StartEmbedded(listen string, log *slog.Logger, opts ...EmbeddedOption) (EmbeddedServer, error) {
	var o embeddedOptions
	for _, opt := range opts {
		opt(&o)
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("sink: embedded NATS server: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("sink: embedded NATS server: bad port %q", portStr)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
	} else {
		// nats-server only logs a listen failure; find it out first so that
		// the error says what is wrong.
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("sink: embedded NATS server cannot listen: %w (is another NATS server running? set nats.servers to use it)", err)
		}
		ln.Close()
	}
	storeDir, cleanup, err := o.jetStreamDir()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "nlbridge-embedded",
		Host:       host,
		Port:       port,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   storeDir,
	})
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("sink: embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		cleanup()
		return nil, fmt.Errorf("sink: embedded NATS server on %s did not start", listen)
	}
	return cleanupServer{ns, cleanup}, nil
}

// serverLogger sends nats-server's logs to slog.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
