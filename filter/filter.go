// Package filter decides which events nlbridge publishes: by interface
// name (include and exclude globs), by address family and by event type.
// The sink asks it about every event before its state table, so that what
// a filter rejects is never published, never counted in a dump and never
// deleted at the end of one.
package filter

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/nlbridge/nlbridge/event"
)

// ErrInvalid is wrapped by every error New returns.
var ErrInvalid = errors.New("invalid filter")

// Config is a filter as configured. The zero Config allows everything.
type Config struct {
	// Include and Exclude are interface name globs in path.Match syntax
	// ("eth*", "veth[0-9]*", "lo"). They match Link.Name on link events and
	// Addr.Ifname on address events. A name is allowed when Include is
	// empty or one of its globs matches it, and none of Exclude matches it.
	Include, Exclude []string
	// Families are the address families of the address events to allow,
	// "inet" and "inet6"; empty allows both. Link events have no family.
	Families []string
	// Events are the event types to allow: "NEWLINK", "DELLINK", "NEWADDR"
	// and "DELADDR"; empty allows all four. SYNC is always allowed.
	Events []string
}

// Filter is a compiled Config. It is immutable and safe for concurrent
// use. A nil *Filter allows everything.
type Filter struct {
	include  patterns // empty allows every name
	exclude  patterns
	families uint32 // bit 1<<Family of each allowed family; 0 allows all
	events   uint32 // bit 1<<Type of each allowed type; 0 allows all
	all      bool   // nothing to check: Allow is always true
}

// patterns are name globs, split by shape so that most names are compared
// as strings rather than through path.Match: literals ("eth0"), prefixes
// ("veth*") and suffixes ("*.100").
type patterns struct {
	literals []string
	prefixes []string
	suffixes []string
	globs    []string // the rest, for path.Match
}

func (p *patterns) empty() bool {
	return len(p.literals) == 0 && len(p.prefixes) == 0 && len(p.suffixes) == 0 && len(p.globs) == 0
}

// match reports whether name matches one of p. It does not allocate.
func (p *patterns) match(name string) bool {
	for _, l := range p.literals {
		if name == l {
			return true
		}
	}
	for _, pre := range p.prefixes {
		// '*' matches no '/', as in path.Match (Linux names hold none).
		if strings.HasPrefix(name, pre) && strings.IndexByte(name[len(pre):], '/') < 0 {
			return true
		}
	}
	for _, suf := range p.suffixes {
		if strings.HasSuffix(name, suf) && strings.IndexByte(name[:len(name)-len(suf)], '/') < 0 {
			return true
		}
	}
	for _, g := range p.globs {
		// The globs were checked by New, so Match cannot fail.
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// New checks c and compiles it. An error names the first bad entry.
func New(c Config) (*Filter, error) {
	f := &Filter{}
	var err error
	if f.include, err = compile("include", c.Include); err != nil {
		return nil, err
	}
	if f.exclude, err = compile("exclude", c.Exclude); err != nil {
		return nil, err
	}
	for i, s := range c.Families {
		var fam event.Family
		switch s {
		case "inet":
			fam = event.Inet
		case "inet6":
			fam = event.Inet6
		default:
			return nil, fmt.Errorf("%w: families[%d]: %q is not a family (known: inet, inet6)", ErrInvalid, i, s)
		}
		f.families |= 1 << fam
	}
	for i, s := range c.Events {
		t, ok := event.ParseType(s)
		if !ok || !(t.IsLink() || t.IsAddr()) {
			return nil, fmt.Errorf("%w: events[%d]: %q is not an event type (known: NEWLINK, DELLINK, NEWADDR, DELADDR)",
				ErrInvalid, i, s)
		}
		f.events |= 1 << t
	}
	f.all = f.include.empty() && f.exclude.empty() && f.families == 0 && f.events == 0
	return f, nil
}

// compile checks the globs of one list (named what, for errors).
func compile(what string, globs []string) (patterns, error) {
	var p patterns
	for i, g := range globs {
		if g == "" {
			return p, fmt.Errorf("%w: %s[%d]: empty pattern", ErrInvalid, what, i)
		}
		// Match checks the whole pattern even when the name does not match.
		if _, err := path.Match(g, ""); err != nil {
			return p, fmt.Errorf("%w: %s[%d]: bad pattern %q: %w", ErrInvalid, what, i, g, err)
		}
		const meta = `*?[\`
		switch {
		case !strings.ContainsAny(g, meta):
			p.literals = append(p.literals, g)
		case strings.HasSuffix(g, "*") && !strings.ContainsAny(g[:len(g)-1], meta):
			p.prefixes = append(p.prefixes, g[:len(g)-1])
		case strings.HasPrefix(g, "*") && !strings.ContainsAny(g[1:], meta):
			p.suffixes = append(p.suffixes, g[1:])
		default:
			p.globs = append(p.globs, g)
		}
	}
	return p, nil
}

// Allow reports whether ev passes the filter. SYNC and Begin always pass.
// An address event whose interface name nlbridge does not know (an empty
// Ifname, rare) is matched as the empty name: "*" matches it, "eth*" does
// not. Allow does not allocate.
func (f *Filter) Allow(ev *event.Event) bool {
	if f == nil || f.all {
		return true
	}
	var name string
	switch {
	case ev.Type.IsLink():
		name = ev.Link.Name
	case ev.Type.IsAddr():
		if !f.AllowFamily(ev.Addr.Family) {
			return false
		}
		name = ev.Addr.Ifname
	default:
		return true // SYNC and Begin frame dumps
	}
	return f.AllowType(ev.Type) && f.AllowName(name)
}

// AllowFamily reports whether addresses of family fam pass the filter.
func (f *Filter) AllowFamily(fam event.Family) bool {
	if f == nil || f.families == 0 {
		return true
	}
	return fam < 32 && f.families&(1<<fam) != 0
}

// AllowType reports whether events of type t are published. SYNC and
// Begin always are.
func (f *Filter) AllowType(t event.Type) bool {
	if f == nil || f.events == 0 || !(t.IsLink() || t.IsAddr()) {
		return true
	}
	return f.events&(1<<t) != 0
}

// AllowName reports whether the interface name passes the Include and
// Exclude globs.
func (f *Filter) AllowName(name string) bool {
	if f == nil {
		return true
	}
	if !f.include.empty() && !f.include.match(name) {
		return false
	}
	return !f.exclude.match(name)
}
