package config

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const example = "../config.example.yaml"

// goodInputs parse to Default() changed by want.
var goodInputs = []struct {
	name string
	in   string
	want func(*Config)
}{
	{name: "empty", in: ""},
	{name: "comments only", in: "# nothing\n\n# here\n"},
	{name: "empty document", in: "---\n"},
	{name: "explicit document markers", in: "---\nencoding: cbor\n...\n", want: func(c *Config) { c.Encoding = EncodingCBOR }},
	{name: "empty mapping", in: "{}\n"},
	{
		name: "host sets default name",
		in:   "host: web-01\n",
		want: func(c *Config) { c.Host, c.NATS.Name = "web-01", "nlbridge@web-01" },
	},
	{
		name: "host may hold dots",
		in:   "host: web-01.example.net\n",
		want: func(c *Config) { c.Host, c.NATS.Name = "web-01.example.net", "nlbridge@web-01.example.net" },
	},
	{
		name: "name set beside host",
		in:   "host: web-01\nnats:\n  name: edge\n",
		want: func(c *Config) { c.Host, c.NATS.Name = "web-01", "edge" },
	},
	{
		name: "explicit string tag",
		in:   "host: !!str 123\n",
		want: func(c *Config) { c.Host, c.NATS.Name = "123", "nlbridge@123" },
	},
	{
		name: "anchor without alias",
		in:   "host: &h web-01\n",
		want: func(c *Config) { c.Host, c.NATS.Name = "web-01", "nlbridge@web-01" },
	},
	{
		name: "kv",
		in:   "kv:\n  bucket: state_1\n  replicas: 3\n  storage: memory\n  presence_ttl: 1m\n",
		want: func(c *Config) {
			c.KV = KV{Bucket: "state_1", Replicas: 3, Storage: StorageMemory, PresenceTTL: time.Minute}
		},
	},
	{
		name: "kv off",
		in:   "kv:\n  bucket: \"\"\n",
		want: func(c *Config) { c.KV.Bucket = "" },
	},
	{
		name: "embedded store_dir",
		in:   "nats:\n  embedded:\n    store_dir: /var/lib/nlbridge/\n",
		want: func(c *Config) { c.NATS.Embedded.StoreDir = "/var/lib/nlbridge/" },
	},
	{
		name: "netlink",
		in:   "netlink:\n  netns: /var/run/netns/blue\n  receive_buffer: 65536\n",
		want: func(c *Config) { c.Netlink = Netlink{NetNS: "/var/run/netns/blue", ReceiveBuffer: 65536} },
	},
	{name: "netns empty", in: "netlink:\n  netns: \"\"\n"},
	{name: "size KiB", in: "netlink: {receive_buffer: 512KiB}\n", want: func(c *Config) { c.Netlink.ReceiveBuffer = 512 << 10 }},
	{name: "size MB", in: "netlink: {receive_buffer: 8MB}\n", want: func(c *Config) { c.Netlink.ReceiveBuffer = 8e6 }},
	{name: "size GiB maximum", in: "netlink: {receive_buffer: 1GiB}\n", want: func(c *Config) { c.Netlink.ReceiveBuffer = 1 << 30 }},
	{name: "size string without unit", in: "netlink: {receive_buffer: \"65536\"}\n", want: func(c *Config) { c.Netlink.ReceiveBuffer = 65536 }},
	{name: "size hex integer", in: "netlink: {receive_buffer: 0x100000}\n", want: func(c *Config) { c.Netlink.ReceiveBuffer = 1 << 20 }},
	{
		name: "servers block",
		in:   "nats:\n  servers:\n    - nats://a.example.net:4222\n    - tls://b\n    - ws://c:80\n    - WSS://user:pw@d:443/path\n",
		want: func(c *Config) {
			c.NATS.Servers = []string{"nats://a.example.net:4222", "tls://b", "ws://c:80", "WSS://user:pw@d:443/path"}
		},
	},
	{
		name: "servers flow",
		in:   "nats: {servers: [\"nats://[::1]:4222\"]}\n",
		want: func(c *Config) { c.NATS.Servers = []string{"nats://[::1]:4222"} },
	},
	{name: "servers empty", in: "nats:\n  servers: []\n"},
	{name: "servers null", in: "nats:\n  servers:\n    # - nats://a:4222\n"},
	{name: "section null", in: "nats:\n  # name: x\ndump:\n"},
	{name: "listen any host", in: "nats:\n  embedded:\n    listen: \":4222\"\n", want: func(c *Config) { c.NATS.Embedded.Listen = ":4222" }},
	{name: "listen IPv6 port 0", in: "nats:\n  embedded:\n    listen: \"[::1]:0\"\n", want: func(c *Config) { c.NATS.Embedded.Listen = "[::1]:0" }},
	{name: "encoding json", in: "encoding: json\n"},
	{name: "encoding cbor", in: "encoding: cbor\n", want: func(c *Config) { c.Encoding = EncodingCBOR }},
	{
		name: "subjects",
		in:   "subjects:\n  prefix: a.b-c.D_9\n  control: a.bc\n",
		want: func(c *Config) { c.Subjects = Subjects{Prefix: "a.b-c.D_9", Control: "a.bc"} },
	},
	{
		name: "subjects share leading characters",
		in:   "subjects: {prefix: netlink, control: netlinks}\n",
		want: func(c *Config) { c.Subjects.Control = "netlinks" },
	},
	{name: "dump false", in: "dump:\n  on_start: false\n", want: func(c *Config) { c.Dump.OnStart = false }},
	{name: "min interval", in: "dump:\n  min_interval: 250ms\n", want: func(c *Config) { c.Dump.MinInterval = 250 * time.Millisecond }},
	{name: "min interval 0", in: "dump:\n  min_interval: 0s\n", want: func(c *Config) { c.Dump.MinInterval = 0 }},
	{name: "dump True", in: "dump:\n  on_start: True\n"},
	{
		name: "auth user and password",
		in:   "nats:\n  servers: [nats://n:4222]\n  auth:\n    user: alice\n    password: \"1234\"\n",
		want: func(c *Config) {
			c.NATS.Servers = []string{"nats://n:4222"}
			c.NATS.Auth = Auth{User: "alice", Password: "1234"}
		},
	},
	{name: "auth token", in: "nats:\n  servers: [nats://n:4222]\n  auth: {token: s3cret}\n", want: func(c *Config) { c.NATS.Servers = []string{"nats://n:4222"}; c.NATS.Auth.Token = "s3cret" }},
	{
		name: "auth credentials relative",
		in:   "nats:\n  servers: [nats://n:4222]\n  auth:\n    credentials_file: nlbridge.creds\n",
		want: func(c *Config) {
			c.NATS.Servers = []string{"nats://n:4222"}
			c.NATS.Auth.CredentialsFile = "nlbridge.creds"
		},
	},
	{
		name: "auth nkey absolute",
		in:   "nats:\n  servers: [nats://n:4222]\n  auth:\n    nkey_seed_file: /etc/nlbridge/user.nk\n",
		want: func(c *Config) {
			c.NATS.Servers = []string{"nats://n:4222"}
			c.NATS.Auth.NKeySeedFile = "/etc/nlbridge/user.nk"
		},
	},
	{name: "auth empty strings", in: "nats:\n  auth: {user: \"\", password: \"\", token: \"\"}\n"},
	{
		name: "tls",
		in:   "nats:\n  servers: [nats://n:4222]\n  tls:\n    ca_file: /etc/ssl/ca.pem\n    cert_file: client.pem\n    key_file: ./client-key.pem\n    insecure_skip_verify: true\n    handshake_first: true\n",
		want: func(c *Config) {
			c.NATS.Servers = []string{"nats://n:4222"}
			c.NATS.TLS = TLS{CAFile: "/etc/ssl/ca.pem", CertFile: "client.pem", KeyFile: "./client-key.pem", InsecureSkipVerify: true, HandshakeFirst: true}
		},
	},
	{name: "tls ca only", in: "nats:\n  servers: [nats://n:4222]\n  tls: {ca_file: ca.pem}\n", want: func(c *Config) { c.NATS.Servers = []string{"nats://n:4222"}; c.NATS.TLS.CAFile = "ca.pem" }},
	{
		name: "filter",
		in:   "filter:\n  interfaces:\n    include: [eth*, \"bond[0-9]\", \"*\", \"en?s[^0]\", \"a\\\\*\"]\n    exclude:\n      - \"veth*\"\n  families: [inet6]\n  events: [DELADDR, NEWADDR]\n",
		want: func(c *Config) {
			c.Filter = Filter{
				Include:  []string{"eth*", "bond[0-9]", "*", "en?s[^0]", `a\*`},
				Exclude:  []string{"veth*"},
				Families: []string{"inet6"},
				Events:   []string{"DELADDR", "NEWADDR"},
			}
		},
	},
	{name: "filter interfaces null", in: "filter:\n  interfaces:\n"},
	{name: "log", in: "log:\n  level: debug\n  format: json\n", want: func(c *Config) { c.Log = Log{Level: slog.LevelDebug, Format: LogJSON} }},
	{name: "log warn", in: "log: {level: warn}\n", want: func(c *Config) { c.Log.Level = slog.LevelWarn }},
	{name: "log error", in: "log: {level: error}\n", want: func(c *Config) { c.Log.Level = slog.LevelError }},
	{name: "metrics", in: "metrics:\n  listen: \":9100\"\n", want: func(c *Config) { c.Metrics.Listen = ":9100" }},
	{name: "metrics off", in: "metrics:\n  listen: \"\"\n"},
}

func TestParse(t *testing.T) {
	for _, tt := range goodInputs {
		t.Run(tt.name, func(t *testing.T) {
			want := Default()
			if tt.want != nil {
				tt.want(&want)
			}
			got, err := Parse(strings.NewReader(tt.in), "test.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// badInputs fail to parse with the error want.
var badInputs = []struct {
	name string
	in   string
	want string
}{
	// Structure.
	{"unknown key", "bogus: 1\n", "test.yaml:1: bogus: unknown key (known: host, netlink, nats, encoding, subjects, kv, filter, dump, log, metrics)"},
	{"unknown nested key", "netlink:\n  netns: \"\"\n\n  recieve_buffer: 4MiB\n", "test.yaml:4: netlink.recieve_buffer: unknown key (known: netns, receive_buffer)"},
	{"unknown deep key", "nats:\n  embedded:\n    port: 4222\n", "test.yaml:3: nats.embedded.port: unknown key (known: listen, store_dir)"},
	{"duplicate key", "host: a\nencoding: json\nhost: b\n", "test.yaml:3: host: duplicate key (first on line 1)"},
	{"duplicate nested key", "nats:\n  name: a\n  name: b\n", "test.yaml:3: nats.name: duplicate key (first on line 2)"},
	{"duplicate section", "dump: {}\ndump: {}\n", "test.yaml:2: dump: duplicate key (first on line 1)"},
	{"top level sequence", "- host\n", "test.yaml:1: want a mapping, got sequence"},
	{"top level scalar", "hello\n", `test.yaml:1: want a mapping, got string "hello"`},
	{"section scalar", "netlink: 4MiB\n", `test.yaml:1: netlink: want a mapping, got string "4MiB"`},
	{"section sequence", "dump:\n  - on_start\n", "test.yaml:2: dump: want a mapping, got sequence"},
	{"integer key", "1: a\n", "test.yaml:1: want a string key, got integer 1"},
	{"complex key", "netlink:\n  ? [a]\n  : b\n", "test.yaml:2: netlink: want a string key, got sequence"},
	{"merge key", "<<: {host: a}\n", `test.yaml:1: want a string key, got !!merge "<<"`},
	{"alias", "host: &h web\nnats:\n  name: *h\n", "test.yaml:3: nats.name: want a string, got alias *h (aliases are not supported)"},
	{"alias section", "nats: &n {}\ndump: *n\n", "test.yaml:2: dump: want a mapping, got alias *n (aliases are not supported)"},
	{"two documents", "host: a\n---\nhost: b\n", "test.yaml:2: a second YAML document; want one"},
	{"trailing empty document", "host: a\n---\n", "test.yaml:2: a second YAML document; want one"},
	{"syntax", "netlink: [\n", "test.yaml: yaml: line 1: did not find expected node content"},
	{"tab indent", "netlink:\n\tnetns: x\n", "test.yaml: yaml: line 2: found character that cannot start any token"},
	{"syntax in second document", "host: a\n---\n[\n", "test.yaml: yaml: line 3: did not find expected node content"},
	{"unknown anchor", "host: *h\n", "test.yaml: yaml: unknown anchor 'h' referenced"},

	// Types.
	{"host integer", "host: 123\n", "test.yaml:1: host: want a string, got integer 123"},
	{"host null", "host:\n", "test.yaml:1: host: want a string, got null"},
	{"host tilde", "host: ~\n", "test.yaml:1: host: want a string, got null"},
	{"host sequence", "host: [a]\n", "test.yaml:1: host: want a string, got sequence"},
	{"host custom tag", "host: !name web\n", `test.yaml:1: host: want a string, got !name "web"`},
	{"host binary", "host: !!binary d2Vi\n", `test.yaml:1: host: want a string, got !!binary "d2Vi"`},
	{"duration integer", "dump:\n  min_interval: 5\n", "test.yaml:2: dump.min_interval: want a duration such as 1s or 250ms, got integer 5"},
	{"duration bad", "dump:\n  min_interval: soon\n", `test.yaml:2: dump.min_interval: "soon" is not a duration such as 1s or 250ms`},
	{"duration negative", "dump:\n  min_interval: -1s\n", "test.yaml:2: dump.min_interval: -1s is out of range 0s..1h"},
	{"duration long", "dump:\n  min_interval: 2h\n", "test.yaml:2: dump.min_interval: 2h0m0s is out of range 0s..1h"},
	{"bool string", "dump:\n  on_start: maybe\n", `test.yaml:2: dump.on_start: want a boolean, got string "maybe"`},
	{"bool quoted", "dump:\n  on_start: \"true\"\n", `test.yaml:2: dump.on_start: want a boolean, got string "true"`},
	{"bool yes", "dump:\n  on_start: yes\n", `test.yaml:2: dump.on_start: want a boolean, got string "yes"`},
	{"bool integer", "dump:\n  on_start: 1\n", "test.yaml:2: dump.on_start: want a boolean, got integer 1"},
	{"bool tagged", "dump:\n  on_start: !!bool maybe\n", `test.yaml:2: dump.on_start: "maybe" is not a boolean`},
	{"encoding boolean", "encoding: true\n", "test.yaml:1: encoding: want a string, got boolean true"},
	{"servers string", "nats:\n  servers: nats://a:4222\n", `test.yaml:2: nats.servers: want a sequence, got string "nats://a:4222"`},
	{"servers item integer", "nats:\n  servers:\n    - nats://a\n    - 1\n", "test.yaml:4: nats.servers[1]: want a string, got integer 1"},
	{"servers item mapping", "nats:\n  servers:\n    - url: nats://a\n", "test.yaml:3: nats.servers[0]: want a string, got mapping"},

	// Values.
	{"host empty", "\nhost: \"\"\n", "test.yaml:2: host: must not be empty"},
	{"host space", "host: \"web 01\"\n", `test.yaml:1: host: "web 01" contains ' ', want no whitespace or control characters`},
	{"host newline", "host: |\n  web\n", `test.yaml:1: host: "web\n" contains '\n', want no whitespace or control characters`},
	{"host control", "host: \"web\\x01\"\n", `test.yaml:1: host: "web\x01" contains '\x01', want no whitespace or control characters`},
	{"netns relative", "netlink:\n  netns: netns/blue\n", `test.yaml:2: netlink.netns: "netns/blue" is not an absolute path`},
	{"size too small", "netlink:\n  receive_buffer: 1KiB\n", "test.yaml:2: netlink.receive_buffer: 1KiB is out of range 64KiB..1GiB"},
	{"size one below minimum", "netlink:\n  receive_buffer: 65535\n", "test.yaml:2: netlink.receive_buffer: 65535 is out of range 64KiB..1GiB"},
	{"size too large", "netlink:\n  receive_buffer: 2GiB\n", "test.yaml:2: netlink.receive_buffer: 2GiB is out of range 64KiB..1GiB"},
	{"size decimal too large", "netlink:\n  receive_buffer: 2GB\n", "test.yaml:2: netlink.receive_buffer: 2GB is out of range 64KiB..1GiB"},
	{"size negative", "netlink:\n  receive_buffer: -1\n", "test.yaml:2: netlink.receive_buffer: -1 is out of range 64KiB..1GiB"},
	{"size zero", "netlink:\n  receive_buffer: 0\n", "test.yaml:2: netlink.receive_buffer: 0 is out of range 64KiB..1GiB"},
	{"size bad unit", "netlink:\n  receive_buffer: 4mib\n", `test.yaml:2: netlink.receive_buffer: "4mib" is not a size: want digits and an optional unit KiB, MiB, GiB, KB, MB or GB`},
	{"size space", "netlink:\n  receive_buffer: 4 MiB\n", `test.yaml:2: netlink.receive_buffer: "4 MiB" is not a size: want digits and an optional unit KiB, MiB, GiB, KB, MB or GB`},
	{"size overflow", "netlink:\n  receive_buffer: 9999999999999GiB\n", `test.yaml:2: netlink.receive_buffer: "9999999999999GiB" is too large`},
	{"size integer overflow", "netlink:\n  receive_buffer: 9223372036854775808\n", "test.yaml:2: netlink.receive_buffer: 9223372036854775808 is not an integer or is too large"},
	{"size float", "netlink:\n  receive_buffer: 1.5\n", "test.yaml:2: netlink.receive_buffer: want a size such as 4MiB or 65536, got float 1.5"},
	{"size huge float", "netlink:\n  receive_buffer: 99999999999999999999\n", "test.yaml:2: netlink.receive_buffer: want a size such as 4MiB or 65536, got float 99999999999999999999"},
	{"size boolean", "netlink:\n  receive_buffer: true\n", "test.yaml:2: netlink.receive_buffer: want a size such as 4MiB or 65536, got boolean true"},
	{"server scheme", "nats:\n  servers:\n    - nats://a:4222\n    - ftp://x\n", `test.yaml:4: nats.servers[1]: "ftp://x" has scheme ftp, want nats, tls, ws or wss`},
	{"server flow", "\nnats: {servers: [nats://a, http://b]}\n", `test.yaml:2: nats.servers[1]: "http://b" has scheme http, want nats, tls, ws or wss`},
	{"server without scheme", "nats:\n  servers: [\"localhost:4222\"]\n", `test.yaml:2: nats.servers[0]: "localhost:4222" is not a URL such as nats://host:4222`},
	{"server without host", "nats:\n  servers: [\"nats://:4222\"]\n", `test.yaml:2: nats.servers[0]: "nats://:4222" has no host`},
	{"server empty", "nats:\n  servers: [\"\"]\n", `test.yaml:2: nats.servers[0]: "" is not a URL such as nats://host:4222`},
	{"server bad port", "nats:\n  servers: [\"nats://a:99999\"]\n", `test.yaml:2: nats.servers[0]: "nats://a:99999" has port 99999, want a number 0-65535`},
	{"server unparsable", "nats:\n  servers: [\"nats://a:b\"]\n", `test.yaml:2: nats.servers[0]: "nats://a:b" is not a URL: invalid port ":b" after host`},
	{"name empty", "nats:\n  name: \"\"\n", "test.yaml:2: nats.name: must not be empty"},
	// A URL that an error quotes has its user information redacted.
	{"server scheme token", "nats:\n  servers: [\"ftp://s3cret@x:21\"]\n", `test.yaml:2: nats.servers[0]: "ftp://REDACTED@x:21" has scheme ftp, want nats, tls, ws or wss`},
	{"server port password", "nats:\n  servers: [\"nats://u:s3cret@x:99999\"]\n", `test.yaml:2: nats.servers[0]: "nats://REDACTED@x:99999" has port 99999, want a number 0-65535`},
	{"server unparsable password", "nats:\n  servers: [\"nats://u:s3cret@x:b\"]\n", `test.yaml:2: nats.servers[0]: "nats://REDACTED@x:b" is not a URL: invalid port ":b" after host`},
	{"server escape in password", "nats:\n  servers: [\"nats://u:%s3cret@x\"]\n", `test.yaml:2: nats.servers[0]: "nats://REDACTED@x" is not a URL: invalid URL escape`},
	{"server without scheme token", "nats:\n  servers: [\"s3cret@x:4222\"]\n", `test.yaml:2: nats.servers[0]: "REDACTED@x:4222" is not a URL: first path segment in URL cannot contain colon`},
	{"listen without port", "nats:\n  embedded:\n    listen: 127.0.0.1\n", `test.yaml:3: nats.embedded.listen: "127.0.0.1" is not host:port: missing port in address`},
	{"listen named port", "nats:\n  embedded:\n    listen: \"127.0.0.1:nats\"\n", `test.yaml:3: nats.embedded.listen: "127.0.0.1:nats" has port "nats", want a number 0-65535`},
	{"listen port too large", "nats:\n  embedded:\n    listen: \"127.0.0.1:65536\"\n", `test.yaml:3: nats.embedded.listen: "127.0.0.1:65536" has port "65536", want a number 0-65535`},
	{"listen empty", "nats:\n  embedded:\n    listen: \"\"\n", `test.yaml:3: nats.embedded.listen: "" is not host:port: missing port in address`},
	{"encoding unknown", "host: a\n\n\n\n\n\nencoding: xml\n", `test.yaml:7: encoding: "xml" is not one of json, cbor`},
	{"encoding case", "encoding: JSON\n", `test.yaml:1: encoding: "JSON" is not one of json, cbor`},
	{"prefix empty", "subjects:\n  prefix: \"\"\n", "test.yaml:2: subjects.prefix: must not be empty"},
	{"prefix empty token", "subjects:\n  prefix: a..b\n", `test.yaml:2: subjects.prefix: "a..b" has an empty token`},
	{"prefix trailing dot", "subjects:\n  prefix: a.\n", `test.yaml:2: subjects.prefix: "a." has an empty token`},
	{"prefix wildcard", "subjects:\n  prefix: a.*\n", `test.yaml:2: subjects.prefix: "a.*" contains '*', want printable ASCII without whitespace, '*' or '>'`},
	{"prefix full wildcard", "subjects:\n  prefix: \"a.>\"\n", `test.yaml:2: subjects.prefix: "a.>" contains '>', want printable ASCII without whitespace, '*' or '>'`},
	{"prefix space", "subjects:\n  prefix: \"a b\"\n", `test.yaml:2: subjects.prefix: "a b" contains ' ', want printable ASCII without whitespace, '*' or '>'`},
	{"prefix non-ASCII", "subjects:\n  prefix: é\n", `test.yaml:2: subjects.prefix: "é" contains 'é', want printable ASCII without whitespace, '*' or '>'`},
	{"control wildcard", "subjects:\n  control: \">\"\n", `test.yaml:2: subjects.control: ">" contains '>', want printable ASCII without whitespace, '*' or '>'`},
	{"subjects equal", "subjects:\n  prefix: nlbridge\n", `test.yaml:1: subjects: prefix "nlbridge" and control "nlbridge" overlap: subscribers to one would see the other`},
	{"control under prefix", "\nsubjects:\n  control: netlink.ctl\n", `test.yaml:2: subjects: prefix "netlink" and control "netlink.ctl" overlap: subscribers to one would see the other`},
	{"prefix under control", "subjects: {prefix: nlbridge.events}\n", `test.yaml:1: subjects: prefix "nlbridge.events" and control "nlbridge" overlap: subscribers to one would see the other`},

	// Authentication and TLS. No error may show a secret; s3cret stands for one.
	{"auth two methods", "nats:\n  auth:\n    token: s3cret\n    credentials_file: a.creds\n", "test.yaml:2: nats.auth: more than one method is set (token, credentials); use one"},
	{"auth all methods", "nats:\n  auth: {user: a, password: s3cret, token: s3cret, credentials_file: a, nkey_seed_file: b}\n", "test.yaml:2: nats.auth: more than one method is set (user/password, token, credentials, nkey); use one"},
	{"auth user and token", "nats:\n  auth:\n    user: alice\n    token: s3cret\n", "test.yaml:2: nats.auth: more than one method is set (user/password, token); use one"},
	{"auth user alone", "nats:\n  auth:\n\n    user: alice\n", "test.yaml:4: nats.auth.user: set without nats.auth.password (they go together)"},
	{"auth password alone", "nats:\n  auth:\n    password: s3cret\n", "test.yaml:3: nats.auth.password: set without nats.auth.user (they go together)"},
	{"auth password integer", "nats:\n  auth:\n    password: 123456\n", "test.yaml:3: nats.auth.password: want a string, got integer (value not shown)"},
	{"auth token boolean", "nats:\n  auth:\n    token: yes\n    token: true\n", "test.yaml:4: nats.auth.token: duplicate key (first on line 3)"},
	{"auth token mapping", "nats:\n  auth:\n    token: {s3cret: 1}\n", "test.yaml:3: nats.auth.token: want a string, got mapping (value not shown)"},
	{"auth token tagged", "nats:\n  auth:\n    token: !secret s3cret\n", "test.yaml:3: nats.auth.token: want a string, got !secret (value not shown)"},
	{"auth unknown key", "nats:\n  auth:\n    username: a\n", "test.yaml:3: nats.auth.username: unknown key (known: user, password, token, credentials_file, nkey_seed_file)"},
	{"credentials home", "nats:\n  auth:\n    credentials_file: ~/a.creds\n", `test.yaml:3: nats.auth.credentials_file: "~/a.creds" starts with ~, which nlbridge does not expand; want an absolute or relative path`},
	{"nkey directory", "nats:\n  auth:\n    nkey_seed_file: /etc/nkeys/\n", `test.yaml:3: nats.auth.nkey_seed_file: "/etc/nkeys/" ends in /, want the path of a file`},
	{"credentials NUL", "nats:\n  auth:\n    credentials_file: \"a\\0b\"\n", `test.yaml:3: nats.auth.credentials_file: "a\x00b" contains a NUL byte, want a path`},
	{"tls cert alone", "nats:\n  tls:\n    cert_file: c.pem\n", "test.yaml:3: nats.tls.cert_file: set without nats.tls.key_file (they go together)"},
	{"tls key alone", "nats:\n  tls:\n    ca_file: ca.pem\n    key_file: k.pem\n", "test.yaml:4: nats.tls.key_file: set without nats.tls.cert_file (they go together)"},
	{"tls ca directory", "nats:\n  tls:\n    ca_file: /etc/ssl/\n", `test.yaml:3: nats.tls.ca_file: "/etc/ssl/" ends in /, want the path of a file`},
	{"tls bool string", "nats:\n  tls:\n    insecure_skip_verify: \"true\"\n", `test.yaml:3: nats.tls.insecure_skip_verify: want a boolean, got string "true"`},
	{"tls section scalar", "nats:\n  tls: true\n", "test.yaml:2: nats.tls: want a mapping, got boolean true"},

	// Filter.
	{"glob bad", "filter:\n  interfaces:\n    include: [eth0, eth1, \"eth[\"]\n", `test.yaml:3: filter.interfaces.include[2]: "eth[" is not a glob: syntax error in pattern`},
	// The state bucket.
	{"kv bucket dot", "kv:\n  bucket: a.b\n", `test.yaml:2: kv.bucket: "a.b" contains '.', want letters, digits, '_' and '-' (or "" for no bucket)`},
	{"kv replicas zero", "kv:\n  replicas: 0\n", "test.yaml:2: kv.replicas: 0 is out of range 1..5"},
	{"kv replicas six", "kv:\n  replicas: 6\n", "test.yaml:2: kv.replicas: 6 is out of range 1..5"},
	{"kv replicas string", "kv:\n  replicas: \"3\"\n", `test.yaml:2: kv.replicas: want an integer, got string "3"`},
	{"kv storage", "kv:\n  storage: disk\n", `test.yaml:2: kv.storage: "disk" is not one of file, memory`},
	{"kv presence_ttl short", "kv:\n  presence_ttl: 2s\n", "test.yaml:2: kv.presence_ttl: 2s is not whole seconds in range 3s..1h"},
	{"kv presence_ttl fraction", "kv:\n  presence_ttl: 3500ms\n", "test.yaml:2: kv.presence_ttl: 3.5s is not whole seconds in range 3s..1h"},
	{"store_dir tilde", "nats:\n  embedded:\n    store_dir: ~/js\n", `test.yaml:3: nats.embedded.store_dir: "~/js" starts with ~, which nlbridge does not expand; want an absolute or relative path`},
	{"glob trailing backslash", "filter:\n  interfaces:\n    exclude:\n      - veth*\n      - 'a\\'\n", `test.yaml:5: filter.interfaces.exclude[1]: "a\\" is not a glob: syntax error in pattern`},
	{"glob empty", "filter:\n  interfaces:\n    exclude: [\"\"]\n", "test.yaml:3: filter.interfaces.exclude[0]: must not be empty"},
	{"glob integer", "filter:\n  interfaces:\n    include: [0]\n", "test.yaml:3: filter.interfaces.include[0]: want a string, got integer 0"},
	{"interfaces list", "filter:\n  interfaces: [eth0]\n", "test.yaml:2: filter.interfaces: want a mapping, got sequence"},
	{"families empty", "filter:\n  families: []\n", "test.yaml:2: filter.families: must not be empty, want one or more of inet, inet6"},
	{"families null", "filter:\n  families:\n", "test.yaml:2: filter.families: must not be empty, want one or more of inet, inet6"},
	{"families unknown", "filter:\n  families: [inet, ipv6]\n", `test.yaml:2: filter.families[1]: "ipv6" is not one of inet, inet6`},
	{"families duplicate", "filter:\n  families:\n    - inet6\n    - inet\n    - inet6\n", `test.yaml:5: filter.families[2]: "inet6" is already listed at filter.families[0]`},
	{"events empty", "filter:\n  events: []\n", "test.yaml:2: filter.events: must not be empty, want one or more of NEWLINK, DELLINK, NEWADDR, DELADDR"},
	{"events case", "filter:\n  events: [newlink]\n", `test.yaml:2: filter.events[0]: "newlink" is not one of NEWLINK, DELLINK, NEWADDR, DELADDR`},
	{"events duplicate", "filter:\n  events: [NEWLINK, NEWLINK]\n", `test.yaml:2: filter.events[1]: "NEWLINK" is already listed at filter.events[0]`},
	{"events string", "filter:\n  events: NEWLINK\n", `test.yaml:2: filter.events: want a sequence, got string "NEWLINK"`},

	// Log and metrics.
	{"log level unknown", "log:\n  level: verbose\n", `test.yaml:2: log.level: "verbose" is not one of debug, info, warn, error`},
	{"log level upper case", "log:\n  level: INFO\n", `test.yaml:2: log.level: "INFO" is not one of debug, info, warn, error`},
	{"log level offset", "log:\n  level: info+2\n", `test.yaml:2: log.level: "info+2" is not one of debug, info, warn, error`},
	{"log level integer", "log:\n  level: 0\n", "test.yaml:2: log.level: want a string, got integer 0"},
	{"log format", "log:\n  format: logfmt\n", `test.yaml:2: log.format: "logfmt" is not one of text, json`},
	{"metrics without port", "metrics:\n  listen: localhost\n", `test.yaml:2: metrics.listen: "localhost" is not host:port: missing port in address`},
	{"metrics port", "metrics:\n  listen: \":http\"\n", `test.yaml:2: metrics.listen: ":http" has port "http", want a number 0-65535`},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range badInputs {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.in), "test.yaml")
			if err == nil {
				t.Fatalf("Parse: got %+v, want error %q", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got %s\nwant %s", got, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse error %q does not wrap ErrInvalid", err)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Parse returned %+v with its error, want the zero Config", c)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Parse error %q shows a secret", err)
			}
		})
	}
}

func TestParseErrorWithoutName(t *testing.T) {
	_, err := Parse(strings.NewReader("bogus: 1\n"), "")
	want := "line 1: bogus: unknown key (known: host, netlink, nats, encoding, subjects, kv, filter, dump, log, metrics)"
	if err == nil || err.Error() != want {
		t.Errorf("Parse: got error %v, want %s", err, want)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Parse(iotest.ErrReader(boom), "test.yaml")
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Errorf("Parse: got error %v, want one wrapping %v and not ErrInvalid", err, boom)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  string // substring; "" for success
	}{
		{in: "0", want: 0},
		{in: "65536", want: 65536},
		{in: "007", want: 7},
		{in: "1KiB", want: 1 << 10},
		{in: "512KiB", want: 512 << 10},
		{in: "4MiB", want: 4 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "3GiB", want: 3 << 30},
		{in: "1KB", want: 1000},
		{in: "8MB", want: 8_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "", err: "is not a size"},
		{in: "MiB", err: "is not a size"},
		{in: "4mib", err: "is not a size"},
		{in: "4kb", err: "is not a size"},
		{in: "4B", err: "is not a size"},
		{in: "4 MiB", err: "is not a size"},
		{in: " 4MiB", err: "is not a size"},
		{in: "4MiBs", err: "is not a size"},
		{in: "4.5MiB", err: "is not a size"},
		{in: "-4MiB", err: "is not a size"},
		{in: "+4", err: "is not a size"},
		{in: "0x10", err: "is not a size"},
		{in: "1_000", err: "is not a size"},
		{in: "9223372036854775808", err: "is too large"},
		{in: "99999999999999999999999KB", err: "is too large"},
		{in: "9223372036854775807GiB", err: "is too large"},
		{in: "8589934592GiB", err: "is too large"}, // 1<<63
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("parseSize(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseSize(%q): got %d, %v, want error containing %q", tt.in, got, err, tt.err)
		case got != tt.want:
			t.Errorf("parseSize(%q): got %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1001, "1001"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{65536, "64KiB"},
		{4 << 20, "4MiB"},
		{8_000_000, "8MB"},
		{1 << 30, "1GiB"},
		{-1024, "-1KiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.in); got != tt.want {
			t.Errorf("formatSize(%d): got %q, want %q", tt.in, got, tt.want)
		}
		if tt.in >= 0 {
			if back, err := parseSize(tt.want); err != nil || back != tt.in {
				t.Errorf("parseSize(formatSize(%d)): got %d, %v", tt.in, back, err)
			}
		}
	}
}

func TestDefault(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	host, _, _ = strings.Cut(host, ".")
	want := Config{
		Host:    host,
		Netlink: Netlink{NetNS: "", ReceiveBuffer: 4 << 20},
		NATS: NATS{
			Servers:  nil,
			Name:     "nlbridge@" + host,
			Embedded: Embedded{Listen: "127.0.0.1:4222"},
		},
		Encoding: "json",
		Subjects: Subjects{Prefix: "netlink", Control: "nlbridge"},
		KV:       KV{Bucket: "netlink", Replicas: 1, Storage: "file", PresenceTTL: 30 * time.Second},
		Filter: Filter{
			Families: []string{"inet", "inet6"},
			Events:   []string{"NEWLINK", "DELLINK", "NEWADDR", "DELADDR"},
		},
		Dump:    Dump{OnStart: true, MinInterval: time.Second},
		Log:     Log{Level: slog.LevelInfo, Format: "text"},
		Metrics: Metrics{Listen: ""},
	}
	got := Default()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default():\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{name: "default", change: func(*Config) {}},
		{name: "zero", change: func(c *Config) { *c = Config{} }, want: "host: must not be empty"},
		{name: "host tab", change: func(c *Config) { c.Host = "a\tb" }, want: `host: "a\tb" contains '\t', want no whitespace or control characters`},
		{name: "netns", change: func(c *Config) { c.Netlink.NetNS = "blue" }, want: `netlink.netns: "blue" is not an absolute path`},
		{name: "buffer", change: func(c *Config) { c.Netlink.ReceiveBuffer = 0 }, want: "netlink.receive_buffer: 0 is out of range 64KiB..1GiB"},
		{name: "servers", change: func(c *Config) { c.NATS.Servers = []string{"nats://a", "nats://b", "udp://c"} }, want: `nats.servers[2]: "udp://c" has scheme udp, want nats, tls, ws or wss`},
		{name: "name", change: func(c *Config) { c.NATS.Name = "" }, want: "nats.name: must not be empty"},
		{name: "listen", change: func(c *Config) { c.NATS.Embedded.Listen = "4222" }, want: `nats.embedded.listen: "4222" is not host:port: missing port in address`},
		{name: "encoding", change: func(c *Config) { c.Encoding = "" }, want: `encoding: "" is not one of json, cbor`},
		{name: "prefix", change: func(c *Config) { c.Subjects.Prefix = ".a" }, want: `subjects.prefix: ".a" has an empty token`},
		{name: "control", change: func(c *Config) { c.Subjects.Control = "" }, want: "subjects.control: must not be empty"},
		{name: "overlap", change: func(c *Config) { c.Subjects.Control = c.Subjects.Prefix }, want: `subjects: prefix "netlink" and control "netlink" overlap: subscribers to one would see the other`},
		{name: "first of several", change: func(c *Config) { c.Encoding, c.NATS.Name = "", "" }, want: "nats.name: must not be empty"},
		{name: "auth nkey", change: func(c *Config) { c.NATS.Servers, c.NATS.Auth.NKeySeedFile = []string{"nats://n:4222"}, "user.nk" }},
		{name: "auth embedded", change: func(c *Config) { c.NATS.Auth.Token = "s3cret" }, want: "nats.auth: token is set but nats.servers is empty, and the embedded server takes no credentials: name the server in nats.servers, or remove nats.auth"},
		{name: "auth two", change: func(c *Config) { c.NATS.Auth = Auth{Token: "s3cret", NKeySeedFile: "user.nk"} }, want: "nats.auth: more than one method is set (token, nkey); use one"},
		{name: "auth password", change: func(c *Config) { c.NATS.Auth.Password = "s3cret" }, want: "nats.auth.password: set without nats.auth.user (they go together)"},
		{name: "tls", change: func(c *Config) {
			c.NATS.Servers, c.NATS.TLS = []string{"tls://n:4222"}, TLS{CertFile: "c.pem", KeyFile: "k.pem", HandshakeFirst: true}
		}},
		{name: "tls embedded", change: func(c *Config) { c.NATS.TLS.CAFile = "ca.pem" }, want: "nats.tls: is set but nats.servers is empty, and the embedded server does not use TLS: name the server in nats.servers, or remove nats.tls"},
		{name: "tls key", change: func(c *Config) { c.NATS.TLS.KeyFile = "k.pem" }, want: "nats.tls.key_file: set without nats.tls.cert_file (they go together)"},
		{name: "include", change: func(c *Config) { c.Filter.Include = []string{"eth*", "[]"} }, want: `filter.interfaces.include[1]: "[]" is not a glob: syntax error in pattern`},
		{name: "families nil", change: func(c *Config) { c.Filter.Families = nil }, want: "filter.families: must not be empty, want one or more of inet, inet6"},
		{name: "events", change: func(c *Config) { c.Filter.Events = []string{"SYNC"} }, want: `filter.events[0]: "SYNC" is not one of NEWLINK, DELLINK, NEWADDR, DELADDR`},
		{name: "log level", change: func(c *Config) { c.Log.Level = slog.LevelInfo + 2 }, want: `log.level: "info+2" is not one of debug, info, warn, error`},
		{name: "log format", change: func(c *Config) { c.Log.Format = "" }, want: `log.format: "" is not one of text, json`},
		{name: "metrics", change: func(c *Config) { c.Metrics.Listen = "[::1]:9100" }},
		{name: "metrics bad", change: func(c *Config) { c.Metrics.Listen = "9100" }, want: `metrics.listen: "9100" is not host:port: missing port in address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Host = "web-01" // independent of the machine running the test
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want == "":
			case err == nil:
				t.Errorf("Validate: got nil, want %s", tt.want)
			case err.Error() != tt.want:
				t.Errorf("Validate:\n got %s\nwant %s", err, tt.want)
			case !errors.Is(err, ErrInvalid):
				t.Errorf("Validate error %q does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	_, err := Load("testdata-does-not-exist.yaml")
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Load of a missing file: got %v, want fs.ErrNotExist and not ErrInvalid", err)
	}

	path := t.TempDir() + "/nlbridge.yaml"
	if err := os.WriteFile(path, []byte("dump:\n  on_start: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := path + `:2: dump.on_start: want a boolean, got string "nope"`
	if _, err := Load(path); err == nil || err.Error() != want {
		t.Errorf("Load: got error %v, want %s", err, want)
	}
}

// TestExampleIsDefault keeps config.example.yaml's values the defaults.
func TestExampleIsDefault(t *testing.T) {
	got, err := Load(example)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s is not Default():\n got %+v\nwant %+v", example, got, want)
	}
}

// TestExampleDocumentsEveryKey fails when a key is added to the schema but
// not to config.example.yaml, set or commented out.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedKeys(string(b))
	for _, key := range schemaKeys(schema, "") {
		if !slices.Contains(documented, key) {
			t.Errorf("%s does not document key %s; documented: %v", example, key, documented)
		}
	}
}

// schemaKeys lists the dotted keys in fields, sections included.
func schemaKeys(fields []field, path string) []string {
	var keys []string
	for _, f := range fields {
		key := f.key
		if path != "" {
			key = path + "." + key
		}
		keys = append(keys, key)
		keys = append(keys, schemaKeys(f.fields, key)...)
	}
	return keys
}

// keyLine matches a line holding a key, or a commented-out key such as
// "  # name: nlbridge@web-01".
var keyLine = regexp.MustCompile(`^( *)(?:# )?([a-z_]+):(?:\s|$)`)

// documentedKeys lists the dotted keys in a YAML file written in block
// style, nesting them by indentation.
func documentedKeys(yaml string) []string {
	type level struct {
		indent int
		key    string
	}
	var (
		stack []level
		keys  []string
	)
	for line := range strings.Lines(yaml) {
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1])
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		key := m[2]
		if len(stack) > 0 {
			key = stack[len(stack)-1].key + "." + key
		}
		stack = append(stack, level{indent, key})
		keys = append(keys, key)
	}
	return keys
}

func TestDocumentedKeys(t *testing.T) {
	in := "# A prose line.\na:\n  # b: 1\n  c:\n    d: 1\n  e: x\n# f: y\n"
	want := []string{"a", "a.b", "a.c", "a.c.d", "a.e", "f"}
	if got := documentedKeys(in); !slices.Equal(got, want) {
		t.Errorf("documentedKeys: got %v, want %v", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range goodInputs {
		f.Add([]byte(tt.in))
	}
	for _, tt := range badInputs {
		f.Add([]byte(tt.in))
	}
	if b, err := os.ReadFile(example); err == nil {
		f.Add(b)
	}
	f.Add([]byte(fullFile))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Parse(bytes.NewReader(in), "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %q does not wrap ErrInvalid", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned %+v, which Validate rejects: %v", c, err)
		}
		// What YAML prints parses back to the same, secrets aside.
		want := withoutSecrets(c)
		out := want.YAML()
		back, err := Parse(bytes.NewReader(out), "YAML()")
		if err != nil {
			t.Fatalf("Parse(YAML()) of %+v: %v\n%s", want, err, out)
		}
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("Parse(YAML()):\n got %+v\nwant %+v\nYAML:\n%s", back, want, out)
		}
	})
}
