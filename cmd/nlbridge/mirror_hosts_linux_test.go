//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nlbridge/nlbridge/internal/nstest"
	"github.com/nlbridge/nlbridge/mirror"
	"github.com/nlbridge/nlbridge/sink"
)

// TestIntegrationMirrorHosts: three nlbridge processes, each watching a
// namespace of its own with links of the same names and indexes, publish
// to one server with a bucket. Two Mirrors of "mh-*", one reading the
// bucket and one the stream, hold mh-a and mh-b.lab (whose name is
// escaped in subjects and keys) each as its own kernel has it, and not
// the third host. mh-a's nlbridge is killed with SIGKILL: the bucket
// Mirror marks it gone when its presence expires (3 s TTL) and tells the
// callback; both keep its last state, while mh-b.lab goes on
// changing and being followed. Restarted, mh-a is back in both, with what
// changed in its namespace meanwhile.
func TestIntegrationMirrorHosts(t *testing.T) {
	const ttl = 3 * time.Second
	srv := jetStreamServer(t, 0, t.TempDir())
	url := srv.ClientURL()
	conf := func(host string, ns *nstest.NS) string {
		return fmt.Sprintf("host: %s\nnetlink:\n  netns: %s\nnats:\n  servers: [%s]\ndump:\n  min_interval: 100ms\nkv:\n  presence_ttl: %v\n",
			host, ns.Path, url, ttl)
	}
	hosts := []string{"mh-a", "mh-b.lab", "other"}
	nss := map[string]*nstest.NS{}
	procs := map[string]*child{}
	for i, host := range hosts {
		ns := nstest.New(t)
		v, _ := ns.AddVeth(t, "h0", "h1")
		ns.AddAddr(t, v, netip.MustParsePrefix(fmt.Sprintf("192.0.2.%d/24", i+1)))
		if i == 1 {
			ns.SetMTU(t, v, 9000)
		}
		nss[host] = ns
		procs[host] = startChild(t, conf(host, ns), nil)
	}
	// Both Mirrors start once every host's presence is written, so that the
	// stream Mirror's fleet-wide dump request reaches every nlbridge.
	kv := kvBucket(t, url)
	for _, host := range hosts {
		waitKey(t, kv, sink.EscapeToken(host)+".presence", 10*time.Second)
	}
	type mirrorOf struct {
		name    string
		m       *mirror.Mirror
		changes *changeLog
	}
	var mirrors []mirrorOf
	for _, md := range mirrorModes {
		opts := []mirror.Option{mirror.WithHosts("mh-*")}
		if !md.bucket {
			opts = append(opts, mirror.WithBucket(""))
		}
		m, changes := md.mirror(t, url, opts...)
		mirrors = append(mirrors, mirrorOf{md.name, m, changes})
	}
	for _, mo := range mirrors {
		for _, host := range hosts[:2] {
			waitMirror(t, nss[host], mo.m, mo.changes, host, 15*time.Second)
		}
		if _, ok := mo.m.Host("other"); ok {
			t.Errorf("%s: the mirror holds host other, which mh-* does not match", mo.name)
		}
	}

	last := kernelView(t, nss["mh-a"])
	procs["mh-a"].signal(t, syscall.SIGKILL)
	killed := time.Now()
	if err := procs["mh-a"].wait(5 * time.Second); err == errTimeout {
		t.Fatal("mh-a's nlbridge did not die")
	}
	// Its namespace changes after its death: nobody tells the mirrors.
	ip(t, nss["mh-a"], "link", "del", "h0")
	ip(t, nss["mh-a"], "link", "add", "z0", "type", "veth", "peer", "name", "z1")
	churn(t, nss["mh-b.lab"], "c")

	bucket := mirrors[0]
	waitGone(t, bucket.m, bucket.changes, "mh-a", ttl+5*time.Second)
	if d := time.Since(killed); d > ttl+3*time.Second {
		t.Errorf("mh-a gone %v after it was killed, want within its presence TTL of %v and a little", d, ttl)
	}
	for _, mo := range mirrors {
		waitMirrorView(t, func() view { return last }, mo.m, mo.changes, "mh-a", time.Second)
		waitMirror(t, nss["mh-b.lab"], mo.m, mo.changes, "mh-b.lab", 10*time.Second)
		if h, _ := mo.m.Host("mh-b.lab"); h.Gone {
			t.Errorf("%s: mh-b.lab is gone too", mo.name)
		}
	}

	procs["mh-a"] = startChild(t, conf("mh-a", nss["mh-a"]), nil)
	for _, mo := range mirrors {
		took := waitMirror(t, nss["mh-a"], mo.m, mo.changes, "mh-a", 20*time.Second)
		t.Logf("%s: mh-a converged %v after its restart", mo.name, took)
	}
	if h, _ := bucket.m.Host("mh-a"); h.Gone {
		t.Error("mh-a is still gone after its restart")
	}
	if n := bucket.changes.count("mirror.HostAppeared"); n != 3 {
		t.Errorf("the callback was told of %d hosts appearing, want 3: mh-a, mh-b.lab, and mh-a again", n)
	}
}

// waitKey waits until key is in the bucket.
func waitKey(t *testing.T, kv jetstream.KeyValue, key string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		_, err := kv.Get(context.Background(), key)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", key, err)
		}
	}
}
