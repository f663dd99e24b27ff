// Package config reads nlbridge's YAML configuration into typed, validated
// values.
//
// Decoding is strict: unknown and duplicate keys, values of the wrong YAML
// type, invalid values and files holding more than one document are errors.
// Each error names the file, line and dotted key it is about, such as
//
//	nlbridge.yaml:4: netlink.recieve_buffer: unknown key (known: netns, receive_buffer)
//
// Parsing stops at the first error.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrInvalid is wrapped by every error Parse, Load and Validate return for a
// configuration that does not parse or holds an invalid value. Errors opening
// or reading a file do not wrap it.
var ErrInvalid = errors.New("invalid config")

// Config is nlbridge's validated configuration.
type Config struct {
	// Host names this machine in subjects (escaped) and the NATS connection
	// name. Default: the system host name up to its first '.'.
	Host     string
	Netlink  Netlink
	NATS     NATS
	Encoding Encoding
	Subjects Subjects
	Dump     Dump
}

// Netlink configures the rtnetlink socket.
type Netlink struct {
	// NetNS is the path of the network namespace to watch, such as
	// /var/run/netns/blue; "" watches nlbridge's own. It must be absolute;
	// whether it exists is checked when nlbridge starts.
	NetNS string
	// ReceiveBuffer is the socket receive buffer size in bytes, from 64 KiB
	// to 1 GiB. Default: 4 MiB.
	ReceiveBuffer int
}

// NATS configures the connection events are published on.
type NATS struct {
	// Servers are NATS server URLs with scheme nats, tls, ws or wss. When
	// empty, the default, nlbridge runs an embedded server.
	Servers []string
	// Name is the connection name. Default: "nlbridge@" + Host.
	Name     string
	Embedded Embedded
}

// Embedded configures the NATS server nlbridge runs when NATS.Servers is
// empty.
type Embedded struct {
	// Listen is the host:port the server listens on; the port is a number
	// from 0 to 65535. Default: "127.0.0.1:4222".
	Listen string
}

// Encoding is the wire format of published events.
type Encoding string

// EncodingJSON and EncodingCBOR are the encodings nlbridge can publish.
const (
	EncodingJSON Encoding = "json"
	EncodingCBOR Encoding = "cbor"
)

// Subjects configures the first tokens of the NATS subjects nlbridge uses.
// Each is one or more '.'-separated tokens of printable ASCII without
// whitespace, '*' or '>', and neither may equal or be a token prefix of the
// other, so that subscribers to one never see the other.
type Subjects struct {
	// Prefix starts the subjects events are published on. Default: "netlink".
	Prefix string
	// Control starts nlbridge's own control subjects. Default: "nlbridge".
	Control string
}

// Dump configures the dumps of current state nlbridge publishes.
type Dump struct {
	// OnStart publishes every link and address when nlbridge starts.
	// Default: true.
	OnStart bool
	// MinInterval is the least time between the end of one requested dump
	// and the start of the next: requests that come sooner wait and share
	// one dump. Default: 1s; 0 to 1h.
	MinInterval time.Duration
}

const (
	minReceiveBuffer     = 64 << 10
	maxReceiveBuffer     = 1 << 30
	defaultReceiveBuffer = 4 << 20
)

// Default returns the configuration a file's absent keys take. Host is the
// short system host name, or "" if it cannot be found, which Validate rejects.
func Default() Config {
	host := shortHostname()
	return Config{
		Host:    host,
		Netlink: Netlink{ReceiveBuffer: defaultReceiveBuffer},
		NATS: NATS{
			Name:     defaultName(host),
			Embedded: Embedded{Listen: "127.0.0.1:4222"},
		},
		Encoding: EncodingJSON,
		Subjects: Subjects{Prefix: "netlink", Control: "nlbridge"},
		Dump:     Dump{OnStart: true, MinInterval: time.Second},
	}
}

func shortHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

func defaultName(host string) string { return "nlbridge@" + host }

// Load reads and parses the configuration file at path.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a YAML configuration from r, fills absent keys from Default and
// validates the result. An empty input is all defaults. name, usually the
// file's path, starts every error message.
func Parse(r io.Reader, name string) (Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", name, err)
	}

	d := decoder{file: name, lines: make(map[string]int)}
	c := Default()
	if err := d.document(b, &c); err != nil {
		return Config{}, err
	}
	if _, ok := d.lines["nats.name"]; !ok {
		// The default follows the host the file may have set.
		c.NATS.Name = defaultName(c.Host)
	}
	if e := c.check(); e != nil {
		// Point at the offending value, or at no line if it is a default.
		e.file, e.line = name, d.lines[e.key]
		return Config{}, e
	}
	return c, nil
}

// Validate checks c as Parse checks what it decodes; use it on a Config built
// or changed in code. Its errors wrap ErrInvalid and name the key.
func (c Config) Validate() error {
	if e := c.check(); e != nil {
		return e
	}
	return nil
}

// check returns the first problem with c, in field order.
func (c Config) check() *invalidError {
	if err := checkHost(c.Host); err != nil {
		return invalid("host", err)
	}
	if ns := c.Netlink.NetNS; ns != "" && !filepath.IsAbs(ns) {
		return invalid("netlink.netns", fmt.Errorf("%q is not an absolute path", ns))
	}
	if n := c.Netlink.ReceiveBuffer; n < minReceiveBuffer || n > maxReceiveBuffer {
		return invalid("netlink.receive_buffer", fmt.Errorf("%s is out of range %s..%s",
			formatSize(n), formatSize(minReceiveBuffer), formatSize(maxReceiveBuffer)))
	}
	for i, s := range c.NATS.Servers {
		if err := checkServer(s); err != nil {
			return invalid(fmt.Sprintf("nats.servers[%d]", i), err)
		}
	}
	if c.NATS.Name == "" {
		return invalid("nats.name", errors.New("must not be empty"))
	}
	if err := checkListen(c.NATS.Embedded.Listen); err != nil {
		return invalid("nats.embedded.listen", err)
	}
	switch c.Encoding {
	case EncodingJSON, EncodingCBOR:
	default:
		return invalid("encoding", fmt.Errorf("%q is not one of %s, %s", c.Encoding, EncodingJSON, EncodingCBOR))
	}
	p, ctl := c.Subjects.Prefix, c.Subjects.Control
	if err := checkSubject(p); err != nil {
		return invalid("subjects.prefix", err)
	}
	if err := checkSubject(ctl); err != nil {
		return invalid("subjects.control", err)
	}
	if d := c.Dump.MinInterval; d < 0 || d > time.Hour {
		return invalid("dump.min_interval", fmt.Errorf("%v is out of range 0s..1h", d))
	}
	if strings.HasPrefix(p+".", ctl+".") || strings.HasPrefix(ctl+".", p+".") {
		// Reported on the section, as either key may be the one set.
		return invalid("subjects", fmt.Errorf(
			"prefix %q and control %q overlap: subscribers to one would see the other", p, ctl))
	}
	return nil
}

func checkHost(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains %q, want no whitespace or control characters", s, r)
		}
	}
	return nil
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if !strings.Contains(s, "://") {
		return fmt.Errorf("%q is not a URL such as nats://host:4222", s)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%q has scheme %s, want nats, tls, ws or wss", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return fmt.Errorf("%q has port %s, want a number 0-65535", s, p)
		}
	}
	return nil
}

func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		return fmt.Errorf("%q is not host:port: %v", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q has port %q, want a number 0-65535", s, port)
	}
	return nil
}

// checkSubject checks s can start NATS subjects: tokens of printable ASCII
// joined by '.', with no wildcards.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '*' || r == '>' {
			return fmt.Errorf("%q contains %q, want printable ASCII without whitespace, '*' or '>'", s, r)
		}
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token", s)
		}
	}
	return nil
}

// units are the suffixes a size may carry, largest first.
var units = []struct {
	suffix string
	n      int
}{
	{"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3},
}

// parseSize parses a byte count: decimal digits with an optional unit, such
// as "65536" or "4MiB".
func parseSize(s string) (int, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	digits, unit := s[:i], s[i:]
	mult := 1
	if unit != "" {
		mult = 0
		for _, u := range units {
			if u.suffix == unit {
				mult = u.n
			}
		}
	}
	if digits == "" || mult == 0 {
		return 0, fmt.Errorf("%q is not a size: want digits and an optional unit KiB, MiB, GiB, KB, MB or GB", s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt/int64(mult) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int(n) * mult, nil
}

// formatSize formats n with the largest unit that divides it.
func formatSize(n int) string {
	for _, u := range units {
		if n != 0 && n%u.n == 0 {
			return strconv.Itoa(n/u.n) + u.suffix
		}
	}
	return strconv.Itoa(n)
}
