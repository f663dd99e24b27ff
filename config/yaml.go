package config

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// YAML returns c as a YAML file in the shape and key order of
// config.example.yaml: every key, defaults included, so that Parse of the
// result gives c back. Secrets that are set, nats.auth.password,
// nats.auth.token and the user information of a server URL, are printed redacted
// instead: "<redacted>", and RedactURL's REDACTED in a URL, which still parses.
func (c Config) YAML() []byte {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(mapping(schema, &c)); err != nil {
		// Nodes built from a schema's kinds always encode.
		panic("config: YAML: " + err.Error())
	}
	if err := enc.Close(); err != nil {
		panic("config: YAML: " + err.Error())
	}
	return b.Bytes()
}

// mapping returns the values of fields in c as a YAML mapping.
func mapping(fields []field, c *Config) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range fields {
		var v *yaml.Node
		if f.fields != nil {
			v = mapping(f.fields, c)
		} else {
			v = f.encode(c)
		}
		n.Content = append(n.Content, stringNode(f.key), v)
	}
	return n
}
