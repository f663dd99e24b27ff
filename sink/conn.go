package sink

import "time"

// A server that stops answering while the TCP connection stays up (a
// silent partition, a frozen server, a middlebox that lost its state) is
// found by nats.go's pings: it pings every pingInterval and declares the
// connection stale when more than maxPingsOut pings wait for their PONG,
// 4 to 6 s after the last PONG, then reconnects. nats.go's default, 2
// minutes and 2 pings, would lose every message of 4 to 6 minutes.
//
// On Linux the socket also has TCP_USER_TIMEOUT (internal/natsconn): data that
// the server's kernel does not acknowledge for tcpUserTimeout fails the
// connection, where the kernel would otherwise retransmit for about 15
// minutes.
const (
	pingInterval   = 2 * time.Second
	maxPingsOut    = 2
	tcpUserTimeout = 8 * time.Second
)
