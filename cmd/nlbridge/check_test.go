package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/config"
)

// unsetNLBridgeEnv removes the NLBRIDGE_ variables the test process
// inherited (a developer's own settings), which check would reject or
// apply, and restores them when t ends.
func unsetNLBridgeEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "NLBRIDGE_") {
			t.Setenv(name, "") // restores the value at cleanup
			os.Unsetenv(name)
		}
	}
}

// writeCheckFile writes a configuration file for a check test.
func writeCheckFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCheck runs "nlbridge check" with args.
func runCheck(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = checkCmd(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckGoodFile(t *testing.T) {
	unsetNLBridgeEnv(t)
	path := writeCheckFile(t, "nlbridge.yaml", `host: web-01
netlink:
  receive_buffer: 8MiB
nats:
  servers: [nats://nats-1.example.net:4222]
  auth:
    credentials_file: /etc/nlbridge/nlbridge.creds
  tls:
    ca_file: /etc/nlbridge/ca.pem
encoding: cbor
filter:
  interfaces:
    exclude: ["veth*"]
  families: [inet6]
dump:
  min_interval: 250ms
log:
  level: debug
`)
	code, stdout, stderr := runCheck("--config", path)
	if code != 0 || stderr != "" {
		t.Fatalf("nlbridge check: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	want, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got, err := config.Parse(strings.NewReader(stdout), "stdout")
	if err != nil {
		t.Fatalf("Parse of the output: %v\n%s", err, stdout)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the output parses to\n%+v\nwant\n%+v\noutput:\n%s", got, want, stdout)
	}
	// Every key is printed, defaults included.
	for _, line := range []string{"host: web-01\n", "  name: nlbridge@web-01\n", "    token: \"\"\n", "  on_start: true\n", "  listen: 127.0.0.1:4222\n"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("output lacks %q:\n%s", line, stdout)
		}
	}
}

func TestCheckDefaults(t *testing.T) {
	unsetNLBridgeEnv(t)
	t.Setenv("NLBRIDGE_HOST", "web-01") // independent of the machine
	code, stdout, stderr := runCheck()
	if code != 0 || stderr != "" {
		t.Fatalf("nlbridge check: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	want := config.Default()
	want.Host, want.NATS.Name = "web-01", "nlbridge@web-01"
	if !bytes.Equal([]byte(stdout), want.YAML()) {
		t.Errorf("output:\n%s\nwant:\n%s", stdout, want.YAML())
	}
}

func TestCheckErrors(t *testing.T) {
	unsetNLBridgeEnv(t)
	badKey := writeCheckFile(t, "nlbridge.yaml", "host: web-01\nnetlink:\n  recieve_buffer: 4MiB\n")
	good := writeCheckFile(t, "good.yaml", "host: web-01\n")
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string // the start of it
	}{
		{
			name:   "bad key",
			args:   []string{"--config", badKey},
			code:   2,
			stderr: "nlbridge: " + badKey + ":3: netlink.recieve_buffer: unknown key (known: netns, receive_buffer)\n",
		},
		{
			name:   "bad variable",
			args:   []string{"--config", good},
			env:    map[string]string{"NLBRIDGE_ENCODING": "xml"},
			code:   2,
			stderr: `nlbridge: environment NLBRIDGE_ENCODING: encoding: "xml" is not one of json, cbor` + "\n",
		},
		{
			name:   "unknown variable",
			args:   []string{"--config", good},
			env:    map[string]string{"NLBRIDGE_NATS_SERVER": "nats://a:4222"},
			code:   2,
			stderr: "nlbridge: environment NLBRIDGE_NATS_SERVER: unknown variable (known: NLBRIDGE_NATS_SERVERS, ",
		},
		{name: "missing file", args: []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, code: 2, stderr: "nlbridge: config: open "},
		{name: "extra argument", args: []string{"--config", good, "extra"}, code: 2, stderr: `nlbridge check: unexpected argument "extra"` + "\n"},
		{name: "unknown flag", args: []string{"--bogus"}, code: 2, stderr: "flag provided but not defined: -bogus\n"},
		{name: "help", args: []string{"--help"}, code: 0, stderr: "Usage: nlbridge check [--config FILE]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCheck(tt.args...)
			if code != tt.code || !strings.HasPrefix(stderr, tt.stderr) {
				t.Errorf("nlbridge check %v: exit %d, stderr %q; want exit %d, stderr starting %q", tt.args, code, stderr, tt.code, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("nlbridge check %v: stdout %q, want nothing", tt.args, stdout)
			}
		})
	}
}

func TestCheckEnvironmentOverridesFile(t *testing.T) {
	unsetNLBridgeEnv(t)
	path := writeCheckFile(t, "nlbridge.yaml", "host: web-01\nencoding: json\nnats:\n  servers: [nats://a:4222]\ndump:\n  on_start: true\n")
	t.Setenv("NLBRIDGE_ENCODING", "cbor")
	t.Setenv("NLBRIDGE_NATS_SERVERS", "nats://b:4222,nats://c:4222")
	t.Setenv("NLBRIDGE_DUMP_ON_START", "false")
	code, stdout, stderr := runCheck("--config", path)
	if code != 0 || stderr != "" {
		t.Fatalf("nlbridge check: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	for _, line := range []string{"encoding: cbor\n", "  servers: ['nats://b:4222', 'nats://c:4222']\n", "  on_start: false\n", "host: web-01\n"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("output lacks %q:\n%s", line, stdout)
		}
	}
	got, err := config.Parse(strings.NewReader(stdout), "stdout")
	if err != nil {
		t.Fatalf("Parse of the output: %v\n%s", err, stdout)
	}
	want, err := config.Read(path, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the output parses to\n%+v\nwant\n%+v", got, want)
	}
}

func TestCheckRedactsSecrets(t *testing.T) {
	unsetNLBridgeEnv(t)
	path := writeCheckFile(t, "nlbridge.yaml", "host: web-01\nnats:\n  servers: [\"nats://bob:url-s3cret@a:4222\", \"nats://token-s3cret@b:4222\"]\n  auth:\n    user: alice\n")
	t.Setenv("NLBRIDGE_NATS_AUTH_PASSWORD", "env-s3cret")
	code, stdout, stderr := runCheck("--config", path)
	if code != 0 || stderr != "" {
		t.Fatalf("nlbridge check: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	if strings.Contains(stdout, "s3cret") {
		t.Errorf("output shows a secret:\n%s", stdout)
	}
	for _, line := range []string{"    user: alice\n", "    password: <redacted>\n", `    token: ""` + "\n", "'nats://REDACTED@a:4222', 'nats://REDACTED@b:4222'"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("output lacks %q:\n%s", line, stdout)
		}
	}

	// Nor does an error show one.
	t.Setenv("NLBRIDGE_NATS_AUTH_TOKEN", "token-s3cret")
	code, stdout, stderr = runCheck("--config", path)
	want := "nlbridge: environment NLBRIDGE_NATS_AUTH_PASSWORD, NLBRIDGE_NATS_AUTH_TOKEN: nats.auth: more than one method is set (user/password, token); use one\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("nlbridge check with two methods: exit %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, want)
	}
}
