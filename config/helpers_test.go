package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// env returns a lookupEnv backed by m.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeFile writes content to dir/name (creating parents) and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mkdir creates dir/name and returns the path.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// asErrors extracts the list from an error returned by Load or Parse.
func asErrors(t *testing.T, err error) Errors {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not an Errors", err, err)
	}
	return es
}

// findError returns the Error with key, failing the test (and listing all
// of them) when there is none.
func findError(t *testing.T, err error, key string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one for key %q", key)
	}
	for _, e := range asErrors(t, err) {
		if e.Key == key {
			return e
		}
	}
	t.Fatalf("no error for key %q; got:\n%v", key, err)
	return nil
}

// mustLoad loads a config file holding content from a fresh temp dir.
func mustLoad(t *testing.T, content string, lookup func(string) (string, bool), flags Overrides) *Config {
	t.Helper()
	path := writeFile(t, t.TempDir(), "proxy.yaml", content)
	cfg, err := Parse([]byte(content), path, lookup, flags, false)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return cfg
}

// parseErr parses content from a file in a temp dir, wanting an error.
func parseErr(t *testing.T, content string, lookup func(string) (string, bool), flags Overrides) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	_, err := Parse([]byte(content), path, lookup, flags, false)
	if err == nil {
		t.Fatalf("Parse(%q): got no error, want one", content)
	}
	return path, err
}

// contains fails unless s contains every one of subs.
func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s = %q, want it to contain %q", what, s, sub)
		}
	}
}

// oneUpstream is a minimal valid upstream list.
const oneUpstream = `
upstreams:
  - url: https://api.acme.payrails.io
    cert_dir: /certs/live
`
