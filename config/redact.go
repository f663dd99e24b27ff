package config

import (
	"errors"
	"net/url"
	"strings"
)

// Redacted replaces the user information (user and password, or a token)
// of a NATS URL wherever nlbridge prints or logs one.
const Redacted = "REDACTED"

// RedactURL returns s, a NATS server URL or a comma-separated list of them
// as nats.Connect takes it, with the user information of each replaced by
// Redacted: "nats://alice:s3cret@host:4222" and "nats://TOKEN@host:4222"
// both become "nats://REDACTED@host:4222". The scheme, host and port stay
// readable. Unlike url.URL.Redacted it hides tokens too, and it works on
// URLs that do not parse. It is the one function nlbridge redacts URLs
// with: every URL it prints or logs, from the configuration, the command
// line or the environment, goes through it.
//
// A new URL starts at a comma followed by one with a scheme, so that a
// password holding a comma is hidden whole; in a list without schemes,
// everything up to the last '@' is hidden.
func RedactURL(s string) string {
	var b strings.Builder
	for i, u := range splitURLs(s) {
		if i > 0 {
			b.WriteByte(',')
		}
		scheme, rest := "", u
		if j := strings.Index(u, "://"); j >= 0 {
			scheme, rest = u[:j+3], u[j+3:]
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = Redacted + rest[at:]
		}
		b.WriteString(scheme + rest)
	}
	return b.String()
}

// splitURLs splits a comma-separated list of URLs where a part starts with
// a scheme: a comma inside a URL's user information does not split it.
func splitURLs(s string) []string {
	var urls []string
	for part := range strings.SplitSeq(s, ",") {
		if len(urls) == 0 || strings.Contains(part, "://") {
			urls = append(urls, part)
		} else {
			urls[len(urls)-1] += "," + part
		}
	}
	return urls
}

// RedactError hides URLs' user information in err, an error from
// url.Parse or from nats.Connect, which parses its URLs: the URL that a
// *url.Error quotes is redacted with RedactURL, and an invalid %-escape is
// no longer quoted (it may be part of a password). It changes err in place
// and returns it.
func RedactError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = RedactURL(ue.URL)
		if _, ok := errors.AsType[url.EscapeError](ue.Err); ok {
			ue.Err = errors.New("invalid URL escape")
		}
	}
	return err
}
