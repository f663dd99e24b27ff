//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"

	"github.com/nlbridge/nlbridge/internal/nstest"
)

// kvCluster is three in-process NATS servers with JetStream, routed on
// loopback, each of which can be killed and started again.
type kvCluster struct {
	t       *testing.T
	opts    []server.Options
	servers []*server.Server
}

// freePortNumber returns a 127.0.0.1 port that nothing listens on now.
func freePortNumber(t *testing.T) int {
	_, port, _ := net.SplitHostPort(freePort(t))
	n, _ := strconv.Atoi(port)
	return n
}

func newKVCluster(t *testing.T) *kvCluster {
	t.Helper()
	c := &kvCluster{t: t}
	var routes []string
	clusterPorts := make([]int, 3)
	for i := range clusterPorts {
		clusterPorts[i] = freePortNumber(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", clusterPorts[i]))
	}
	for i := range 3 {
		o := natsserver.DefaultTestOptions
		o.ServerName = fmt.Sprintf("n%d", i+1)
		o.Host, o.Port = "127.0.0.1", freePortNumber(t)
		o.JetStream, o.StoreDir = true, t.TempDir()
		o.Cluster = server.ClusterOpts{Name: "kv", Host: "127.0.0.1", Port: clusterPorts[i]}
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.opts = append(c.opts, o)
	}
	c.servers = make([]*server.Server, 3)
	for i := range 3 {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	return c
}

func (c *kvCluster) start(i int) {
	o := c.opts[i]
	c.servers[i] = natsserver.RunServer(&o)
}

func (c *kvCluster) kill(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
	c.servers[i] = nil
}

func (c *kvCluster) urls() []string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return urls
}

// find returns the running server for which ok holds, waiting for one.
func (c *kvCluster) find(what string, ok func(*server.Server) bool) int {
	c.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i, s := range c.servers {
			if s != nil && ok(s) {
				return i
			}
		}
	}
	c.t.Fatalf("no server is %s", what)
	return -1
}

// TestIntegrationKVCluster: a bucket with three replicas on a three-node
// cluster, nlbridge given all three URLs. During a stream of changes, the
// server nlbridge is connected to is killed (and comes back), then the
// bucket stream's leader: the bucket converges to the kernel.
func TestIntegrationKVCluster(t *testing.T) {
	ns := nstest.New(t)
	v0, _ := ns.AddVeth(t, "c0", "c1")
	c := newKVCluster(t)
	cfg := testConfig("kvcluster", ns, "")
	cfg.NATS.Servers = c.urls()
	cfg.KV.Replicas = 3
	c.find("the JetStream meta leader", (*server.Server).JetStreamIsLeader)
	runBridge(t, context.Background(), cfg)
	kv := kvBucket(t, strings.Join(c.urls(), ","))
	waitBucket(t, ns, kv, "kvcluster", 20*time.Second)

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
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	connected := c.find("serving nlbridge", func(s *server.Server) bool {
		cz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			return false
		}
		for _, ci := range cz.Conns {
			if ci.Name == cfg.NATS.Name {
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)
	t.Logf("killing n%d, which nlbridge is connected to", connected+1)
	c.kill(connected)
	time.Sleep(2 * time.Second)
	c.start(connected)

	leader := c.find("the bucket's stream leader", func(s *server.Server) bool {
		return s.JetStreamIsStreamLeader("$G", "KV_netlink")
	})
	time.Sleep(time.Second)
	t.Logf("killing n%d, the bucket's stream leader", leader+1)
	c.kill(leader)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	ns.SetMTU(t, v0, 1500) // one last change after the churn

	took := waitBucket(t, ns, kv, "kvcluster", 30*time.Second)
	t.Logf("the bucket converged %v after the changes stopped", took)
}
