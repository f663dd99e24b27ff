//go:build noembedded

package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/sink"
)

// TestNoEmbedded: a build without the embedded NATS server says so, and
// refuses (exit 2, naming nats.servers) a configuration that needs it,
// in run and in check, before touching netlink or NATS; with a server
// named, check accepts it.
func TestNoEmbedded(t *testing.T) {
	if sink.HasEmbedded {
		t.Fatal("HasEmbedded is true in a noembedded build")
	}
	if _, err := sink.StartEmbedded(sink.EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: "netlink"}); !errors.Is(err, sink.ErrNoEmbedded) {
		t.Errorf("StartEmbedded: %v, want ErrNoEmbedded", err)
	}
	t.Setenv("NLBRIDGE_HOST", "h1")
	for _, cmd := range []string{"run", "check"} {
		var stdout, stderr bytes.Buffer
		if code := realMain([]string{cmd}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "nats.servers") ||
			!strings.Contains(stderr.String(), "without the embedded NATS server") {
			t.Errorf("nlbridge %s with no nats.servers = %d, stderr %q; want 2 and a message naming nats.servers", cmd, code, stderr.String())
		}
	}
	t.Setenv("NLBRIDGE_NATS_SERVERS", "nats://127.0.0.1:4222")
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"check"}, &stdout, &stderr); code != 0 {
		t.Errorf("nlbridge check with nats.servers = %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := realMain([]string{"version"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "without the embedded NATS server") {
		t.Errorf("nlbridge version = %d, %q; want it to say the server is left out", code, stdout.String())
	}
}
