//go:build !linux

package sink

import (
	"net"
	"time"
)

// newDialer returns a plain TCP dialer; conn_linux.go explains the Linux one.
func newDialer(timeout time.Duration) *net.Dialer { return &net.Dialer{Timeout: timeout} }
