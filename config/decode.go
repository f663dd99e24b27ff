package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// schema is every key the file may hold. The decoder walks it, and tests
// check config.example.yaml documents each key in it.
var schema = []field{
	leaf("host", str, func(c *Config) *string { return &c.Host }),
	section("netlink",
		leaf("netns", str, func(c *Config) *string { return &c.Netlink.NetNS }),
		leaf("receive_buffer", size, func(c *Config) *int { return &c.Netlink.ReceiveBuffer }),
	),
	section("nats",
		list("servers", func(c *Config) *[]string { return &c.NATS.Servers }),
		leaf("name", str, func(c *Config) *string { return &c.NATS.Name }),
		section("embedded",
			leaf("listen", str, func(c *Config) *string { return &c.NATS.Embedded.Listen }),
		),
	),
	leaf("encoding", encoding, func(c *Config) *Encoding { return &c.Encoding }),
	section("subjects",
		leaf("prefix", str, func(c *Config) *string { return &c.Subjects.Prefix }),
		leaf("control", str, func(c *Config) *string { return &c.Subjects.Control }),
	),
	section("dump",
		leaf("on_start", boolean, func(c *Config) *bool { return &c.Dump.OnStart }),
		leaf("min_interval", duration, func(c *Config) *time.Duration { return &c.Dump.MinInterval }),
	),
}

// A field is a key of the file: a section of further fields, or a value that
// decode stores in a Config.
type field struct {
	key    string
	fields []field
	decode func(d *decoder, path string, n *yaml.Node, c *Config) error // n is the value of dotted key path
}

func section(key string, fields ...field) field { return field{key: key, fields: fields} }

// leaf returns a field whose scalar value parse converts and ptr locates.
func leaf[T any](key string, parse func(*yaml.Node) (T, error), ptr func(*Config) *T) field {
	return field{key: key, decode: func(d *decoder, path string, n *yaml.Node, c *Config) error {
		v, err := parse(n)
		if err != nil {
			return d.errorf(n, path, "%v", err)
		}
		*ptr(c) = v
		return nil
	}}
}

// list returns a field holding a sequence of strings; nothing or [] is an
// empty (nil) list.
func list(key string, ptr func(*Config) *[]string) field {
	return field{key: key, decode: func(d *decoder, path string, n *yaml.Node, c *Config) error {
		if !isNull(n) && n.Kind != yaml.SequenceNode {
			return d.errorf(n, path, "want a sequence, got %s", describe(n))
		}
		var ss []string
		for i, item := range n.Content {
			k := path + "[" + strconv.Itoa(i) + "]"
			s, err := str(item)
			if err != nil {
				return d.errorf(item, k, "%v", err)
			}
			d.lines[k] = item.Line
			ss = append(ss, s)
		}
		*ptr(c) = ss
		return nil
	}}
}

// A decoder walks a YAML node tree against the schema.
type decoder struct {
	file  string
	lines map[string]int // line of each dotted key seen: its value's, or a section's key's
}

func (d *decoder) document(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil // empty, or only comments
	case err != nil:
		return &invalidError{file: d.file, msg: err.Error(), err: err}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return d.errorf(&next, "", "a second YAML document; want one")
	case !errors.Is(err, io.EOF):
		return &invalidError{file: d.file, msg: err.Error(), err: err}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return d.mapping(doc.Content[0], "", schema, c)
}

// mapping decodes n, the value of the dotted key path, by fields into c.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field, c *Config) error {
	if isNull(n) {
		return nil // a section whose keys are all left out or commented out
	}
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "want a mapping, got %s", describe(n))
	}
	first := make(map[string]int)
	for i := 0; i < len(n.Content); i += 2 { // key, value, key, value...
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != strTag {
			return d.errorf(k, path, "want a string key, got %s", describe(k))
		}
		key := k.Value
		if path != "" {
			key = path + "." + key
		}
		if line, ok := first[k.Value]; ok {
			return d.errorf(k, key, "duplicate key (first on line %d)", line)
		}
		first[k.Value] = k.Line

		j := slices.IndexFunc(fields, func(f field) bool { return f.key == k.Value })
		if j < 0 {
			var known []string
			for _, f := range fields {
				known = append(known, f.key)
			}
			return d.errorf(k, key, "unknown key (known: %s)", strings.Join(known, ", "))
		}
		f := fields[j]

		var err error
		if f.fields != nil {
			d.lines[key] = k.Line
			err = d.mapping(v, key, f.fields, c)
		} else {
			d.lines[key] = v.Line
			err = f.decode(d, key, v, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) error {
	return &invalidError{file: d.file, line: n.Line, key: key, msg: fmt.Sprintf(format, args...)}
}

// Resolved YAML tags, as yaml.Node.ShortTag reports them.
const (
	nullTag  = "!!null"
	boolTag  = "!!bool"
	intTag   = "!!int"
	floatTag = "!!float"
	strTag   = "!!str"
)

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag }

// str accepts only strings: a quoted "true" or "1" is a string, a plain
// true or 1 is not.
func str(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		return "", fmt.Errorf("want a string, got %s", describe(n))
	}
	return n.Value, nil
}

func encoding(n *yaml.Node) (Encoding, error) {
	s, err := str(n)
	return Encoding(s), err
}

func boolean(n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != boolTag {
		return false, fmt.Errorf("want a boolean, got %s", describe(n))
	}
	var b bool
	if err := n.Decode(&b); err != nil { // an explicit !!bool tag on a non-boolean
		return false, fmt.Errorf("%q is not a boolean", n.Value)
	}
	return b, nil
}

// duration accepts a Go duration string such as "1s" or "250ms".
func duration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		return 0, fmt.Errorf("want a duration such as 1s or 250ms, got %s", describe(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1s or 250ms", n.Value)
	}
	return d, nil
}

// size accepts a byte count as an integer or a string with a unit.
func size(n *yaml.Node) (int, error) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case intTag:
			var i int64
			if err := n.Decode(&i); err != nil || int64(int(i)) != i {
				return 0, fmt.Errorf("%s is not an integer or is too large", n.Value)
			}
			return int(i), nil
		case strTag:
			return parseSize(n.Value)
		}
	}
	return 0, fmt.Errorf("want a size such as 4MiB or 65536, got %s", describe(n))
}

// describe names n's kind or type and value for "want ..., got ..." errors.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	case yaml.AliasNode:
		return "alias *" + n.Value + " (aliases are not supported)"
	}
	switch tag := n.ShortTag(); tag {
	case nullTag:
		return "null"
	case boolTag:
		return "boolean " + n.Value
	case intTag:
		return "integer " + n.Value
	case floatTag:
		return "float " + n.Value
	case strTag:
		return fmt.Sprintf("string %q", n.Value)
	default:
		return fmt.Sprintf("%s %q", tag, n.Value)
	}
}

// An invalidError says what is wrong with a configuration, and where.
type invalidError struct {
	file string // "" for a Config built in code
	line int    // 0 if unknown, as for a default value
	key  string // dotted, such as "nats.servers[1]"; "" for the whole file
	msg  string
	err  error // the YAML parser's error, if it found the problem
}

func (e *invalidError) Error() string {
	var b strings.Builder
	b.WriteString(e.file)
	if e.line > 0 {
		if e.file == "" {
			b.WriteString("line ")
		} else {
			b.WriteString(":")
		}
		b.WriteString(strconv.Itoa(e.line))
	}
	for _, s := range []string{e.key, e.msg} {
		if s != "" {
			if b.Len() > 0 {
				b.WriteString(": ")
			}
			b.WriteString(s)
		}
	}
	return b.String()
}

func (e *invalidError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrInvalid, e.err}
	}
	return []error{ErrInvalid}
}

func invalid(key string, err error) *invalidError {
	return &invalidError{key: key, msg: err.Error()}
}
