// Package natsconn is the TCP connection nlbridge's NATS clients dial
// through (conn_linux.go); elsewhere a plain one.
//go:build !linux

package natsconn

import (
	"net"
	"time"

	"github.com/nats-io/nats.go"
)

// NewDialer returns a plain TCP dialer; conn_linux.go explains the Linux
// one. There is no TCP_USER_TIMEOUT here (userTimeout is not used): the
// NATS pings alone detect a server that stopped answering.
func NewDialer(timeout, userTimeout time.Duration) nats.CustomDialer {
	return &net.Dialer{Timeout: timeout}
}
