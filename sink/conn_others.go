//go:build !linux

package sink

import (
	"net"
	"time"
)

// newDialer returns a plain TCP dialer; conn_linux.go explains the Linux
// one. There is no TCP_USER_TIMEOUT here: the NATS pings alone detect a
// server that stopped answering.
func newDialer(timeout time.Duration) *net.Dialer { return &net.Dialer{Timeout: timeout} }
