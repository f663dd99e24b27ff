//go:build linux

package source

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// cpuTime is the CPU time that this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIntegrationReceive measures the source's CPU per notification
// in the steady state (no dump running), with GOMAXPROCS 1 as nlbridge
// runs: an `ip` process changes a veth's MTU in batches of 200, and the
// source reads the notifications and hands them to a Handler that counts
// them. cpu-ns/event is this process's CPU time (the source, and the
// benchmark starting `ip`, whose own CPU is not counted) per event. The
// sub-benchmarks receive raw, as before; as the source chooses (raw
// outside dumps); and always telling the scheduler, which is what the raw
// call saves.
func BenchmarkIntegrationReceive(b *testing.B) {
	ns := nstest.New(b)
	ns.AddVeth(b, "bench0", "bench1")
	var batch strings.Builder
	const perBatch = 200
	for i := range perBatch {
		fmt.Fprintf(&batch, "link set dev bench0 mtu %d\n", 1400+i%2)
	}
	for _, bm := range []struct {
		name string
		mode int
	}{{"raw", recvAlwaysRaw}, {"chosen", recvAuto}, {"told", recvNeverRaw}} {
		b.Run(bm.name, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			recvMode = bm.mode // before Run starts, restored after it returned
			defer func() { recvMode = recvAuto }()
			var events atomic.Int64
			src, stop := openRun(b, Config{NetNS: ns.Path, ReceiveBuffer: 4 << 20}, HandlerFunc(func(ev *event.Event) {
				if ev.Type == event.NewLink {
					events.Add(1)
				}
			}))
			defer stop()
			b.ResetTimer()
			cpu := cpuTime(b)
			var want int64
			for want < int64(b.N) {
				if _, err := ns.Command("ip", strings.NewReader(batch.String()), "-batch", "-"); err != nil {
					b.Fatal(err)
				}
				want += perBatch
				for deadline := time.Now().Add(10 * time.Second); events.Load() < want; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d notifications read (stats %+v)", events.Load(), want, src.Stats())
					}
				}
			}
			cpu = cpuTime(b) - cpu
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(events.Load()), "cpu-ns/event")
			if s := src.Stats(); s.Overflows != 0 || s.Dumps != 0 {
				b.Fatalf("stats %+v: want no overflow and no dump", s)
			}
		})
	}
}

// BenchmarkIntegrationDump measures full dumps of a namespace with 200
// links and 20,000 addresses, with GOMAXPROCS 1, receiving raw (as
// before) and as the source chooses (telling the scheduler during dumps).
// One op is one dump; cpu-ms/op is this process's CPU time per dump.
func BenchmarkIntegrationDump(b *testing.B) {
	ns := nstest.New(b)
	if _, err := ns.Command("ip", strings.NewReader(stallBatch()), "-batch", "-"); err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		mode int
	}{{"raw", recvAlwaysRaw}, {"chosen", recvAuto}} {
		b.Run(bm.name, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			recvMode = bm.mode // before Run starts, restored after it returned
			defer func() { recvMode = recvAuto }()
			src, stop := openRun(b, Config{NetNS: ns.Path, ReceiveBuffer: 4 << 20}, HandlerFunc(func(*event.Event) {}))
			defer stop()
			b.ResetTimer()
			cpu := cpuTime(b)
			for range b.N {
				m, err := src.Dump(context.Background(), event.ReasonRequest, "")
				if err != nil {
					b.Fatal(err)
				}
				if m.Sync.Addrs < 20000 {
					b.Fatalf("dump of %d addresses, want 20,000", m.Sync.Addrs)
				}
			}
			cpu = cpuTime(b) - cpu
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/1e6/float64(b.N), "cpu-ms/op")
		})
	}
}
