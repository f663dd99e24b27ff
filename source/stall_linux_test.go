//go:build linux

package source

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nlbridge/nlbridge/event"
	"github.com/nlbridge/nlbridge/internal/nstest"
)

// churnPairs is the number of veth pairs that the churn deletes at once.
const churnPairs = 1000

// stallBatch is the `ip -batch` input that makes the namespace that
// TestIntegrationNoStall dumps: 100 veth pairs, each end with 50 IPv4
// and 50 IPv6 addresses, 20,000 addresses in all. (Few links, so that
// the namespace is made and destroyed in moments.)
func stallBatch() string {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "link add s%da type veth peer name s%db\n", i, i)
		for j, end := range []string{"a", "b"} {
			for k := range 50 {
				fmt.Fprintf(&b, "address add 10.%d.%d.%d/32 dev s%d%s\n", i, j, k+1, i, end)
				fmt.Fprintf(&b, "address add 2001:db8:%x:%x::%x/128 dev s%d%s nodad\n", i, j, k+1, i, end)
			}
		}
	}
	return b.String()
}

// stallRound runs a source with the receive mode mode on ns and dumps it
// until the churn has deleted its links twice (so that at least one
// deletion, and the time it held the rtnl lock, is wholly in the round),
// and returns the worst lateness of a goroutine that sleeps 1 ms at a time
// meanwhile, and the source's counters.
func stallRound(t *testing.T, ns *nstest.NS, mode int, deleted *atomic.Int64) (time.Duration, Stats) {
	t.Helper()
	// Set before Run starts, restored after it returned.
	recvMode, maxDumpAttempts = mode, 1<<20
	defer func() { recvMode, maxDumpAttempts = recvAuto, 10 }()
	src, halt := openRun(t, Config{NetNS: ns.Path, ReceiveBuffer: 4 << 20}, HandlerFunc(func(*event.Event) {}))
	defer halt()

	var worst atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			time.Sleep(time.Millisecond)
			if late := int64(time.Since(start) - time.Millisecond); late > worst.Load() {
				worst.Store(late)
			}
		}
	}()
	// Dumps back to back for d; the churn interrupts many of them, which
	// are retried.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	for until := deleted.Load() + 2; deleted.Load() < until; {
		if _, err := src.Dump(dctx, event.ReasonRequest, ""); err != nil {
			t.Fatalf("Dump: %v (has the churn stopped? it deleted its links %d times)", err, deleted.Load())
		}
	}
	close(stop)
	wg.Wait()
	return time.Duration(worst.Load()), src.Stats()
}

// TestIntegrationNoStall: while the kernel runs a dump for nlbridge's
// socket, each receive continues it and may sleep on the rtnl lock, which
// links changing elsewhere hold. With GOMAXPROCS 1, as nlbridge runs, a
// receive made raw (without telling the scheduler) keeps the only P and
// stops every other goroutine meanwhile; told, the scheduler runs them.
// The witness is the worst lateness of a goroutine sleeping 1 ms at a
// time, during dumps of a namespace with 20,000 addresses while another
// process adds and deletes links. Raw receives (as before) and the
// source's choice are measured in turns in the same run, as the machine
// may be busy.
func TestIntegrationNoStall(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: creates thousands of interfaces")
	}
	ns := nstest.New(t)
	start := time.Now()
	if _, err := ns.Command("ip", strings.NewReader(stallBatch()), "-batch", "-"); err != nil {
		t.Fatal(err)
	}
	t.Logf("100 veth pairs, 20,000 addresses, made in %v", time.Since(start).Round(time.Millisecond))

	// The churn runs in a namespace of its own (the rtnl lock is one for
	// all namespaces, and the dumps are not interrupted), in a process of
	// its own (forking from this one would stall it too): it makes groups
	// of veth pairs and deletes each group with one request, which holds
	// the lock while the kernel unregisters them all.
	other := nstest.New(t)
	var batch strings.Builder
	for i := range churnPairs {
		fmt.Fprintf(&batch, "link add c%da group 7 type veth peer name c%db\n", i, i)
	}
	batch.WriteString("link del group 7\n")
	file := filepath.Join(t.TempDir(), "churn")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// It prints a line after each deletion.
	churn := exec.Command("nsenter", "--net="+other.Path, "sh", "-c", `while ip -batch "$0"; do echo; done`, file)
	churn.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // killed with its ip
	churn.Stderr = os.Stderr
	out, err := churn.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := churn.Start(); err != nil {
		t.Skipf("skipping: cannot run the churn: %v", err)
	}
	var deleted atomic.Int64
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		for s := bufio.NewScanner(out); s.Scan(); {
			deleted.Add(1)
		}
	}()
	defer func() {
		_ = syscall.Kill(-churn.Process.Pid, syscall.SIGKILL)
		<-counted
		_ = churn.Wait()
	}()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// In turns, so that both see the same machine; the best round of
	// each is compared, as a busy machine only ever adds lateness.
	bestRaw, bestAuto := time.Hour, time.Hour
	for round := range 3 {
		raw, rs := stallRound(t, ns, recvAlwaysRaw, &deleted)
		auto, as := stallRound(t, ns, recvAuto, &deleted)
		t.Logf("round %d: worst lateness %v with raw receives (%d dumps, %d events), %v with the source's choice (%d dumps, %d events)",
			round, raw.Round(time.Microsecond), rs.Dumps, rs.Events, auto.Round(time.Microsecond), as.Dumps, as.Events)
		bestRaw, bestAuto = min(bestRaw, raw), min(bestAuto, auto)
	}
	t.Logf("best round's worst lateness: %v raw, %v chosen", bestRaw.Round(time.Microsecond), bestAuto.Round(time.Microsecond))
	if bestRaw < 30*time.Millisecond {
		t.Skipf("raw receives were never stalled for long here (%v): nothing to compare", bestRaw)
	}
	// Raw receives wait as long as the churn holds the lock (250 to 330
	// ms here), and stop the sleeper meanwhile; told, the scheduler runs
	// it within a few ms (10 to 20 ms here: the preemption of the reader,
	// which decodes all the time, and the machine's own noise).
	if bestAuto > bestRaw/2 {
		t.Errorf("worst lateness %v with the source's choice, %v with raw receives: want less than half", bestAuto, bestRaw)
	}
}
