package mirror

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/nlbridge/nlbridge/event"
)

// Change is one of LinkAdded, LinkChanged, LinkRemoved, AddrAdded,
// AddrChanged, AddrRemoved, HostAppeared and HostGone.
type Change interface {
	// HostName returns the name of the host the change is about.
	HostName() string
}

// LinkAdded reports a link the application had not been told of.
type LinkAdded struct {
	Host string
	Link event.Link
}

// LinkChanged reports a link whose state differs from what the application
// was last told. Changed names the fields that differ, as
// event.LinkFields names them.
type LinkChanged struct {
	Host    string
	Link    event.Link
	Changed []string
}

// LinkRemoved reports that a link is gone; Link is its last state.
type LinkRemoved struct {
	Host string
	Link event.Link
}

// AddrAdded reports an address the application had not been told of.
type AddrAdded struct {
	Host string
	Addr event.Addr
}

// AddrChanged reports an address whose state differs from what the
// application was last told. Changed names the fields that differ, as
// event.AddrFields names them.
type AddrChanged struct {
	Host    string
	Addr    event.Addr
	Changed []string
}

// AddrRemoved reports that an address is gone; Addr is its last state.
type AddrRemoved struct {
	Host string
	Addr event.Addr
}

// HostAppeared reports a host that is present: its first message on the
// stream, or its presence key in the bucket.
type HostAppeared struct {
	Host string
	Boot string
}

// HostGone reports that a host's presence expired or was deleted. Its
// links and addresses stay in the Mirror, as they were.
type HostGone struct {
	Host string
}

// HostName implements Change.
func (c LinkAdded) HostName() string { return c.Host }

// HostName implements Change.
func (c LinkChanged) HostName() string { return c.Host }

// HostName implements Change.
func (c LinkRemoved) HostName() string { return c.Host }

// HostName implements Change.
func (c AddrAdded) HostName() string { return c.Host }

// HostName implements Change.
func (c AddrChanged) HostName() string { return c.Host }

// HostName implements Change.
func (c AddrRemoved) HostName() string { return c.Host }

// HostName implements Change.
func (c HostAppeared) HostName() string { return c.Host }

// HostName implements Change.
func (c HostGone) HostName() string { return c.Host }

var (
	_ Change = LinkAdded{}
	_ Change = LinkChanged{}
	_ Change = LinkRemoved{}
	_ Change = AddrAdded{}
	_ Change = AddrChanged{}
	_ Change = AddrRemoved{}
	_ Change = HostAppeared{}
	_ Change = HostGone{}
)

// The kinds of objects the dirty set holds.
const (
	kindHost uint8 = iota
	kindLink
	kindAddr
)

// dirtyKey names an object that changed since the callback last saw it.
type dirtyKey struct {
	host  string
	kind  uint8
	index uint32
	id    string
}

// hostView is what the callback was told of a host.
type hostView struct {
	present bool
	links   map[uint32]event.Link
	addrs   map[AddrKey]event.Addr
}

// mark adds k to the dirty set. Callers hold mu; they call kick once they
// have let go of it.
func (m *Mirror) mark(k dirtyKey) {
	if m.opts.onChange != nil {
		m.dirty[k] = struct{}{}
	}
}

// kick wakes the delivery goroutine if anything is dirty. It never blocks.
func (m *Mirror) kick() {
	if m.opts.onChange == nil {
		return
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// startDelivery starts the goroutine that calls the application.
func (m *Mirror) startDelivery() {
	if m.opts.onChange == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-m.wake:
			}
			for _, c := range m.drain() {
				if m.ctx.Err() != nil {
					return
				}
				m.opts.onChange(c)
			}
		}
	}()
	m.kick()
}

// drain empties the dirty set and returns the changes that take the
// callback's view to the current state, in an order that makes sense
// applied one by one: hosts appear, addresses and links are removed, links
// and then addresses are added or changed, hosts go.
func (m *Mirror) drain() []Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lagging {
		return nil // the bucket's watcher wakes the delivery once caught up
	}
	type ranked struct {
		k    dirtyKey
		rank int
		c    Change
	}
	var out []ranked
	for k := range m.dirty {
		h := m.hosts[k.host]
		v := m.delivered[k.host]
		if v == nil {
			v = &hostView{links: map[uint32]event.Link{}, addrs: map[AddrKey]event.Addr{}}
			m.delivered[k.host] = v
		}
		switch k.kind {
		case kindHost:
			present := h != nil && h.present
			switch {
			case present && !v.present:
				out = append(out, ranked{k, 0, HostAppeared{Host: k.host, Boot: h.boot}})
			case !present && v.present:
				out = append(out, ranked{k, 5, HostGone{Host: k.host}})
			}
			v.present = present
		case kindLink:
			old, had := v.links[k.index]
			cur, has := event.Link{}, false
			if h != nil {
				cur, has = h.links[k.index]
			}
			switch {
			case has && !had:
				out = append(out, ranked{k, 3, LinkAdded{Host: k.host, Link: cloneLink(cur)}})
			case has && had:
				if d := linkDiff(&old, &cur); len(d) > 0 {
					out = append(out, ranked{k, 3, LinkChanged{Host: k.host, Link: cloneLink(cur), Changed: d}})
				}
			case had:
				out = append(out, ranked{k, 2, LinkRemoved{Host: k.host, Link: old}})
			}
			if has {
				v.links[k.index] = cur
			} else {
				delete(v.links, k.index)
			}
		case kindAddr:
			ak := AddrKey{k.index, k.id}
			old, had := v.addrs[ak]
			cur, has := event.Addr{}, false
			if h != nil {
				cur, has = h.addrs[ak]
			}
			switch {
			case has && !had:
				out = append(out, ranked{k, 4, AddrAdded{Host: k.host, Addr: cur}})
			case has && had:
				if d := addrDiff(&old, &cur); len(d) > 0 {
					out = append(out, ranked{k, 4, AddrChanged{Host: k.host, Addr: cur, Changed: d}})
				}
			case had:
				out = append(out, ranked{k, 1, AddrRemoved{Host: k.host, Addr: old}})
			}
			if has {
				v.addrs[ak] = cur
			} else {
				delete(v.addrs, ak)
			}
		}
		delete(m.dirty, k)
	}
	slices.SortFunc(out, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.k.host, b.k.host), cmp.Compare(a.rank, b.rank),
			cmp.Compare(a.k.index, b.k.index), cmp.Compare(a.k.id, b.k.id))
	})
	changes := make([]Change, len(out))
	for i, r := range out {
		changes[i] = r.c
	}
	return changes
}

func cloneLink(l event.Link) event.Link {
	l.MAC = slices.Clone(l.MAC)
	return l
}

// linkDiff names the fields of event.LinkFields that differ.
func linkDiff(a, b *event.Link) []string {
	var d []string
	add := func(differ bool, i int) {
		if differ {
			d = append(d, event.LinkFields[i])
		}
	}
	add(a.Name != b.Name, 0)
	add(a.Kind != b.Kind, 1)
	add(a.State != b.State, 2)
	add(a.Enabled() != b.Enabled(), 3)
	add(a.Running() != b.Running(), 4)
	add(a.MTU != b.MTU, 5)
	add(!bytes.Equal(a.MAC, b.MAC), 6)
	add(a.Master != b.Master, 7)
	add(a.Parent != b.Parent, 8)
	add(a.Alias != b.Alias, 9)
	add(a.Carrier != b.Carrier, 10)
	add(a.Flags != b.Flags, 11)
	return d
}

// addrDiff names the fields of event.AddrFields that differ.
func addrDiff(a, b *event.Addr) []string {
	var d []string
	add := func(differ bool, i int) {
		if differ {
			d = append(d, event.AddrFields[i])
		}
	}
	add(a.Ifname != b.Ifname, 0)
	add(a.Peer != b.Peer, 1)
	add(a.Broadcast != b.Broadcast, 2)
	add(a.Scope != b.Scope, 3)
	add(a.Label != b.Label, 4)
	add(a.Flags != b.Flags, 5)
	add(a.ValidLft != b.ValidLft, 6)
	add(a.PreferredLft != b.PreferredLft, 7)
	add(a.PrefixLen != b.PrefixLen, 8)
	return d
}
