package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// redacted is what a set Secret prints as.
const redacted = "[redacted]"

// Secret holds a secret value read from the environment (a key passphrase or
// a token client secret). Every way of printing or encoding it — String,
// GoString, fmt verbs, JSON, YAML, text, slog — yields "[redacted]", or ""
// when it is empty, so a Secret never leaks through a log line or a printed
// Config. Only Value returns the real string.
//
// The zero value is the empty secret. A Secret is immutable and safe for
// concurrent use; copying it copies the value.
type Secret struct {
	value string
}

// NewSecret wraps v. NewSecret("") is the zero (empty) Secret.
func NewSecret(v string) Secret { return Secret{value: v} }

// Value returns the secret itself. Call it only where the secret is used,
// never to print it.
func (s Secret) Value() string { return s.value }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.value != "" }

// String returns "[redacted]", or "" when the secret is empty.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// GoString returns the same as String, for %#v.
func (s Secret) GoString() string { return s.String() }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %q,
// %x, ...) prints the redacted form; %q quotes it.
func (s Secret) Format(f fmt.State, verb rune) {
	out := s.String()
	if verb == 'q' {
		out = strconv.Quote(out)
	}
	_, _ = f.Write([]byte(out))
}

// MarshalJSON encodes the redacted form as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText returns the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML returns the redacted form (go.yaml.in/yaml/v3 Marshaler).
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue returns the redacted form for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
