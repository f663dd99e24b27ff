// Package config reads nlbridge's configuration, a YAML file and
// environment variables, into typed, validated values.
//
// Decoding is strict: unknown and duplicate keys, values of the wrong YAML
// type, invalid values and files holding more than one document are errors.
// Each error names the file, line and dotted key it is about, such as
//
//	nlbridge.yaml:4: netlink.recieve_buffer: unknown key (known: netns, receive_buffer)
//
// Every key can also be set by an environment variable, NLBRIDGE_ and the
// dotted key in upper case with '.' replaced by '_' (NLBRIDGE_NATS_SERVERS,
// NLBRIDGE_NATS_AUTH_PASSWORD). Read applies them over the file; an
// NLBRIDGE_ variable that names no key is an error, and errors about a value
// from the environment name its variable instead of a line:
//
//	environment NLBRIDGE_ENCODING: encoding: "xml" is not one of json, cbor
//
// Parsing stops at the first error. Config.YAML prints the configuration in
// effect, secrets redacted.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrInvalid is wrapped by every error Parse, Load, Read and Validate return
// for a configuration that does not parse or holds an invalid value. Errors
// opening or reading a file do not wrap it.
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
	KV       KV
	Filter   Filter
	Dump     Dump
	Log      Log
	Metrics  Metrics
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
	Auth     Auth
	TLS      TLS
	Embedded Embedded
}

// Auth says how nlbridge authenticates to NATS.Servers: with at most one
// method, user and password, token, credentials file or NKey seed file.
// Validate rejects more than one, and a user without a password or a
// password without a user. The files are read when nlbridge connects; a
// relative path is relative to nlbridge's working directory.
type Auth struct {
	// User and Password authenticate together.
	User string
	// Password is a secret: YAML prints it redacted.
	Password string
	// Token is a secret: YAML prints it redacted.
	Token string
	// CredentialsFile is a .creds file holding a user JWT and NKey seed.
	CredentialsFile string
	// NKeySeedFile is a file holding an NKey user seed.
	NKeySeedFile string
}

// Method names the authentication method a configures: "none",
// "user/password", "token", "credentials" or "nkey". Of an invalid Auth
// that sets several, it names the first in that order.
func (a Auth) Method() string {
	if m := a.Methods(); len(m) > 0 {
		return m[0]
	}
	return "none"
}

// Methods lists the methods a sets, in Method's order; a valid Auth sets
// at most one.
func (a Auth) Methods() []string {
	var m []string
	if a.User != "" || a.Password != "" {
		m = append(m, "user/password")
	}
	if a.Token != "" {
		m = append(m, "token")
	}
	if a.CredentialsFile != "" {
		m = append(m, "credentials")
	}
	if a.NKeySeedFile != "" {
		m = append(m, "nkey")
	}
	return m
}

// TLS configures TLS on the connection to NATS.Servers. The files are read
// when nlbridge connects; a relative path is relative to nlbridge's working
// directory.
type TLS struct {
	// CAFile holds the PEM certificates that verify the servers; "" uses the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key,
	// set together, for servers that verify clients.
	CertFile string
	KeyFile  string
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool
	// HandshakeFirst starts TLS before the NATS protocol, for servers
	// configured with handshake_first.
	HandshakeFirst bool
}

// Enabled reports whether any TLS setting is set, in which case the
// connection requires TLS.
func (t TLS) Enabled() bool { return t != TLS{} }

// Embedded configures the NATS server nlbridge runs when NATS.Servers is
// empty.
type Embedded struct {
	// Listen is the host:port the server listens on; the port is a number
	// from 0 to 65535. Default: "127.0.0.1:4222".
	Listen string
	// StoreDir is the directory the embedded server keeps JetStream (the
	// state bucket) in; "", the default, keeps it in memory, lost when
	// nlbridge stops.
	StoreDir string
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

// KV configures the state bucket: a JetStream key-value bucket holding,
// for each host, the current state of its links and addresses and its
// presence.
type KV struct {
	// Bucket names the bucket: letters, digits, '_' and '-'. "" turns the
	// state bucket off. Default: "netlink".
	Bucket string
	// Replicas is the number of copies of the bucket, 1 to 5, when nlbridge
	// creates it. Default: 1.
	Replicas int
	// Storage is where the servers keep the bucket when nlbridge creates
	// it. Default: StorageFile.
	Storage Storage
	// PresenceTTL is how long this host's presence key lives without being
	// refreshed: a crashed or partitioned nlbridge's presence expires after
	// it. From 3s to 1h, in whole seconds. Default: 30s.
	PresenceTTL time.Duration
}

// Storage is where a JetStream server keeps a stream.
type Storage string

// StorageFile and StorageMemory are the storages a bucket can have.
const (
	StorageFile   Storage = "file"
	StorageMemory Storage = "memory"
)

// Filter narrows the events nlbridge publishes. An interface is published
// when its name matches a glob in Include, or Include is empty, and matches
// none in Exclude; an address follows its interface.
type Filter struct {
	// Include and Exclude are globs on interface names, in path.Match syntax
	// (*, ?, [a-z], [^0-9], \ to escape). Default: none.
	Include, Exclude []string
	// Families lists the address families published: "inet", "inet6" or
	// both, each at most once. Default: both.
	Families []string
	// Events lists the event types published: "NEWLINK", "DELLINK",
	// "NEWADDR", "DELADDR", each at most once. Default: all four.
	Events []string
}

// families and events are the values Filter.Families and Filter.Events
// may hold, in the order Default lists them.
var (
	families = []string{"inet", "inet6"}
	events   = []string{"NEWLINK", "DELLINK", "NEWADDR", "DELADDR"}
)

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

// Log configures nlbridge's log, written to standard error.
type Log struct {
	// Level is the least severity logged: slog.LevelDebug, LevelInfo,
	// LevelWarn or LevelError. Default: slog.LevelInfo.
	Level slog.Level
	// Format is the format of log lines. Default: LogText.
	Format LogFormat
}

// LogFormat is the format of log lines.
type LogFormat string

// LogText and LogJSON are the formats nlbridge can log in: key=value text
// and one JSON object per line, as slog's TextHandler and JSONHandler write
// them.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// levels are the names Log.Level may be given, in increasing severity. They
// are the four slog.Level constants' String values in lower case.
var levels = []string{"debug", "info", "warn", "error"}

// Metrics configures the server nlbridge offers its metrics on.
type Metrics struct {
	// Listen is the host:port the metrics server listens on, the port a
	// number from 0 to 65535; "", the default, runs none.
	Listen string
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
		KV:       KV{Bucket: "netlink", Replicas: 1, Storage: StorageFile, PresenceTTL: 30 * time.Second},
		Filter:   Filter{Families: slices.Clone(families), Events: slices.Clone(events)},
		Dump:     Dump{OnStart: true, MinInterval: time.Second},
		Log:      Log{Level: slog.LevelInfo, Format: LogText},
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

// Load reads and parses the configuration file at path, as Parse does. It
// ignores the environment; see Read.
func Load(path string) (Config, error) {
	d := newDecoder(path)
	c := Default()
	if err := d.load(path, &c); err != nil {
		return Config{}, err
	}
	return d.finish(c)
}

// Parse reads a YAML configuration from r, fills absent keys from Default and
// validates the result. An empty input is all defaults. name, usually the
// file's path, starts every error message. It ignores the environment; see
// Read.
func Parse(r io.Reader, name string) (Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", name, err)
	}
	d := newDecoder(name)
	c := Default()
	if err := d.document(b, &c); err != nil {
		return Config{}, err
	}
	return d.finish(c)
}

// Read returns the configuration nlbridge runs with: Default, then the YAML
// file at path unless path is "", then the environment variables in environ
// (as os.Environ returns them: "NAME=value"), then Validate.
//
// Each key can be set by the variable NLBRIDGE_ + the dotted key in upper
// case with '.' replaced by '_', such as NLBRIDGE_NATS_AUTH_PASSWORD for
// nats.auth.password. Its value is read as the key's value would be written
// in the file, without quotes: true or false, 4MiB or 65536, 1s; a string is
// taken as it stands, and a list is comma-separated, each item trimmed of
// spaces, with "" the empty list. A variable overrides the file; when environ
// holds one several times, the last wins. An NLBRIDGE_ variable that names no
// key is an error, and an error about a value from the environment names its
// variable in place of file and line.
func Read(path string, environ []string) (Config, error) {
	d := newDecoder(path)
	c := Default()
	if path != "" {
		if err := d.load(path, &c); err != nil {
			return Config{}, err
		}
	}
	if err := d.environment(environ, &c); err != nil {
		return Config{}, err
	}
	return d.finish(c)
}

// load decodes the file at path into c.
func (d *decoder) load(path string, c *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	return d.document(b, c)
}

// finish fills in the defaults that follow other keys and validates c,
// pointing an error at where its key was set.
func (d *decoder) finish(c Config) (Config, error) {
	if _, ok := d.set["nats.name"]; !ok {
		// The default follows the host the file or environment may have set.
		c.NATS.Name = defaultName(c.Host)
	}
	if e := c.check(); e != nil {
		// Point at the offending value, or at no line if it is a default.
		e.file = d.file
		e.line, e.env = d.locate(e.key)
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
	if e := c.NATS.Auth.check(); e != nil {
		return e
	}
	if e := c.NATS.TLS.check(); e != nil {
		return e
	}
	if len(c.NATS.Servers) == 0 {
		// The embedded server asks for neither: settings meant for a
		// server that nats.servers forgot to name would be ignored.
		if m := c.NATS.Auth.Method(); m != "none" {
			return invalid("nats.auth", fmt.Errorf("%s is set but nats.servers is empty, and the embedded server takes no credentials: name the server in nats.servers, or remove nats.auth", m))
		}
		if c.NATS.TLS.Enabled() {
			return invalid("nats.tls", errors.New("is set but nats.servers is empty, and the embedded server does not use TLS: name the server in nats.servers, or remove nats.tls"))
		}
	}
	if err := checkListen(c.NATS.Embedded.Listen); err != nil {
		return invalid("nats.embedded.listen", err)
	}
	if err := checkFile(strings.TrimSuffix(c.NATS.Embedded.StoreDir, "/")); err != nil {
		return invalid("nats.embedded.store_dir", err)
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
	if strings.HasPrefix(p+".", ctl+".") || strings.HasPrefix(ctl+".", p+".") {
		// Reported on the section, as either key may be the one set.
		return invalid("subjects", fmt.Errorf(
			"prefix %q and control %q overlap: subscribers to one would see the other", p, ctl))
	}
	if e := c.KV.check(); e != nil {
		return e
	}
	if e := c.Filter.check(); e != nil {
		return e
	}
	if d := c.Dump.MinInterval; d < 0 || d > time.Hour {
		return invalid("dump.min_interval", fmt.Errorf("%v is out of range 0s..1h", d))
	}
	if l := levelName(c.Log.Level); !slices.Contains(levels, l) {
		return invalid("log.level", fmt.Errorf("%q is not one of %s", l, strings.Join(levels, ", ")))
	}
	switch c.Log.Format {
	case LogText, LogJSON:
	default:
		return invalid("log.format", fmt.Errorf("%q is not one of %s, %s", c.Log.Format, LogText, LogJSON))
	}
	if l := c.Metrics.Listen; l != "" {
		if err := checkListen(l); err != nil {
			return invalid("metrics.listen", err)
		}
	}
	return nil
}

// check returns the first problem with a. It never quotes a secret.
func (a Auth) check() *invalidError {
	if m := a.Methods(); len(m) > 1 {
		// Reported on the section, as any of the keys may be the stray one.
		return invalid("nats.auth", fmt.Errorf("more than one method is set (%s); use one", strings.Join(m, ", ")))
	}
	switch {
	case a.User != "" && a.Password == "":
		return invalid("nats.auth.user", errors.New("set without nats.auth.password (they go together)"))
	case a.Password != "" && a.User == "":
		return invalid("nats.auth.password", errors.New("set without nats.auth.user (they go together)"))
	}
	if err := checkFile(a.CredentialsFile); err != nil {
		return invalid("nats.auth.credentials_file", err)
	}
	if err := checkFile(a.NKeySeedFile); err != nil {
		return invalid("nats.auth.nkey_seed_file", err)
	}
	return nil
}

// check returns the first problem with t.
func (t TLS) check() *invalidError {
	for _, f := range []struct{ key, path string }{
		{"nats.tls.ca_file", t.CAFile}, {"nats.tls.cert_file", t.CertFile}, {"nats.tls.key_file", t.KeyFile},
	} {
		if err := checkFile(f.path); err != nil {
			return invalid(f.key, err)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return invalid("nats.tls.cert_file", errors.New("set without nats.tls.key_file (they go together)"))
	case t.KeyFile != "" && t.CertFile == "":
		return invalid("nats.tls.key_file", errors.New("set without nats.tls.cert_file (they go together)"))
	}
	return nil
}

// check returns the first problem with k.
func (k KV) check() *invalidError {
	for i := 0; i < len(k.Bucket); i++ {
		if b := k.Bucket[i]; !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return invalid("kv.bucket", fmt.Errorf("%q contains %q, want letters, digits, '_' and '-' (or \"\" for no bucket)", k.Bucket, b))
		}
	}
	if k.Replicas < 1 || k.Replicas > 5 {
		return invalid("kv.replicas", fmt.Errorf("%d is out of range 1..5", k.Replicas))
	}
	switch k.Storage {
	case StorageFile, StorageMemory:
	default:
		return invalid("kv.storage", fmt.Errorf("%q is not one of %s, %s", k.Storage, StorageFile, StorageMemory))
	}
	if d := k.PresenceTTL; d < 3*time.Second || d > time.Hour || d%time.Second != 0 {
		return invalid("kv.presence_ttl", fmt.Errorf("%v is not whole seconds in range 3s..1h", d))
	}
	return nil
}

// check returns the first problem with f.
func (f Filter) check() *invalidError {
	for _, l := range []struct {
		key   string
		globs []string
	}{{"filter.interfaces.include", f.Include}, {"filter.interfaces.exclude", f.Exclude}} {
		for i, g := range l.globs {
			if err := checkGlob(g); err != nil {
				return invalid(fmt.Sprintf("%s[%d]", l.key, i), err)
			}
		}
	}
	if e := checkChoices("filter.families", f.Families, families); e != nil {
		return e
	}
	return checkChoices("filter.events", f.Events, events)
}

// checkFile checks s can name a file that nlbridge opens later. "" is unset.
func checkFile(s string) error {
	switch {
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%q contains a NUL byte, want a path", s)
	case s == "~" || strings.HasPrefix(s, "~/"):
		return fmt.Errorf("%q starts with ~, which nlbridge does not expand; want an absolute or relative path", s)
	case strings.HasSuffix(s, "/"):
		return fmt.Errorf("%q ends in /, want the path of a file", s)
	}
	return nil
}

// checkGlob checks s is a path.Match pattern. path.Match checks the whole
// pattern even when it cannot match "".
func checkGlob(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("%q is not a glob: %v", s, err)
	}
	return nil
}

// checkChoices checks list holds one or more of allowed, each at most once.
func checkChoices(key string, list, allowed []string) *invalidError {
	want := strings.Join(allowed, ", ")
	if len(list) == 0 {
		return invalid(key, fmt.Errorf("must not be empty, want one or more of %s", want))
	}
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !slices.Contains(allowed, s) {
			return invalid(k, fmt.Errorf("%q is not one of %s", s, want))
		}
		if j := slices.Index(list[:i], s); j >= 0 {
			return invalid(k, fmt.Errorf("%q is already listed at %s[%d]", s, key, j))
		}
	}
	return nil
}

// levelName returns the name of l as the file writes it: "info", or
// "info+2" for a level between the four, which check rejects.
func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

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

// checkServer checks s is a NATS server URL. Its errors quote s with its
// user information redacted.
func checkServer(s string) error {
	q := strconv.Quote(RedactURL(s))
	u, err := url.Parse(s)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](RedactError(err)); ok {
			err = ue.Err
		}
		return fmt.Errorf("%s is not a URL: %v", q, err)
	}
	if !strings.Contains(s, "://") {
		return fmt.Errorf("%s is not a URL such as nats://host:4222", q)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%s has scheme %s, want nats, tls, ws or wss", q, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%s has no host", q)
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return fmt.Errorf("%s has port %s, want a number 0-65535", q, p)
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
