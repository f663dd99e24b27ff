// Package proxytest is a TCP proxy for tests that break a connection the
// way a network partition does: Blackhole keeps the connections it holds
// open but silently discards everything on them, in both directions, while
// the connections that come after it are forwarded normally.
package proxytest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards every connection to 127.0.0.1:<its port> to a target
// address. It is safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	target   string
	accepted atomic.Int64
	sent     atomic.Int64   // bytes forwarded from clients to the target
	wg       sync.WaitGroup // the accept loop and every copier

	mu    sync.Mutex
	pairs []*pair
	done  bool
}

// pair is one proxied connection: the client's and the one to the target.
type pair struct {
	client, server net.Conn
	dead           atomic.Bool // discard everything: the partition
}

// New starts a proxy to target on a random 127.0.0.1 port; it stops when
// t ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	p := &Proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the address that clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// Sent returns how many bytes the proxy has forwarded from clients to the
// target.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Blackhole partitions the connections open now: they stay open, and what
// either end sends is read and dropped (so TCP acknowledges it and neither
// end sees an error), never delivered. Later connections are forwarded.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.pairs {
		c.dead.Store(true)
	}
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines. It may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.done = true
	p.ln.Close()
	for _, c := range p.pairs {
		c.client.Close()
		c.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &pair{client: client, server: server}
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.pairs = append(p.pairs, c)
		p.wg.Add(2)
		p.mu.Unlock()
		go c.copy(&p.wg, server, client, &p.sent)
		go c.copy(&p.wg, client, server, nil)
	}
}

// copy forwards from src to dst until either fails, then closes both, so
// that an end that closes is seen by the other; a dead pair reads and
// drops. It counts what it forwards in count, unless that is nil.
func (c *pair) copy(wg *sync.WaitGroup, dst, src net.Conn, count *atomic.Int64) {
	defer wg.Done()
	defer func() {
		c.client.Close()
		c.server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if count != nil {
				count.Add(int64(n))
			}
		}
		if err != nil {
			return // EOF or closed
		}
	}
}
