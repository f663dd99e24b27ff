package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"127.0.0.1:4222", "127.0.0.1:4222"},
		{"", ""},
		{"nats://u:s3cret@h:4222", "nats://REDACTED@h:4222"},
		{"tls://s3cret@h:4222", "tls://REDACTED@h:4222"},
		{"u:s3cret@h:4222", "REDACTED@h:4222"},
		{"nats://u:s3c@r/t@[::1", "nats://REDACTED@[::1"}, // does not parse
		{"nats://a:4222,nats://u:s3cret@b:4222,tls://s3cret@c", "nats://a:4222,nats://REDACTED@b:4222,tls://REDACTED@c"},
		{"nats://u:s3c,r,et@h:4222,nats://b", "nats://REDACTED@h:4222,nats://b"}, // a comma in a password
		{"a:4222,b:4222", "a:4222,b:4222"},
		{"u:s3cret@a:4222,b:4222", "REDACTED@a:4222,b:4222"},
		{"a:4222,s3cret@b:4222", "REDACTED@b:4222"}, // without schemes, up to the last '@'
	} {
		got := RedactURL(tt.url)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.url, got, tt.want)
		}
		if strings.Contains(got, "s3c") {
			t.Errorf("RedactURL(%q) = %q shows the secret", tt.url, got)
		}
	}
}

func TestRedactError(t *testing.T) {
	for _, s := range []string{"nats://u:s3cret@h:x", "nats://u:%s3cret@h", "nats://%s3cret@h"} {
		_, err := url.Parse(s)
		if err == nil {
			t.Fatalf("url.Parse(%q): no error", s)
		}
		err = RedactError(err)
		if strings.Contains(err.Error(), "s3") {
			t.Errorf("RedactError of url.Parse(%q): %v shows the secret", s, err)
		}
		if !strings.Contains(err.Error(), "@h") {
			t.Errorf("RedactError of url.Parse(%q): %v hides the host", s, err)
		}
	}
	plain := errors.New("nats: no servers available for connection")
	if got := RedactError(plain); got != plain {
		t.Errorf("RedactError(%v) = %v, want it unchanged", plain, got)
	}
}
