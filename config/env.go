package config

import (
	"strings"
	"unicode/utf8"
)

// envPrefix starts the name of every environment variable Read looks at.
const envPrefix = "NLBRIDGE_"

// envName returns the environment variable that sets the dotted key, such
// as NLBRIDGE_NATS_AUTH_PASSWORD for nats.auth.password.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// environment decodes into c the NLBRIDGE_ variables in environ, in schema
// order, the last of each name winning. A variable that names no key is an
// error, so that a misspelt one is not silently ignored.
func (d *decoder) environment(environ []string, c *Config) error {
	known := make(map[string]bool)
	for key, f := range all(schema, "") {
		if f.fields == nil {
			known[envName(key)] = true
		}
	}
	values := make(map[string]string)
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		if !known[name] {
			return &invalidError{env: name, msg: "unknown variable (known: " + strings.Join(knownVars(name), ", ") + ")"}
		}
		values[name] = value
	}

	defer func() { d.env = "" }()
	for key, f := range all(schema, "") {
		name := envName(key)
		value, ok := values[name]
		if f.fields != nil || !ok {
			continue
		}
		d.env = name
		if !utf8.ValidString(value) {
			// Not quoted: the value may be a secret.
			return &invalidError{env: name, key: key, msg: "value is not valid UTF-8"}
		}
		d.set[key] = source{env: name}
		if err := f.decode(d, key, f.env(value), c); err != nil {
			return err
		}
	}
	return nil
}

// knownVars lists, for the unknown variable name, the variables of the
// deepest section whose prefix it starts with, as the error for an unknown
// key lists the keys of its section. A subsection is listed as its prefix
// and "_*", such as NLBRIDGE_NATS_AUTH_*.
func knownVars(name string) []string {
	fields, path := schema, ""
	for key, f := range all(schema, "") {
		if f.fields != nil && strings.HasPrefix(name, envName(key)+"_") && len(key) > len(path) {
			fields, path = f.fields, key
		}
	}
	var vars []string
	for _, f := range fields {
		key := f.key
		if path != "" {
			key = path + "." + key
		}
		v := envName(key)
		if f.fields != nil {
			v += "_*"
		}
		vars = append(vars, v)
	}
	return vars
}
