//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// kvCluster is three nats-server processes with JetStream, routed on
// loopback ports, each of which can be killed and started again.
type kvCluster struct {
	t     *testing.T
	bin   string
	confs []string // configuration file of each server
	ports []int    // client port of each server
	http  []int    // monitoring port of each server
	procs []*exec.Cmd
}

// freePortNumber returns a 127.0.0.1 port that nothing listens on now.
func freePortNumber(t *testing.T) int {
	_, port, _ := net.SplitHostPort(freePort(t))
	n, _ := strconv.Atoi(port)
	return n
}

// natsServerBinary builds nats-server, the version in go.mod, into dir.
func natsServerBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

func newKVCluster(t *testing.T) *kvCluster {
	t.Helper()
	dir := t.TempDir()
	c := &kvCluster{t: t, bin: natsServerBinary(t, dir), procs: make([]*exec.Cmd, 3)}
	routes := make([]string, 3)
	clusterPorts := make([]int, 3)
	for i := range 3 {
		clusterPorts[i] = freePortNumber(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i])
		c.ports = append(c.ports, freePortNumber(t))
		c.http = append(c.http, freePortNumber(t))
	}
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		text := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: kv, listen: 127.0.0.1:%d, routes: [%s] }
`, i+1, c.ports[i], c.http[i], filepath.Join(dir, fmt.Sprintf("n%d", i+1)), clusterPorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c.confs = append(c.confs, conf)
	}
	t.Cleanup(func() {
		for i := range c.procs {
			if c.procs[i] != nil {
				c.kill(i)
			}
		}
	})
	for i := range 3 {
		c.start(i)
	}
	return c
}

// start starts server i and waits until it serves clients.
func (c *kvCluster) start(i int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, "-c", c.confs[i])
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start nats-server n%d: %v", i+1, err)
	}
	c.procs[i] = cmd
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.ports[i])); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server n%d does not listen", i+1)
		}
	}
}

// kill kills server i with SIGKILL, as a crash or a power loss would.
func (c *kvCluster) kill(i int) {
	_ = c.procs[i].Process.Signal(syscall.SIGKILL)
	_ = c.procs[i].Wait()
	c.procs[i] = nil
}

func (c *kvCluster) urls() []string {
	var urls []string
	for _, p := range c.ports {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return urls
}

// serving returns the running server that has a client connection named
// name, waiting for one.
func (c *kvCluster) serving(name string) int {
	c.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i := range c.procs {
			if c.procs[i] == nil {
				continue
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/connz", c.http[i]))
			if err != nil {
				continue
			}
			var connz struct{ Connections []struct{ Name string } }
			err = json.NewDecoder(resp.Body).Decode(&connz)
			resp.Body.Close()
			if err == nil && slices.ContainsFunc(connz.Connections, func(x struct{ Name string }) bool { return x.Name == name }) {
				return i
			}
		}
	}
	c.t.Fatalf("no server has a connection named %q", name)
	return -1
}

// streamLeader returns the index of the server that leads stream.
func (c *kvCluster) streamLeader(js jetstream.JetStream, stream string) int {
	c.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			if n, err := strconv.Atoi(strings.TrimPrefix(s.CachedInfo().Cluster.Leader, "n")); err == nil && n >= 1 && n <= 3 {
				return n - 1
			}
		}
	}
	c.t.Fatalf("stream %s has no leader", stream)
	return -1
}

// TestIntegrationKVCluster: three nats-server processes routed on
// loopback, a bucket with three replicas, nlbridge given all three URLs.
// During a stream of changes, the server nlbridge is connected to is
// killed (and comes back), then the bucket stream's leader: the bucket
// converges to the kernel, and so does a consumer of the event stream
// that sees what reached any server, in which every gap in seq is
// followed by a SYNC reconnect that repairs it.
func TestIntegrationKVCluster(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "c0", "c1")
	c := newKVCluster(t)
	cfg := testConfig("kvcluster", ns, "")
	cfg.NATS.Servers = c.urls()
	cfg.KV.Replicas = 3

	// One consumer on each server, so that together they see whatever
	// reached any of them.
	var consumers []*collector
	for _, url := range c.urls() {
		nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		consumers = append(consumers, collect(t, nc, "netlink.kvcluster.>"))
	}
	runBridge(t, context.Background(), cfg)
	kv := kvBucket(t, strings.Join(c.urls(), ","))
	waitBucket(t, ns, kv, "kvcluster", 30*time.Second)

	// The changes: c0's MTU, and an address added and deleted, all along.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch i % 3 {
			case 0:
				_, err = ns.Command("ip", nil, "link", "set", "c0", "mtu", fmt.Sprint(1300+i%200))
			case 1:
				_, err = ns.Command("ip", nil, "addr", "add", fmt.Sprintf("10.9.%d.1/24", i%50), "dev", "c0")
			case 2:
				_, err = ns.Command("ip", nil, "addr", "del", fmt.Sprintf("10.9.%d.1/24", (i-1)%50), "dev", "c0")
			}
			if err != nil {
				t.Errorf("churn: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	stopChurn := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopChurn()

	connected := c.serving(cfg.NATS.Name)
	time.Sleep(500 * time.Millisecond)
	t.Logf("killing n%d, which nlbridge is connected to", connected+1)
	c.kill(connected)
	time.Sleep(2 * time.Second)
	c.start(connected)

	nc, err := nats.Connect(strings.Join(c.urls(), ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.streamLeader(js, "KV_netlink")
	time.Sleep(time.Second)
	t.Logf("killing n%d, the bucket's stream leader", leader+1)
	c.kill(leader)
	time.Sleep(2 * time.Second)
	stopChurn()
	ns.SetMTU(t, v0, 1500) // one last change after the churn

	took := waitBucket(t, ns, kv, "kvcluster", 30*time.Second)
	t.Logf("the bucket converged %v after the changes stopped", took)

	// The event stream, as the consumers saw it together.
	var union []msg
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		union = unionBySeq(consumers)
		if apply(union).equal(kernelState(t, ns)) {
			break
		}
		if time.Now().After(deadline) {
			checkConverged(t, ns, union)
			t.Fatal("the event stream did not converge")
		}
	}
	gaps := 0
	for i := 1; i < len(union); i++ {
		seq, prev := union[i].num("seq"), union[i-1].num("seq")
		if seq == prev+1 {
			continue
		}
		gaps++
		if !slices.ContainsFunc(union[i:], func(m msg) bool { return m.str("reason") == "reconnect" }) {
			t.Errorf("seq %v to %v: a gap that no SYNC reconnect follows", prev, seq)
		}
	}
	if union[0].num("seq") != 1 {
		t.Errorf("the stream starts at seq %v", union[0].num("seq"))
	}
	t.Logf("%d messages, %d gaps, each followed by a SYNC reconnect", len(union), gaps)
}

// unionBySeq merges what the collectors received from one boot of one
// host, in seq order, each seq once.
func unionBySeq(cs []*collector) []msg {
	bySeq := map[float64]msg{}
	for _, c := range cs {
		for _, m := range c.all() {
			bySeq[m.num("seq")] = m
		}
	}
	out := make([]msg, 0, len(bySeq))
	for _, m := range bySeq {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b msg) int { return int(a.num("seq") - b.num("seq")) })
	return out
}
