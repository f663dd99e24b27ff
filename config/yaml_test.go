package config

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestYAMLDefault(t *testing.T) {
	want := Default()
	out := want.YAML()
	got, err := Parse(bytes.NewReader(out), "YAML()")
	if err != nil {
		t.Fatalf("Parse(YAML()): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(Default().YAML()):\n got %+v\nwant %+v\nYAML:\n%s", got, want, out)
	}
}

// TestYAMLShape checks YAML prints every key, in the order of the schema
// and of config.example.yaml.
func TestYAMLShape(t *testing.T) {
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	want := schemaKeys(schema, "")
	if got := documentedKeys(string(b)); !slices.Equal(got, want) {
		t.Errorf("%s keys, in order:\n got %v\nwant %v", example, got, want)
	}
	if got := documentedKeys(string(Default().YAML())); !slices.Equal(got, want) {
		t.Errorf("YAML() keys, in order:\n got %v\nwant %v", got, want)
	}
}

// fullFile sets every key to a value other than its default.
const fullFile = `host: web-01
netlink:
  netns: /var/run/netns/blue
  receive_buffer: 65537
nats:
  servers: [nats://a:4222, 'tls://b']
  name: edge-1
  auth:
    credentials_file: /etc/nlbridge/user.creds
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client-key.pem
    insecure_skip_verify: true
    handshake_first: true
  embedded:
    listen: "[::1]:0"
    store_dir: /var/lib/nlbridge
encoding: cbor
subjects:
  prefix: a.b
  control: "123"
kv:
  bucket: fleet
  replicas: 3
  storage: memory
  presence_ttl: 1m
filter:
  interfaces:
    include: ["*", "en?s[0-9]"]
    exclude: [veth*]
  families: [inet6]
  events: [DELADDR]
dump:
  on_start: false
  min_interval: 1m30s
log:
  level: error
  format: json
metrics:
  listen: ":9100"
`

// fullYAML is what YAML prints for fullFile.
const fullYAML = `host: web-01
netlink:
  netns: /var/run/netns/blue
  receive_buffer: 65537
nats:
  servers: ['nats://a:4222', 'tls://b']
  name: edge-1
  auth:
    user: ""
    password: ""
    token: ""
    credentials_file: /etc/nlbridge/user.creds
    nkey_seed_file: ""
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client-key.pem
    insecure_skip_verify: true
    handshake_first: true
  embedded:
    listen: '[::1]:0'
    store_dir: /var/lib/nlbridge
encoding: cbor
subjects:
  prefix: a.b
  control: "123"
kv:
  bucket: fleet
  replicas: 3
  storage: memory
  presence_ttl: 1m0s
filter:
  interfaces:
    include: ['*', 'en?s[0-9]']
    exclude: [veth*]
  families: [inet6]
  events: [DELADDR]
dump:
  on_start: false
  min_interval: 1m30s
log:
  level: error
  format: json
metrics:
  listen: :9100
`

func TestYAML(t *testing.T) {
	c, err := Parse(strings.NewReader(fullFile), "full.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := string(c.YAML()); got != fullYAML {
		t.Errorf("YAML():\n%s\nwant:\n%s", got, fullYAML)
	}
}

// TestYAMLRoundTrip checks that what YAML prints of a parsed file parses to
// the same configuration.
func TestYAMLRoundTrip(t *testing.T) {
	inputs := map[string]string{"full": fullFile}
	for _, tt := range goodInputs {
		inputs[tt.name] = tt.in
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			want, err := Parse(strings.NewReader(in), "in.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want = withoutSecrets(want)
			out := want.YAML()
			got, err := Parse(bytes.NewReader(out), "out.yaml")
			if err != nil {
				t.Fatalf("Parse(YAML()): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(YAML()):\n got %+v\nwant %+v\nYAML:\n%s", got, want, out)
			}
		})
	}
}

// withoutSecrets returns c with its secrets replaced as YAML prints them.
func withoutSecrets(c Config) Config {
	if c.NATS.Auth.Password != "" {
		c.NATS.Auth.Password = redacted
	}
	if c.NATS.Auth.Token != "" {
		c.NATS.Auth.Token = redacted
	}
	c.NATS.Servers = slices.Clone(c.NATS.Servers)
	for i, s := range c.NATS.Servers {
		c.NATS.Servers[i] = RedactURL(s)
	}
	return c
}

func TestYAMLRedactsSecrets(t *testing.T) {
	c := Default()
	c.NATS.Servers = []string{"nats://bob:s3cret-url@a:4222", "nats://s3cret-tok3n@b:4222", "tls://c"}
	c.NATS.Auth = Auth{User: "alice", Password: "s3cret-password"}
	out := string(c.YAML())
	for _, secret := range []string{"s3cret-url", "s3cret-tok3n", "s3cret-password"} {
		if strings.Contains(out, secret) {
			t.Errorf("YAML() shows secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"    user: alice\n",
		"    password: <redacted>\n",
		`    token: ""` + "\n",
		"  servers: ['nats://REDACTED@a:4222', 'nats://REDACTED@b:4222', 'tls://c']\n", // a token looks like a user name: both go
	} {
		if !strings.Contains(out, want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}

	c.NATS.Auth = Auth{Token: "s3cret-token"}
	out = string(c.YAML())
	if strings.Contains(out, "s3cret-token") || !strings.Contains(out, "    token: <redacted>\n") || !strings.Contains(out, `    password: ""`) {
		t.Errorf("YAML() of a token:\n%s", out)
	}
}

func TestAuthMethod(t *testing.T) {
	tests := []struct {
		auth Auth
		want string
	}{
		{Auth{}, "none"},
		{Auth{User: "a", Password: "b"}, "user/password"},
		{Auth{User: "a"}, "user/password"},
		{Auth{Password: "b"}, "user/password"},
		{Auth{Token: "t"}, "token"},
		{Auth{CredentialsFile: "a.creds"}, "credentials"},
		{Auth{NKeySeedFile: "a.nk"}, "nkey"},
		{Auth{Token: "t", NKeySeedFile: "a.nk"}, "token"}, // invalid: the first
	}
	for _, tt := range tests {
		if got := tt.auth.Method(); got != tt.want {
			t.Errorf("%+v.Method() = %q, want %q", tt.auth, got, tt.want)
		}
	}
}

func TestTLSEnabled(t *testing.T) {
	for _, tls := range []TLS{
		{CAFile: "ca.pem"}, {CertFile: "c.pem"}, {KeyFile: "k.pem"}, {InsecureSkipVerify: true}, {HandshakeFirst: true},
	} {
		if !tls.Enabled() {
			t.Errorf("%+v.Enabled() = false, want true", tls)
		}
	}
	if (TLS{}).Enabled() {
		t.Error("TLS{}.Enabled() = true, want false")
	}
}

// TestDefaultNotShared checks each Default has its own lists.
func TestDefaultNotShared(t *testing.T) {
	a := Default()
	a.Filter.Families[0], a.Filter.Events[0] = "x", "x"
	if b := Default(); b.Filter.Families[0] != "inet" || b.Filter.Events[0] != "NEWLINK" {
		t.Errorf("changing one Default's lists changed another's: %+v", b.Filter)
	}
}

// TestYAMLStrings checks strings that YAML must quote or escape print so
// that they parse back unchanged.
func TestYAMLStrings(t *testing.T) {
	for _, s := range []string{
		"\n", "\na", "a\n", "a\nb", "a\r\nb", " \n", "\t", " lead", "trail ", "\u0085x", "\ufeffx", "x\u2028y", "\x01",
		"#x", "x #y", "a: b", "- x", "'q'", `"`, `\`, "null", "~", "yes", "0x10", "1e3", ".inf", "&a", "*a", "!t", "%x",
		"@x", "`x", "|", ">", "?", "-", "---", "...", "[x]", "{x", "a,b", "日本", "\u00a0",
	} {
		c := Default()
		c.NATS.Auth.User, c.NATS.Auth.Password = s, "p"
		c.Subjects.Prefix = "p" // not s: subjects are stricter
		c.Filter.Include = []string{s, "x"}
		want := withoutSecrets(c)
		out := want.YAML()
		// Parse would validate: a user is any string, a glob is not.
		got := Default()
		if err := newDecoder("YAML()").document(out, &got); err != nil {
			t.Errorf("%q: decode(YAML()): %v\n%s", s, err, out)
			continue
		}
		if got.NATS.Auth.User != s || !slices.Equal(got.Filter.Include, want.Filter.Include) {
			t.Errorf("%q: decode(YAML()) gives user %q, include %q\n%s", s, got.NATS.Auth.User, got.Filter.Include, out)
		}
	}
}
