//go:build !noembedded

package sink

import (
	"fmt"
	"os"
)

// jetStreamDir returns the directory the embedded server's JetStream is to
// use, dir unless it is "", and what removes it once the server has
// stopped: nothing for dir. nats-server's own default, a directory under
// /tmp shared by every process, may belong to another user, so "" gets a
// private temporary directory.
func jetStreamDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "nlbridge-jetstream-")
	if err != nil {
		return "", nil, fmt.Errorf("sink: embedded NATS server: JetStream directory: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}
