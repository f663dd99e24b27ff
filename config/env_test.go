package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEnvVars checks every key of the schema has its own variable, and that
// the variables are these: a key added, renamed or removed changes this
// list, which the documentation follows.
func TestEnvVars(t *testing.T) {
	want := []string{
		"NLBRIDGE_HOST",
		"NLBRIDGE_NETLINK_NETNS",
		"NLBRIDGE_NETLINK_RECEIVE_BUFFER",
		"NLBRIDGE_NATS_SERVERS",
		"NLBRIDGE_NATS_NAME",
		"NLBRIDGE_NATS_AUTH_USER",
		"NLBRIDGE_NATS_AUTH_PASSWORD",
		"NLBRIDGE_NATS_AUTH_TOKEN",
		"NLBRIDGE_NATS_AUTH_CREDENTIALS_FILE",
		"NLBRIDGE_NATS_AUTH_NKEY_SEED_FILE",
		"NLBRIDGE_NATS_TLS_CA_FILE",
		"NLBRIDGE_NATS_TLS_CERT_FILE",
		"NLBRIDGE_NATS_TLS_KEY_FILE",
		"NLBRIDGE_NATS_TLS_INSECURE_SKIP_VERIFY",
		"NLBRIDGE_NATS_TLS_HANDSHAKE_FIRST",
		"NLBRIDGE_NATS_EMBEDDED_LISTEN",
		"NLBRIDGE_NATS_EMBEDDED_STORE_DIR",
		"NLBRIDGE_ENCODING",
		"NLBRIDGE_SUBJECTS_PREFIX",
		"NLBRIDGE_SUBJECTS_CONTROL",
		"NLBRIDGE_KV_BUCKET",
		"NLBRIDGE_KV_REPLICAS",
		"NLBRIDGE_KV_STORAGE",
		"NLBRIDGE_KV_PRESENCE_TTL",
		"NLBRIDGE_FILTER_INTERFACES_INCLUDE",
		"NLBRIDGE_FILTER_INTERFACES_EXCLUDE",
		"NLBRIDGE_FILTER_FAMILIES",
		"NLBRIDGE_FILTER_EVENTS",
		"NLBRIDGE_DUMP_ON_START",
		"NLBRIDGE_DUMP_MIN_INTERVAL",
		"NLBRIDGE_LOG_LEVEL",
		"NLBRIDGE_LOG_FORMAT",
		"NLBRIDGE_METRICS_LISTEN",
	}
	var got []string
	keyOf := make(map[string]string)
	for key, f := range all(schema, "") {
		if f.fields != nil {
			continue
		}
		v := envName(key)
		if other, ok := keyOf[v]; ok {
			t.Errorf("keys %s and %s share variable %s", other, key, v)
		}
		keyOf[v] = key
		got = append(got, v)
	}
	if !slices.Equal(got, want) {
		t.Errorf("variables:\n got %v\nwant %v", got, want)
	}
	// Every variable is accepted, and sets its key.
	for _, v := range want {
		env := []string{v + "=" + envSample[keyOf[v]]}
		if err := newDecoder("").environment(env, new(Config)); err != nil {
			t.Errorf("%s: %v", env[0], err)
		}
	}
}

// envSample holds a valid value of each key's kind, for TestEnvVars.
var envSample = map[string]string{
	"netlink.receive_buffer":        "65536",
	"nats.tls.insecure_skip_verify": "true",
	"nats.tls.handshake_first":      "false",
	"dump.on_start":                 "false",
	"kv.replicas":                   "3",
	"kv.presence_ttl":               "10s",
	"dump.min_interval":             "1s",
	"log.level":                     "warn",
}

// testEnv is an environment with other variables, which Read ignores.
var testEnv = []string{"PATH=/usr/bin:/bin", "HOME=/root", "nlbridge_host=ignored", "NLBRIDGE", "=weird"}

func TestReadEnvironment(t *testing.T) {
	const srv = "NLBRIDGE_NATS_SERVERS=nats://n:4222"
	withServer := func(f func(*Config)) func(*Config) {
		return func(c *Config) { c.NATS.Servers = []string{"nats://n:4222"}; f(c) }
	}
	tests := []struct {
		env  []string
		want func(*Config)
	}{
		{[]string{"NLBRIDGE_HOST=web-02"}, func(c *Config) { c.Host, c.NATS.Name = "web-02", "nlbridge@web-02" }},
		{[]string{"NLBRIDGE_HOST=123"}, func(c *Config) { c.Host, c.NATS.Name = "123", "nlbridge@123" }},
		{[]string{"NLBRIDGE_HOST=true"}, func(c *Config) { c.Host, c.NATS.Name = "true", "nlbridge@true" }},
		{[]string{"NLBRIDGE_NETLINK_NETNS=/var/run/netns/blue"}, func(c *Config) { c.Netlink.NetNS = "/var/run/netns/blue" }},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=8MiB"}, func(c *Config) { c.Netlink.ReceiveBuffer = 8 << 20 }},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=131072"}, func(c *Config) { c.Netlink.ReceiveBuffer = 131072 }},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=0x100000"}, func(c *Config) { c.Netlink.ReceiveBuffer = 1 << 20 }},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://a:4222"}, func(c *Config) { c.NATS.Servers = []string{"nats://a:4222"} }},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://a:4222, tls://b ,ws://c"}, func(c *Config) { c.NATS.Servers = []string{"nats://a:4222", "tls://b", "ws://c"} }},
		{[]string{"NLBRIDGE_NATS_SERVERS="}, func(c *Config) {}},
		{[]string{"NLBRIDGE_NATS_SERVERS= "}, func(c *Config) {}},
		{[]string{"NLBRIDGE_NATS_NAME=edge"}, func(c *Config) { c.NATS.Name = "edge" }},
		// nats.auth and nats.tls need nats.servers.
		{[]string{srv, "NLBRIDGE_NATS_AUTH_USER=alice", "NLBRIDGE_NATS_AUTH_PASSWORD= s3cret, with=signs "}, withServer(func(c *Config) {
			c.NATS.Auth = Auth{User: "alice", Password: " s3cret, with=signs "}
		})},
		{[]string{srv, "NLBRIDGE_NATS_AUTH_TOKEN=s3cret"}, withServer(func(c *Config) { c.NATS.Auth.Token = "s3cret" })},
		{[]string{srv, "NLBRIDGE_NATS_AUTH_CREDENTIALS_FILE=/etc/nlbridge/user.creds"}, withServer(func(c *Config) { c.NATS.Auth.CredentialsFile = "/etc/nlbridge/user.creds" })},
		{[]string{srv, "NLBRIDGE_NATS_AUTH_NKEY_SEED_FILE=user.nk"}, withServer(func(c *Config) { c.NATS.Auth.NKeySeedFile = "user.nk" })},
		{[]string{srv, "NLBRIDGE_NATS_TLS_CA_FILE=ca.pem"}, withServer(func(c *Config) { c.NATS.TLS.CAFile = "ca.pem" })},
		{[]string{srv, "NLBRIDGE_NATS_TLS_CERT_FILE=c.pem", "NLBRIDGE_NATS_TLS_KEY_FILE=k.pem"}, withServer(func(c *Config) { c.NATS.TLS.CertFile, c.NATS.TLS.KeyFile = "c.pem", "k.pem" })},
		{[]string{srv, "NLBRIDGE_NATS_TLS_INSECURE_SKIP_VERIFY=true"}, withServer(func(c *Config) { c.NATS.TLS.InsecureSkipVerify = true })},
		{[]string{srv, "NLBRIDGE_NATS_TLS_HANDSHAKE_FIRST=True"}, withServer(func(c *Config) { c.NATS.TLS.HandshakeFirst = true })},
		{[]string{"NLBRIDGE_NATS_EMBEDDED_LISTEN=:0"}, func(c *Config) { c.NATS.Embedded.Listen = ":0" }},
		{[]string{"NLBRIDGE_NATS_EMBEDDED_STORE_DIR=/var/lib/nlbridge"}, func(c *Config) { c.NATS.Embedded.StoreDir = "/var/lib/nlbridge" }},
		{[]string{"NLBRIDGE_KV_BUCKET="}, func(c *Config) { c.KV.Bucket = "" }},
		{[]string{"NLBRIDGE_KV_BUCKET=fleet", "NLBRIDGE_KV_REPLICAS=3", "NLBRIDGE_KV_STORAGE=memory", "NLBRIDGE_KV_PRESENCE_TTL=1m"},
			func(c *Config) {
				c.KV = KV{Bucket: "fleet", Replicas: 3, Storage: StorageMemory, PresenceTTL: time.Minute}
			}},
		{[]string{"NLBRIDGE_ENCODING=cbor"}, func(c *Config) { c.Encoding = EncodingCBOR }},
		{[]string{"NLBRIDGE_SUBJECTS_PREFIX=events.netlink", "NLBRIDGE_SUBJECTS_CONTROL=ctl"}, func(c *Config) { c.Subjects = Subjects{Prefix: "events.netlink", Control: "ctl"} }},
		{[]string{"NLBRIDGE_FILTER_INTERFACES_INCLUDE=eth*,bond[0-9]"}, func(c *Config) { c.Filter.Include = []string{"eth*", "bond[0-9]"} }},
		{[]string{"NLBRIDGE_FILTER_INTERFACES_EXCLUDE=veth*"}, func(c *Config) { c.Filter.Exclude = []string{"veth*"} }},
		{[]string{"NLBRIDGE_FILTER_FAMILIES=inet6"}, func(c *Config) { c.Filter.Families = []string{"inet6"} }},
		{[]string{"NLBRIDGE_FILTER_EVENTS=NEWLINK,DELLINK"}, func(c *Config) { c.Filter.Events = []string{"NEWLINK", "DELLINK"} }},
		{[]string{"NLBRIDGE_DUMP_ON_START=false"}, func(c *Config) { c.Dump.OnStart = false }},
		{[]string{"NLBRIDGE_DUMP_MIN_INTERVAL=250ms"}, func(c *Config) { c.Dump.MinInterval = 250 * time.Millisecond }},
		{[]string{"NLBRIDGE_DUMP_MIN_INTERVAL=0s"}, func(c *Config) { c.Dump.MinInterval = 0 }},
		{[]string{"NLBRIDGE_LOG_LEVEL=debug"}, func(c *Config) { c.Log.Level = slog.LevelDebug }},
		{[]string{"NLBRIDGE_LOG_FORMAT=json"}, func(c *Config) { c.Log.Format = LogJSON }},
		{[]string{"NLBRIDGE_METRICS_LISTEN=127.0.0.1:9100"}, func(c *Config) { c.Metrics.Listen = "127.0.0.1:9100" }},
		{[]string{"NLBRIDGE_ENCODING=xml", "NLBRIDGE_ENCODING=cbor"}, func(c *Config) { c.Encoding = EncodingCBOR }}, // the last wins
		{nil, func(c *Config) {}},
	}
	tested := make(map[string]bool)
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			want := Default()
			tt.want(&want)
			got, err := Read("", append(slices.Clone(testEnv), tt.env...))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Read:\n got %+v\nwant %+v", got, want)
			}
		})
		for _, kv := range tt.env {
			name, _, _ := strings.Cut(kv, "=")
			tested[name] = true
		}
	}
	for key, f := range all(schema, "") {
		if v := envName(key); f.fields == nil && !tested[v] {
			t.Errorf("no test sets %s", v)
		}
	}
}

func TestReadEnvironmentErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"NLBRIDGE_ENCODING=xml"}, `environment NLBRIDGE_ENCODING: encoding: "xml" is not one of json, cbor`},
		{[]string{"NLBRIDGE_ENCODING="}, `environment NLBRIDGE_ENCODING: encoding: "" is not one of json, cbor`},
		{[]string{"NLBRIDGE_HOST="}, "environment NLBRIDGE_HOST: host: must not be empty"},
		{[]string{"NLBRIDGE_NETLINK_NETNS=blue"}, `environment NLBRIDGE_NETLINK_NETNS: netlink.netns: "blue" is not an absolute path`},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=1KiB"}, "environment NLBRIDGE_NETLINK_RECEIVE_BUFFER: netlink.receive_buffer: 1KiB is out of range 64KiB..1GiB"},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=4 MiB"}, `environment NLBRIDGE_NETLINK_RECEIVE_BUFFER: netlink.receive_buffer: "4 MiB" is not a size: want digits and an optional unit KiB, MiB, GiB, KB, MB or GB`},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER=1.5"}, "environment NLBRIDGE_NETLINK_RECEIVE_BUFFER: netlink.receive_buffer: want a size such as 4MiB or 65536, got float 1.5"},
		{[]string{"NLBRIDGE_NETLINK_RECEIVE_BUFFER="}, `environment NLBRIDGE_NETLINK_RECEIVE_BUFFER: netlink.receive_buffer: "" is not a size: want digits and an optional unit KiB, MiB, GiB, KB, MB or GB`},
		{[]string{"NLBRIDGE_DUMP_ON_START=yes"}, `environment NLBRIDGE_DUMP_ON_START: dump.on_start: want a boolean, got string "yes"`},
		{[]string{"NLBRIDGE_DUMP_ON_START=1"}, "environment NLBRIDGE_DUMP_ON_START: dump.on_start: want a boolean, got integer 1"},
		{[]string{"NLBRIDGE_DUMP_ON_START="}, `environment NLBRIDGE_DUMP_ON_START: dump.on_start: want a boolean, got string ""`},
		{[]string{"NLBRIDGE_DUMP_MIN_INTERVAL=5"}, "environment NLBRIDGE_DUMP_MIN_INTERVAL: dump.min_interval: want a duration such as 1s or 250ms, got integer 5"},
		{[]string{"NLBRIDGE_DUMP_MIN_INTERVAL=2h"}, "environment NLBRIDGE_DUMP_MIN_INTERVAL: dump.min_interval: 2h0m0s is out of range 0s..1h"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://a,ftp://b"}, `environment NLBRIDGE_NATS_SERVERS: nats.servers[1]: "ftp://b" has scheme ftp, want nats, tls, ws or wss`},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://a,"}, `environment NLBRIDGE_NATS_SERVERS: nats.servers[1]: "" is not a URL such as nats://host:4222`},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://a,ftp://s3cret@b"}, `environment NLBRIDGE_NATS_SERVERS: nats.servers[1]: "ftp://REDACTED@b" has scheme ftp, want nats, tls, ws or wss`},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://u:s3cret@a:x"}, `environment NLBRIDGE_NATS_SERVERS: nats.servers[0]: "nats://REDACTED@a:x" is not a URL: invalid port ":x" after host`},
		{[]string{"NLBRIDGE_FILTER_INTERFACES_INCLUDE=eth0,eth1,eth["}, `environment NLBRIDGE_FILTER_INTERFACES_INCLUDE: filter.interfaces.include[2]: "eth[" is not a glob: syntax error in pattern`},
		{[]string{"NLBRIDGE_FILTER_FAMILIES="}, "environment NLBRIDGE_FILTER_FAMILIES: filter.families: must not be empty, want one or more of inet, inet6"},
		{[]string{"NLBRIDGE_FILTER_EVENTS=NEWLINK,NEWLINK"}, `environment NLBRIDGE_FILTER_EVENTS: filter.events[1]: "NEWLINK" is already listed at filter.events[0]`},
		{[]string{"NLBRIDGE_LOG_LEVEL=trace"}, `environment NLBRIDGE_LOG_LEVEL: log.level: "trace" is not one of debug, info, warn, error`},
		{[]string{"NLBRIDGE_LOG_FORMAT=JSON"}, `environment NLBRIDGE_LOG_FORMAT: log.format: "JSON" is not one of text, json`},
		{[]string{"NLBRIDGE_METRICS_LISTEN=9100"}, `environment NLBRIDGE_METRICS_LISTEN: metrics.listen: "9100" is not host:port: missing port in address`},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_PASSWORD=s3cret"}, "environment NLBRIDGE_NATS_AUTH_PASSWORD: nats.auth.password: set without nats.auth.user (they go together)"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_TOKEN=s3cret", "NLBRIDGE_NATS_AUTH_NKEY_SEED_FILE=a.nk"}, "environment NLBRIDGE_NATS_AUTH_NKEY_SEED_FILE, NLBRIDGE_NATS_AUTH_TOKEN: nats.auth: more than one method is set (token, nkey); use one"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_TOKEN=s3cret\xff"}, "environment NLBRIDGE_NATS_AUTH_TOKEN: nats.auth.token: value is not valid UTF-8"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_TLS_KEY_FILE=k.pem"}, "environment NLBRIDGE_NATS_TLS_KEY_FILE: nats.tls.key_file: set without nats.tls.cert_file (they go together)"},
		{[]string{"NLBRIDGE_SUBJECTS_CONTROL=netlink.ctl"}, `environment NLBRIDGE_SUBJECTS_CONTROL: subjects: prefix "netlink" and control "netlink.ctl" overlap: subscribers to one would see the other`},
		{[]string{"NLBRIDGE_NATS_NAME="}, "environment NLBRIDGE_NATS_NAME: nats.name: must not be empty"},

		// Unknown variables, such as misspelt ones, list the variables of
		// the section they are in.
		{[]string{"NLBRIDGE_HSOT=web-01"}, "environment NLBRIDGE_HSOT: unknown variable (known: NLBRIDGE_HOST, NLBRIDGE_NETLINK_*, NLBRIDGE_NATS_*, NLBRIDGE_ENCODING, NLBRIDGE_SUBJECTS_*, NLBRIDGE_KV_*, NLBRIDGE_FILTER_*, NLBRIDGE_DUMP_*, NLBRIDGE_LOG_*, NLBRIDGE_METRICS_*)"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_PASWORD=s3cret"}, "environment NLBRIDGE_NATS_AUTH_PASWORD: unknown variable (known: NLBRIDGE_NATS_AUTH_USER, NLBRIDGE_NATS_AUTH_PASSWORD, NLBRIDGE_NATS_AUTH_TOKEN, NLBRIDGE_NATS_AUTH_CREDENTIALS_FILE, NLBRIDGE_NATS_AUTH_NKEY_SEED_FILE)"},
		{[]string{"NLBRIDGE_NATS_SERVER=nats://a"}, "environment NLBRIDGE_NATS_SERVER: unknown variable (known: NLBRIDGE_NATS_SERVERS, NLBRIDGE_NATS_NAME, NLBRIDGE_NATS_AUTH_*, NLBRIDGE_NATS_TLS_*, NLBRIDGE_NATS_EMBEDDED_*)"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH=x"}, "environment NLBRIDGE_NATS_AUTH: unknown variable (known: NLBRIDGE_NATS_SERVERS, NLBRIDGE_NATS_NAME, NLBRIDGE_NATS_AUTH_*, NLBRIDGE_NATS_TLS_*, NLBRIDGE_NATS_EMBEDDED_*)"},
		{[]string{"NLBRIDGE_DUMP_ON_START=true", "NLBRIDGE_nats_name=x"}, "environment NLBRIDGE_nats_name: unknown variable (known: NLBRIDGE_HOST, NLBRIDGE_NETLINK_*, NLBRIDGE_NATS_*, NLBRIDGE_ENCODING, NLBRIDGE_SUBJECTS_*, NLBRIDGE_KV_*, NLBRIDGE_FILTER_*, NLBRIDGE_DUMP_*, NLBRIDGE_LOG_*, NLBRIDGE_METRICS_*)"},
		{[]string{"NLBRIDGE_=1"}, "environment NLBRIDGE_: unknown variable (known: NLBRIDGE_HOST, NLBRIDGE_NETLINK_*, NLBRIDGE_NATS_*, NLBRIDGE_ENCODING, NLBRIDGE_SUBJECTS_*, NLBRIDGE_KV_*, NLBRIDGE_FILTER_*, NLBRIDGE_DUMP_*, NLBRIDGE_LOG_*, NLBRIDGE_METRICS_*)"},
		// An unknown variable is reported even when a known one is bad.
		{[]string{"NLBRIDGE_ENCODING=xml", "NLBRIDGE_BENCH_PAIRS=5000"}, "environment NLBRIDGE_BENCH_PAIRS: unknown variable (known: NLBRIDGE_HOST, NLBRIDGE_NETLINK_*, NLBRIDGE_NATS_*, NLBRIDGE_ENCODING, NLBRIDGE_SUBJECTS_*, NLBRIDGE_KV_*, NLBRIDGE_FILTER_*, NLBRIDGE_DUMP_*, NLBRIDGE_LOG_*, NLBRIDGE_METRICS_*)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			c, err := Read("", append(slices.Clone(testEnv), tt.env...))
			if err == nil {
				t.Fatalf("Read: got %+v, want error %q", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Read error:\n got %s\nwant %s", got, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Read error %q does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Read error %q shows a secret", err)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Read returned %+v with its error, want the zero Config", c)
			}
		})
	}
}

// TestReadPrecedence checks the environment overrides the file, key by key,
// and that errors point at whichever set the value.
func TestReadPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nlbridge.yaml")
	file := `host: web-01
nats:
  servers: [nats://a:4222, nats://b:4222]
  auth:
    user: alice
    password: from-file
encoding: cbor
subjects:
  prefix: events
filter:
  interfaces:
    exclude: ["veth*"]
dump:
  on_start: false
  min_interval: 5s
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}

	fromFile, err := Read(path, testEnv)
	if err != nil {
		t.Fatalf("Read without variables: %v", err)
	}
	if loaded, err := Load(path); err != nil || !reflect.DeepEqual(fromFile, loaded) {
		t.Errorf("Read(%s, no variables) = %+v\nLoad = %+v, %v", path, fromFile, loaded, err)
	}

	env := append(slices.Clone(testEnv),
		"NLBRIDGE_HOST=web-02",
		"NLBRIDGE_NATS_AUTH_PASSWORD=from-env",
		"NLBRIDGE_NATS_SERVERS=nats://c:4222",
		"NLBRIDGE_FILTER_INTERFACES_EXCLUDE=",
		"NLBRIDGE_DUMP_ON_START=true",
		"NLBRIDGE_LOG_LEVEL=debug",
	)
	got, err := Read(path, env)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := fromFile
	want.Host = "web-02"
	want.NATS.Name = "nlbridge@web-02" // follows the host, as neither sets the name
	want.NATS.Auth.Password = "from-env"
	want.NATS.Servers = []string{"nats://c:4222"}
	want.Filter.Exclude = nil
	want.Dump.OnStart = true
	want.Log.Level = slog.LevelDebug
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read:\n got %+v\nwant %+v", got, want)
	}

	// Errors name the file and line for what the file set, the variable for
	// what the environment set, and for a section the variables in it.
	errTests := []struct {
		env  []string
		want string
	}{
		{[]string{"NLBRIDGE_DUMP_ON_START=false"}, ""},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_USER="}, path + ":6: nats.auth.password: set without nats.auth.user (they go together)"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_PASSWORD="}, path + ":5: nats.auth.user: set without nats.auth.password (they go together)"},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://n:4222", "NLBRIDGE_NATS_AUTH_TOKEN=s3cret"}, "environment NLBRIDGE_NATS_AUTH_TOKEN: nats.auth: more than one method is set (user/password, token); use one"},
		{[]string{"NLBRIDGE_SUBJECTS_CONTROL=events"}, `environment NLBRIDGE_SUBJECTS_CONTROL: subjects: prefix "events" and control "events" overlap: subscribers to one would see the other`},
		{[]string{"NLBRIDGE_NATS_SERVERS=nats://c,ftp://d"}, `environment NLBRIDGE_NATS_SERVERS: nats.servers[1]: "ftp://d" has scheme ftp, want nats, tls, ws or wss`},
		{[]string{"NLBRIDGE_DUMP_MIN_INTERVAL=2h"}, "environment NLBRIDGE_DUMP_MIN_INTERVAL: dump.min_interval: 2h0m0s is out of range 0s..1h"},
	}
	for _, tt := range errTests {
		_, err := Read(path, append(slices.Clone(testEnv), tt.env...))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Read with %v: %v", tt.env, err)
		case tt.want == "":
		case err == nil || err.Error() != tt.want:
			t.Errorf("Read with %v:\n got error %v\nwant %s", tt.env, err, tt.want)
		}
	}

	// A bad file is reported before the environment is looked at.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("dump:\n  on_start: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want2 := bad + `:2: dump.on_start: want a boolean, got string "nope"`
	if _, err := Read(bad, []string{"NLBRIDGE_DUMP_ON_START=true"}); err == nil || err.Error() != want2 {
		t.Errorf("Read of a bad file: got error %v, want %s", err, want2)
	}
}

func TestReadNoFile(t *testing.T) {
	got, err := Read("", nil)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Read(\"\", nil):\n got %+v\nwant %+v", got, want)
	}

	_, err = Read(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Read of a missing file: got %v, want fs.ErrNotExist and not ErrInvalid", err)
	}
}
