//go:build linux

package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// TestIntegrationOpenNetNS: only a network namespace is accepted; a file
// of /proc that is not a namespace, a namespace of another type and a
// regular file are refused with an error that names the path.
func TestIntegrationOpenNetNS(t *testing.T) {
	ns := nstest.New(t)
	regular := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, want string
	}{
		{ns.Path, ""},
		{"/proc/self/ns/net", ""},
		{"/proc/self/status", "is not a network namespace (not a namespace"},
		{"/proc/self/ns/mnt", "is not a network namespace (a namespace of another type"},
		{regular, "is not a network namespace (not a namespace"},
		{"/nonexistent/netns", "no such file"},
	} {
		f, err := openNetNS(tt.path)
		if f != nil {
			f.Close()
		}
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("openNetNS(%s): %v, want success", tt.path, err)
		case tt.want != "" && err == nil:
			t.Errorf("openNetNS(%s) succeeded, want an error %q", tt.path, tt.want)
		case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path)):
			t.Errorf("openNetNS(%s) = %q, want an error naming the path and saying %q", tt.path, err, tt.want)
		}
		if tt.want == "" || err == nil {
			continue
		}
		// Open refuses it the same way.
		if _, err := Open(Config{NetNS: tt.path}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(NetNS: %s) = %v, want %q", tt.path, err, tt.want)
		}
	}
}
