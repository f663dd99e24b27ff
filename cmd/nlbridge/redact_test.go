package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
)

// TestClientsRedactURLs: watch and request-dump never print the user
// information of a server URL, from --server or $NATS_URL, when they
// cannot connect or when they say where they are connected.
func TestClientsRedactURLs(t *testing.T) {
	unsetNLBridgeEnv(t)
	host := strings.TrimPrefix(closedPort(t), "nats://")
	for _, url := range []string{
		"nats://tok-s3cret@" + host,
		"nats://alice:pass-s3cret@" + host,
		"nats://a:1,nats://alice:pass-s3cret@" + host,
		"nats://alice:pass-s3cret@127.0.0.1:x", // does not parse
		"nats://alice:%zs3cret@127.0.0.1:4222", // nor does this: an escape the error would quote
		"nats://alice:p,s3cret@" + host,        // a comma in the password
	} {
		for _, cmd := range []string{"watch", "request-dump"} {
			for _, how := range []string{"--server", "NATS_URL"} {
				t.Run(cmd+" "+how+" "+url, func(t *testing.T) {
					args := []string{cmd}
					if how == "--server" {
						t.Setenv("NATS_URL", "")
						args = append(args, "--server", url)
					} else {
						t.Setenv("NATS_URL", url)
					}
					var stdout, stderr bytes.Buffer
					code := realMain(args, &stdout, &stderr)
					if code != 1 {
						t.Errorf("exit %d, want 1; stderr %q", code, stderr.String())
					}
					if !strings.Contains(stderr.String(), "connect to NATS at ") || !strings.Contains(stderr.String(), "REDACTED@") {
						t.Errorf("stderr %q does not say where it tried to connect, redacted", stderr.String())
					}
					if out := stdout.String() + stderr.String(); strings.Contains(out, "s3cret") {
						t.Errorf("output shows the secret: %q", out)
					}
				})
			}
		}
	}
}

// TestWatchRedactsConnectedURL: the URL that watch says it is watching on
// hides a token, which url.URL.Redacted (and nats.go's ConnectedUrlRedacted)
// would show.
func TestWatchRedactsConnectedURL(t *testing.T) {
	opts := natsserver.DefaultTestOptions
	opts.Host, opts.Port, opts.Authorization = "127.0.0.1", server.RANDOM_PORT, "tok-s3cret"
	srv := natsserver.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	port := srv.Addr().(*net.TCPAddr).Port
	_, stderr, stop := startWatch(t, watchOptions{server: fmt.Sprintf("nats://tok-s3cret@127.0.0.1:%d", port), prefix: "netlink"})
	stop()
	if !strings.Contains(stderr.String(), fmt.Sprintf("on nats://REDACTED@127.0.0.1:%d", port)) || strings.Contains(stderr.String(), "s3cret") {
		t.Errorf("watch's stderr %q, want the URL with the token redacted", stderr.String())
	}
}

// TestCheckRedactsURLInError: a configuration error that quotes a server
// URL from the environment hides its user information.
func TestCheckRedactsURLInError(t *testing.T) {
	unsetNLBridgeEnv(t)
	for _, url := range []string{"ftp://tok-s3cret@a:4222", "nats://alice:pass-s3cret@a:x", "nats://alice:%zs3cret@a"} {
		t.Setenv("NLBRIDGE_NATS_SERVERS", url)
		code, stdout, stderr := runCheck()
		if code != 2 || stdout != "" || !strings.Contains(stderr, "nats.servers[0]: \"") || !strings.Contains(stderr, "REDACTED@a") || strings.Contains(stderr, "s3cret") {
			t.Errorf("nlbridge check with NLBRIDGE_NATS_SERVERS=%s: exit %d, stdout %q, stderr %q; want 2, nothing, the URL redacted", url, code, stdout, stderr)
		}
	}
}
