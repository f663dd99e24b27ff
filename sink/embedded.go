//go:build !noembedded

package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// HasEmbedded reports whether this build holds the embedded NATS server.
// A build with the tag noembedded leaves it out (see embedded_none.go).
const HasEmbedded = true

// StartEmbedded starts a NATS server inside nlbridge, listening on
// cfg.Listen, for machines where no NATS server is configured. Any local
// client may connect without credentials, subscribe to anything, ask for
// dumps and receive the replies, but may not publish events nor replies:
// the event subjects (cfg.Prefix) and the inboxes are nlbridge's and the
// server's alone, so that no local user can forge a DELLINK that every
// consumer would apply, nor the reply or the bucket entry that a consumer
// waits for (anonymousPublishDenied). A Listen address that
// is not loopback is logged as a warning. The caller shuts the server down
// after closing the sink.
func StartEmbedded(cfg EmbeddedConfig) (EmbeddedServer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		return nil, errors.New("sink: embedded NATS server: no event subject prefix")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
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
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("sink: embedded NATS server cannot listen: %w (is another NATS server running? set nats.servers to use it)", err)
		}
		ln.Close()
	}
	// Two users, NKeys made at start: nlbridge's own connection, which
	// alone holds its seed and may publish anything, and the user that
	// every client connecting without credentials is (NoAuthUser). NKeys
	// keep a password out of memory, logs and nats-server's warnings.
	own, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("sink: embedded NATS server: %w", err)
	}
	ownPub, _ := own.PublicKey()
	anonymous, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("sink: embedded NATS server: %w", err)
	}
	anonymousPub, _ := anonymous.PublicKey()
	anonymous.Wipe() // nobody needs its seed
	storeDir, cleanup, err := jetStreamDir(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "nlbridge-embedded",
		Host:       host,
		Port:       port,
		NoSigs:     true,
		Nkeys: []*server.NkeyUser{
			{Nkey: ownPub}, // no Permissions: all
			{Nkey: anonymousPub, Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: anonymousPublishDenied(cfg)},
			}},
		},
		NoAuthUser: anonymousPub,
		JetStream:  true, // for the state bucket
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
		return nil, fmt.Errorf("sink: embedded NATS server on %s did not start", cfg.Listen)
	}
	if !isLoopback(host) {
		log.Warn("nats.embedded.listen is not a loopback address: the embedded NATS server has no authentication for subscribers, and anyone who can reach it can read this host's interface state (publishing events is refused); listen on 127.0.0.1, or set nats.servers",
			"listen", cfg.Listen)
	}
	return &embedded{Server: ns, auth: nats.Nkey(ownPub, own.Sign), cleanup: cleanup}, nil
}

// anonymousPublishDenied lists the subjects that clients other than
// nlbridge may not publish on: what nlbridge alone writes and consumers
// trust. Anything else is allowed, so that they can ask for dumps on the
// control subjects, use $SRV discovery and JetStream's API.
//
// The events, and the inboxes: every reply a consumer trusts arrives on
// one of its "_INBOX." subjects, from nlbridge (a dump's reply, after
// which the consumer takes the dump as complete; a discovery answer) or
// from the server (JetStream's answers, and the state bucket's entries
// that a watch is delivered, a key's deletion included). Any client may
// subscribe to "_INBOX.>" and so learn those subjects; if it could also
// publish there, it could answer first, or slip a forged deletion into a
// Mirror's watch. No permission lets a client answer only the requests
// meant for it (nats-server's allow_responses lets it answer any request
// it received, and any client may subscribe to every request subject), so
// anonymous clients answer no request on the embedded server: a service of
// one's own needs a NATS server of one's own.
//
// Another subject of nlbridge's own output (a key-value bucket's
// "$KV.<bucket>.>") is denied by adding its line here.
func anonymousPublishDenied(cfg EmbeddedConfig) []string {
	deny := []string{
		cfg.Prefix, cfg.Prefix + ".>", // events
		"_INBOX.>", // replies (above)
	}
	if b := cfg.Bucket; b != "" {
		// The state bucket: its keys, and its stream's deletion, purge,
		// update and message deletion. Reading and watching it stay open.
		deny = append(deny, "$KV."+b+".>", "$JS.API.STREAM.DELETE.KV_"+b, "$JS.API.STREAM.PURGE.KV_"+b,
			"$JS.API.STREAM.UPDATE.KV_"+b, "$JS.API.STREAM.MSG.DELETE.KV_"+b)
	}
	return deny
}

// isLoopback reports whether a listen host (an IP address, a name or ""
// for every address) reaches only this machine. A name other than
// localhost is not resolved and counts as not loopback.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// embedded is the embedded server, with the credentials of nlbridge's own
// connection to it.
type embedded struct {
	*server.Server
	auth    nats.Option // nats.Nkey of nlbridge's own user
	cleanup func()      // removes JetStream's temporary directory
}

// Shutdown stops the server and waits for it (and its cleanup).
func (e *embedded) Shutdown() {
	e.Server.Shutdown()
	e.WaitForShutdown()
}

// WaitForShutdown waits for the server to stop, then removes JetStream's
// temporary directory, if it made one.
func (e *embedded) WaitForShutdown() {
	e.Server.WaitForShutdown()
	e.cleanup()
}

func (e *embedded) clientAuth() nats.Option { return e.auth }

// serverLogger sends nats-server's logs to slog.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
