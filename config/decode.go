package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// schema is every key the file may hold, in the order config.example.yaml
// and YAML list them. The decoder walks it, Read derives the environment
// variables from it, YAML prints it, and tests check config.example.yaml
// documents each key in it.
var schema = []field{
	leaf("host", str, func(c *Config) *string { return &c.Host }),
	section("netlink",
		leaf("netns", str, func(c *Config) *string { return &c.Netlink.NetNS }),
		leaf("receive_buffer", size, func(c *Config) *int { return &c.Netlink.ReceiveBuffer }),
	),
	section("nats",
		list("servers", RedactURL, func(c *Config) *[]string { return &c.NATS.Servers }),
		leaf("name", str, func(c *Config) *string { return &c.NATS.Name }),
		section("auth",
			leaf("user", str, func(c *Config) *string { return &c.NATS.Auth.User }),
			leaf("password", secret, func(c *Config) *string { return &c.NATS.Auth.Password }),
			leaf("token", secret, func(c *Config) *string { return &c.NATS.Auth.Token }),
			leaf("credentials_file", str, func(c *Config) *string { return &c.NATS.Auth.CredentialsFile }),
			leaf("nkey_seed_file", str, func(c *Config) *string { return &c.NATS.Auth.NKeySeedFile }),
		),
		section("tls",
			leaf("ca_file", str, func(c *Config) *string { return &c.NATS.TLS.CAFile }),
			leaf("cert_file", str, func(c *Config) *string { return &c.NATS.TLS.CertFile }),
			leaf("key_file", str, func(c *Config) *string { return &c.NATS.TLS.KeyFile }),
			leaf("insecure_skip_verify", boolean, func(c *Config) *bool { return &c.NATS.TLS.InsecureSkipVerify }),
			leaf("handshake_first", boolean, func(c *Config) *bool { return &c.NATS.TLS.HandshakeFirst }),
		),
		section("embedded",
			leaf("listen", str, func(c *Config) *string { return &c.NATS.Embedded.Listen }),
			leaf("store_dir", str, func(c *Config) *string { return &c.NATS.Embedded.StoreDir }),
		),
	),
	leaf("encoding", stringKind[Encoding](), func(c *Config) *Encoding { return &c.Encoding }),
	section("subjects",
		leaf("prefix", str, func(c *Config) *string { return &c.Subjects.Prefix }),
		leaf("control", str, func(c *Config) *string { return &c.Subjects.Control }),
	),
	section("kv",
		leaf("bucket", str, func(c *Config) *string { return &c.KV.Bucket }),
		leaf("replicas", integer, func(c *Config) *int { return &c.KV.Replicas }),
		leaf("storage", stringKind[Storage](), func(c *Config) *Storage { return &c.KV.Storage }),
		leaf("presence_ttl", duration, func(c *Config) *time.Duration { return &c.KV.PresenceTTL }),
	),
	section("filter",
		section("interfaces",
			list("include", asIs, func(c *Config) *[]string { return &c.Filter.Include }),
			list("exclude", asIs, func(c *Config) *[]string { return &c.Filter.Exclude }),
		),
		list("families", asIs, func(c *Config) *[]string { return &c.Filter.Families }),
		list("events", asIs, func(c *Config) *[]string { return &c.Filter.Events }),
	),
	section("dump",
		leaf("on_start", boolean, func(c *Config) *bool { return &c.Dump.OnStart }),
		leaf("min_interval", duration, func(c *Config) *time.Duration { return &c.Dump.MinInterval }),
	),
	section("log",
		leaf("level", level, func(c *Config) *slog.Level { return &c.Log.Level }),
		leaf("format", stringKind[LogFormat](), func(c *Config) *LogFormat { return &c.Log.Format }),
	),
	section("metrics",
		leaf("listen", str, func(c *Config) *string { return &c.Metrics.Listen }),
	),
}

// A field is a key of the file: a section of further fields, or a value that
// decode stores in a Config.
type field struct {
	key    string
	fields []field                                                      // a section's; nil for a value
	decode func(d *decoder, path string, n *yaml.Node, c *Config) error // n is the value of dotted key path
	env    func(text string) *yaml.Node                                 // the node decode takes for an environment variable's text
	encode func(c *Config) *yaml.Node                                   // the value in c, as YAML prints it
}

func section(key string, fields ...field) field { return field{key: key, fields: fields} }

// A kind is the type of a value: how it is decoded from YAML and printed
// back, and how an environment variable's text becomes YAML.
type kind[T any] struct {
	parse  func(*yaml.Node) (T, error)
	format func(T) *yaml.Node
	// plain resolves an environment variable's text as YAML resolves a plain
	// scalar, so that "true" is a boolean and "65536" an integer. Otherwise
	// the text is a string as it stands: NLBRIDGE_HOST=123 is the host "123".
	plain bool
}

// The kinds of the schema's leaves.
var (
	str      = kind[string]{parse: parseString, format: stringNode}
	secret   = kind[string]{parse: parseSecret, format: redact}
	boolean  = kind[bool]{parse: parseBool, format: formatBool, plain: true}
	duration = kind[time.Duration]{parse: parseDuration, format: formatDuration, plain: true}
	size     = kind[int]{parse: parseSizeNode, format: formatSizeNode, plain: true}
	integer  = kind[int]{parse: parseInt, format: formatInt, plain: true}
	level    = kind[slog.Level]{parse: parseLevel, format: func(l slog.Level) *yaml.Node { return stringNode(levelName(l)) }}
)

// stringKind is the kind of a string type such as Encoding, whose values
// check validates.
func stringKind[T ~string]() kind[T] {
	return kind[T]{
		parse: func(n *yaml.Node) (T, error) {
			s, err := parseString(n)
			return T(s), err
		},
		format: func(v T) *yaml.Node { return stringNode(string(v)) },
	}
}

// leaf returns a field whose scalar value is of kind k and ptr locates.
func leaf[T any](key string, k kind[T], ptr func(*Config) *T) field {
	return field{
		key: key,
		decode: func(d *decoder, path string, n *yaml.Node, c *Config) error {
			v, err := k.parse(n)
			if err != nil {
				return d.errorf(n, path, "%v", err)
			}
			*ptr(c) = v
			return nil
		},
		env: func(text string) *yaml.Node {
			n := &yaml.Node{Kind: yaml.ScalarNode, Tag: strTag, Value: text}
			if k.plain && text != "" { // "" would be null: say `got string ""`
				n.Tag = "" // resolved from the text
			}
			return n
		},
		encode: func(c *Config) *yaml.Node { return k.format(*ptr(c)) },
	}
}

// list returns a field holding a sequence of strings; nothing or [] is an
// empty (nil) list. In the environment it is comma-separated. YAML prints
// each item as show returns it.
func list(key string, show func(string) string, ptr func(*Config) *[]string) field {
	return field{
		key: key,
		decode: func(d *decoder, path string, n *yaml.Node, c *Config) error {
			if !isNull(n) && n.Kind != yaml.SequenceNode {
				return d.errorf(n, path, "want a sequence, got %s", describe(n))
			}
			var ss []string
			for i, item := range n.Content {
				k := path + "[" + strconv.Itoa(i) + "]"
				s, err := parseString(item)
				if err != nil {
					return d.errorf(item, k, "%v", err)
				}
				d.set[k] = d.at(item)
				ss = append(ss, s)
			}
			*ptr(c) = ss
			return nil
		},
		env: func(text string) *yaml.Node {
			n := &yaml.Node{Kind: yaml.SequenceNode}
			if strings.TrimSpace(text) == "" {
				return n
			}
			for item := range strings.SplitSeq(text, ",") {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: strTag, Value: strings.TrimSpace(item)})
			}
			return n
		},
		encode: func(c *Config) *yaml.Node {
			n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range *ptr(c) {
				n.Content = append(n.Content, stringNode(show(s)))
			}
			return n
		},
	}
}

// all yields every field of fields and their sections, depth first in
// schema order, with its dotted key under path.
func all(fields []field, path string) iter.Seq2[string, field] {
	return func(yield func(string, field) bool) {
		for _, f := range fields {
			key := f.key
			if path != "" {
				key = path + "." + key
			}
			if !yield(key, f) {
				return
			}
			for k, sub := range all(f.fields, key) {
				if !yield(k, sub) {
					return
				}
			}
		}
	}
}

// A decoder walks a YAML node tree, or environment variables, against the
// schema.
type decoder struct {
	file string
	env  string            // the environment variable being decoded; "" while decoding the file
	set  map[string]source // where each dotted key seen was set: its value, or a section's key
}

// A source is where a key was set: a line of the file, or an environment
// variable.
type source struct {
	line int
	env  string
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, set: make(map[string]source)}
}

// at returns where n is.
func (d *decoder) at(n *yaml.Node) source {
	if d.env != "" {
		return source{env: d.env}
	}
	return source{line: n.Line}
}

// locate returns where the value of key was set, for an error about it: its
// line, or the environment variables that set it or, for a section, any key
// in it. It returns 0 and "" for a default.
func (d *decoder) locate(key string) (line int, env string) {
	s := d.set[key]
	if s.env != "" {
		return 0, s.env
	}
	var vars []string
	for k, s := range d.set {
		if s.env != "" && strings.HasPrefix(k, key+".") && !slices.Contains(vars, s.env) {
			vars = append(vars, s.env)
		}
	}
	slices.Sort(vars)
	return s.line, strings.Join(vars, ", ")
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
			d.set[key] = d.at(k)
			err = d.mapping(v, key, f.fields, c)
		} else {
			d.set[key] = d.at(v)
			err = f.decode(d, key, v, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) error {
	at := d.at(n)
	return &invalidError{file: d.file, line: at.line, env: at.env, key: key, msg: fmt.Sprintf(format, args...)}
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

// parseString accepts only strings: a quoted "true" or "1" is a string, a
// plain true or 1 is not.
func parseString(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		return "", fmt.Errorf("want a string, got %s", describe(n))
	}
	return n.Value, nil
}

// parseSecret is parseString with errors that do not show the value.
func parseSecret(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		what := describe(n)
		if n.Kind == yaml.ScalarNode {
			what, _, _ = strings.Cut(what, " ")
		}
		return "", fmt.Errorf("want a string, got %s (value not shown)", what)
	}
	return n.Value, nil
}

func parseBool(n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != boolTag {
		return false, fmt.Errorf("want a boolean, got %s", describe(n))
	}
	var b bool
	if err := n.Decode(&b); err != nil { // an explicit !!bool tag on a non-boolean
		return false, fmt.Errorf("%q is not a boolean", n.Value)
	}
	return b, nil
}

// parseDuration accepts a Go duration string such as "1s" or "250ms".
func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
		return 0, fmt.Errorf("want a duration such as 1s or 250ms, got %s", describe(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1s or 250ms", n.Value)
	}
	return d, nil
}

// parseSizeNode accepts a byte count as an integer or a string with a unit.
func parseSizeNode(n *yaml.Node) (int, error) {
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

// parseInt accepts an integer.
func parseInt(n *yaml.Node) (int, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == intTag {
		var i int64
		if err := n.Decode(&i); err != nil || int64(int(i)) != i {
			return 0, fmt.Errorf("%s is not an integer or is too large", n.Value)
		}
		return int(i), nil
	}
	return 0, fmt.Errorf("want an integer, got %s", describe(n))
}

func formatInt(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: intTag, Value: strconv.Itoa(i)}
}

// parseLevel accepts the name of a log level, in lower case.
func parseLevel(n *yaml.Node) (slog.Level, error) {
	s, err := parseString(n)
	if err != nil {
		return 0, err
	}
	var l slog.Level
	if !slices.Contains(levels, s) || l.UnmarshalText([]byte(s)) != nil {
		return 0, fmt.Errorf("%q is not one of %s", s, strings.Join(levels, ", "))
	}
	return l, nil
}

// redacted stands in YAML for a secret that is set.
const redacted = "<redacted>"

// stringNode returns s as a YAML string. One with line breaks or other
// characters that are not graphic is double-quoted, with escapes: yaml.v3
// would print it as a literal block, which loses leading line breaks.
func stringNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: strTag, Value: s}
	if strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsGraphic(r) }) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func redact(s string) *yaml.Node {
	if s != "" {
		s = redacted
	}
	return stringNode(s)
}

func formatBool(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: boolTag, Value: strconv.FormatBool(b)}
}

func formatDuration(d time.Duration) *yaml.Node { return stringNode(d.String()) }

// formatSizeNode prints n with its largest unit, or as an integer.
func formatSizeNode(n int) *yaml.Node {
	s := formatSize(n)
	if _, err := strconv.Atoi(s); err == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: intTag, Value: s}
	}
	return stringNode(s)
}

func asIs(s string) string { return s }

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
	env  string // the environment variables that set the value, if they did; replaces file and line
	key  string // dotted, such as "nats.servers[1]"; "" for the whole file
	msg  string
	err  error // the YAML parser's error, if it found the problem
}

func (e *invalidError) Error() string {
	var b strings.Builder
	switch {
	case e.env != "":
		b.WriteString("environment " + e.env)
	case e.line > 0 && e.file == "":
		b.WriteString("line " + strconv.Itoa(e.line))
	case e.line > 0:
		b.WriteString(e.file + ":" + strconv.Itoa(e.line))
	default:
		b.WriteString(e.file)
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
