package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nlbridge/nlbridge/config"
	"github.com/nlbridge/nlbridge/sink"
)

// requestOptions are the settings of "nlbridge request-dump".
type requestOptions struct {
	server  string
	host    string // "" asks every host
	iface   string // "" for every interface
	control string // subjects.control of the bridges
	timeout time.Duration
	json    bool
}

// requestDumpCmd runs "nlbridge request-dump": it asks one bridge, or all,
// to publish a dump and prints their replies.
func requestDumpCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nlbridge request-dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o requestOptions
	fs.StringVar(&o.server, "server", "", "NATS server `URL`s, separated by commas (default: $NATS_URL, or "+defaultServer+")")
	fs.StringVar(&o.host, "host", "", "ask only this `host` (default: every host)")
	fs.StringVar(&o.iface, "interface", "", "dump only the link and addresses of the interface with this `name`")
	fs.StringVar(&o.control, "control", "nlbridge", "the `prefix` of the bridges' control subjects (their subjects.control)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for a reply; when asking every host, for each next reply")
	fs.BoolVar(&o.json, "json", false, "print each reply as the JSON the bridge sent")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: nlbridge request-dump [--server URL] [--host H] [--interface NAME] [--control P] [--timeout 5s] [--json]\n\n"+
			"Asks one bridge, or every bridge, to publish a dump of its links and addresses,\n"+
			"and prints each reply once the dump has reached the NATS server:\n\n"+
			"  web-01: 3 links, 4 addrs, seq 8..14 (boot 5d64e52ef04fe2a7)\n\n"+
			"The exit status is 1 when no bridge replied or one replied with an error.\n\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o.server = serverURL(o.server)
	if o.timeout <= 0 {
		fmt.Fprintf(stderr, "nlbridge request-dump: --timeout %v: want a positive duration\n", o.timeout)
		return 2
	}
	if err := checkPrefix(o.control); err != nil {
		fmt.Fprintf(stderr, "nlbridge request-dump: --control: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := requestDump(ctx, o, stdout, stderr); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "nlbridge request-dump: %v\n", err)
		}
		return 1
	}
	return 0
}

// errReported is returned for a failure that has been reported already.
var errReported = errors.New("reported")

// requestDump sends the dump request and prints the replies: for one host
// its reply, for every host each reply until o.timeout passes without a
// new one. It fails if there was no reply, or an error reply.
func requestDump(ctx context.Context, o requestOptions, stdout, stderr io.Writer) error {
	req := sink.DumpRequest{Interface: o.iface}
	if o.host != "" && o.timeout <= 30*time.Second {
		// The bridge drops the request when this command has stopped
		// waiting for it, instead of dumping for nobody.
		req.Timeout = o.timeout.String()
	}
	var body []byte
	if req != (sink.DumpRequest{}) {
		body, _ = json.Marshal(req) // cannot fail
	}
	subject := o.control + ".dump"
	if o.host != "" {
		subject = o.control + "." + sink.EscapeToken(o.host) + ".dump"
	}
	nc, err := nats.Connect(o.server, nats.Name("nlbridge request-dump"))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", config.RedactURL(o.server), config.RedactError(err))
	}
	defer nc.Close()

	if o.host != "" {
		rctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		m, err := nc.RequestWithContext(rctx, subject, body)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("no bridge answers on %s: is nlbridge running as host %s?", subject, quoted(o.host))
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("no reply on %s within %v", subject, o.timeout)
		case err != nil:
			return fmt.Errorf("request on %s: %w", subject, err)
		}
		if !printReply(m, o, stdout, stderr) {
			return errReported
		}
		return nil
	}

	// Every host replies to the same request: gather the replies on an
	// inbox of our own until they stop coming.
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", inbox, err)
	}
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return fmt.Errorf("request on %s: %w", subject, err)
	}
	replies, failed := 0, false
	for {
		rctx, cancel := context.WithTimeout(ctx, o.timeout)
		m, err := sub.NextMsgWithContext(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			switch {
			case replies == 0:
				return fmt.Errorf("no reply on %s within %v", subject, o.timeout)
			case failed:
				return errReported
			}
			return nil
		case errors.Is(err, nats.ErrNoResponders):
			// The server says that nothing subscribes to the subject.
			return fmt.Errorf("no bridge answers on %s: is nlbridge running with subjects.control %s?", subject, o.control)
		case err != nil:
			return fmt.Errorf("receive replies: %w", err)
		}
		replies++
		if !printReply(m, o, stdout, stderr) {
			failed = true
		}
	}
}

// printReply prints a reply to a dump request and reports whether it was a
// success: micro error replies and replies that do not parse go to stderr.
func printReply(m *nats.Msg, o requestOptions, stdout, stderr io.Writer) bool {
	who := ""
	if o.host != "" {
		who = quoted(o.host) + ": "
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		fmt.Fprintf(stderr, "nlbridge request-dump: %serror %s: %s\n", who, code, m.Header.Get(micro.ErrorHeader))
		return false
	}
	if o.json {
		fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(m.Data))
		return true
	}
	var r sink.DumpReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		fmt.Fprintf(stderr, "nlbridge request-dump: %sbad reply %q: %v\n", who, m.Data, err)
		return false
	}
	fmt.Fprintln(stdout, replyLine(r))
	return true
}

// replyLine formats a reply as
// "web-01: 3 links, 4 addrs, seq 8..14 (boot 5d64e52ef04fe2a7)", with the
// interface after the host for a narrowed dump: "web-01 eth0: 1 link, …".
func replyLine(r sink.DumpReply) string {
	b := []byte(quoted(r.Host))
	if r.Interface != "" {
		b = append(append(b, ' '), quoted(r.Interface)...)
	}
	b = appendCount(append(b, ": "...), r.Links, "link")
	b = appendCount(append(b, ", "...), r.Addrs, "addr")
	b = strconv.AppendUint(append(b, ", seq "...), r.FirstSeq, 10)
	b = strconv.AppendUint(append(b, ".."...), r.LastSeq, 10)
	b = append(append(append(b, " (boot "...), quoted(r.Boot)...), ')')
	return string(b)
}

// appendCount appends n and a noun, plural unless n is 1: "1 link",
// "3 addrs", as the text of SYNC markers has them.
func appendCount(b []byte, n int, noun string) []byte {
	b = append(strconv.AppendInt(b, int64(n), 10), ' ')
	b = append(b, noun...)
	if n != 1 {
		b = append(b, 's')
	}
	return b
}

// quoted returns s as it is when it is printable UTF-8, and Go-quoted
// otherwise, as encode.Text shows names.
func quoted(s string) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
		i += size
	}
	return s
}
