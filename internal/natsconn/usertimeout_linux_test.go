package natsconn

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestDialerUserTimeout checks that the connections the dialer makes give
// up on unacknowledged data after the user timeout it was given.
func TestDialerUserTimeout(t *testing.T) {
	c, _ := connPair(t)
	var got int
	var gerr error
	if err := c.raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := int(testUserTimeout.Milliseconds()); got != want {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want %d", got, want)
	}
}
