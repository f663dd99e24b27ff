package source

import (
	"os"
	"testing"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/nlbridge/nlbridge/encode"
	"github.com/nlbridge/nlbridge/event"
)

// readMessage reads a netlink message that was captured from a real kernel
// (testdata/*.bin: the NEWLINK of a new veth, 1496 bytes with its
// statistics, and the NEWADDR of a tentative IPv6 address on its peer).
func readMessage(tb testing.TB, name string) netlink.Message {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var m netlink.Message
	if err := m.UnmarshalBinary(b); err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestCapturedMessages checks that the benchmark inputs decode to what the
// kernel described, so that the benchmarks measure real work.
func TestCapturedMessages(t *testing.T) {
	d := newDecoder()
	var ev event.Event
	if err := d.decode(readMessage(t, "newlink-veth.bin"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != event.NewLink || ev.Link.Name != "cap1" || ev.Link.Index != 4 || ev.Link.Kind != "veth" || ev.Link.MTU != 1500 || len(ev.Link.MAC) != 6 {
		t.Errorf("captured NEWLINK decoded to %+v", ev.Link)
	}
	d.names[5] = "cap0" // its peer, whose NEWLINK was not captured
	if err := d.decode(readMessage(t, "newaddr-inet6.bin"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != event.NewAddr || ev.Addr.Address.String() != "2001:db8::5" || ev.Addr.PrefixLen != 64 || ev.Addr.Ifname != "cap0" {
		t.Errorf("captured NEWADDR decoded to %+v", ev.Addr)
	}
}

// BenchmarkDecodeEncode measures the per-event work between the socket and
// the NATS client: decoding a kernel message into an event and encoding it.
func BenchmarkDecodeEncode(b *testing.B) {
	for _, msg := range []string{"newlink-veth.bin", "newaddr-inet6.bin"} {
		for _, name := range []string{"json", "cbor"} {
			b.Run(msg[:len(msg)-4]+"/"+name, func(b *testing.B) {
				enc, err := encode.New(name)
				if err != nil {
					b.Fatal(err)
				}
				d := newDecoder()
				d.names[5] = "cap0"
				m := readMessage(b, msg)
				var ev event.Event
				var buf []byte
				now := time.Now()
				b.ReportAllocs()
				for b.Loop() {
					ev = event.Event{Time: now}
					if err := d.decode(m, &ev); err != nil {
						b.Fatal(err)
					}
					ev.Host, ev.Boot, ev.Seq = "web-01", "0123456789abcdef", ev.Seq+1
					if buf, err = enc.Append(buf[:0], &ev); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(len(buf)))
			})
		}
	}
}
