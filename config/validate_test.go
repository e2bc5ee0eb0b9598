package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidationErrors(t *testing.T) {
	up := func(fields string) string {
		return "upstreams:\n  - {name: live, url: https://live.example, cert_dir: /c" + fields + "}\n"
	}
	tests := []struct {
		name string
		yaml string
		key  string
		line int
		want []string
	}{
		{"no upstreams", "upstreams: []\n", "upstreams", 0, []string{"--upstream", "upstreams"}},
		{"http url", "upstreams: [{url: http://api.acme.payrails.io, cert_dir: /c}]\n", "upstreams[0].url", 1,
			[]string{"always speaks TLS", "https://api.acme.payrails.io"}},
		{"relative url", "upstreams: [{url: api.acme.payrails.io, cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"not an absolute URL", "https://api.acme.payrails.io"}},
		{"bad url", "upstreams: [{url: 'https://a b%zz', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"not a valid URL"}},
		{"other scheme", "upstreams: [{url: 'ftp://a.example', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"https://"}},
		{"url path", "upstreams: [{url: 'https://a.example/v1', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{`path "/v1"`}},
		{"url query", "upstreams: [{url: 'https://a.example?x=1', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"query"}},
		{"url fragment", "upstreams: [{url: 'https://a.example#x', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"fragment"}},
		{"url userinfo", "upstreams: [{url: 'https://me:pw@a.example', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"user name or password"}},
		{"url no host", "upstreams: [{url: 'https://:443', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"no host"}},
		{"url bad port", "upstreams: [{url: 'https://a.example:70000', cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"1 to 65535"}},
		{"missing url", "upstreams: [{cert_dir: /c}]\n", "upstreams[0].url", 1, []string{"url is required"}},
		{"missing name with two", "upstreams:\n  - {url: https://a.example, cert_dir: /c}\n  - {name: b, url: https://b.example, cert_dir: /c}\n",
			"upstreams[0].name", 2, []string{"name is required"}},
		{"bad name", "upstreams: [{name: Live!, url: https://a.example, cert_dir: /c}]\n", "upstreams[0].name", 1, []string{"not a valid name"}},
		{"duplicate names", "upstreams:\n  - {name: a, url: https://a.example, cert_dir: /c}\n  - {name: a, url: https://b.example, cert_dir: /c}\n",
			"upstreams[1].name", 3, []string{"already used by upstreams[0]"}},
		{"duplicate hosts", "upstreams:\n  - {name: a, url: https://A.example, cert_dir: /c}\n  - {name: b, url: 'https://a.example:8443', cert_dir: /c}\n",
			"upstreams[1].url", 3, []string{`host "a.example"`, "upstreams[0]"}},
		{"two defaults", "upstreams:\n  - {name: a, url: https://a.example, cert_dir: /c, default: true}\n  - {name: b, url: https://b.example, cert_dir: /c, default: true}\n",
			"upstreams[1].default", 3, []string{`upstreams[0] ("a")`, `upstreams[1] ("b")`}},
		{"cert_dir and cert_file", up(", cert_file: /a.pem, key_file: /a.key"), "upstreams[0].cert_dir", 2, []string{"use one form"}},
		{"cert_file without key_file", "upstreams: [{url: https://a.example, cert_file: /a.pem}]\n", "upstreams[0].cert_file", 1, []string{"key_file"}},
		{"key_file without cert_file", "upstreams: [{url: https://a.example, key_file: /a.key}]\n", "upstreams[0].key_file", 1, []string{"cert_file"}},
		{"no cert source", "upstreams: [{url: https://a.example}]\n", "upstreams[0]", 1, []string{"cert_dir", "cert_file and key_file"}},
		{"bad address", up(", address: 'host'"), "upstreams[0].address", 2, []string{"HOST:PORT"}},
		{"address port", up(", address: 'h:0'"), "upstreams[0].address", 2, []string{"1 to 65535"}},
		{"address no host", up(", address: ':443'"), "upstreams[0].address", 2, []string{"no host"}},
		{"bad listen", "listen: localhost\n" + oneUpstream, "listen", 1, []string{"HOST:PORT"}},
		{"listen port name", "listen: 'localhost:http'\n" + oneUpstream, "listen", 1, []string{"0 to 65535"}},
		{"listen equals admin", "listen: 127.0.0.1:9090\n" + oneUpstream, "listen", 1, []string{"admin_listen", "different ports"}},
		{"admin on wildcard", "listen: 127.0.0.1:1\nadmin_listen: ':1'\n" + oneUpstream, "admin_listen", 2, []string{"same address"}},
		{"log level", "log: {level: verbose}\n" + oneUpstream, "log.level", 1, []string{"debug, info, warn, error"}},
		{"log format", "log: {format: text}\n" + oneUpstream, "log.format", 1, []string{"json, console"}},
		{"connect", "connect: tunnel\n" + oneUpstream, "connect", 1, []string{"reject, mitm"}},
		{"mitm without ca", "connect: mitm\n" + oneUpstream, "mitm.ca_cert_file", 1, []string{"ca init"}},
		{"mitm key without cert", "mitm: {ca_key_file: /k}\n" + oneUpstream, "mitm.ca_key_file", 1, []string{"mitm.ca_cert_file"}},
		{"bad cidr", "access: {allow_cidrs: [10.0.0.0/33]}\n" + oneUpstream, "access.allow_cidrs[0]", 1, []string{"CIDR"}},
		{"empty cidrs", "access: {allow_cidrs: []}\n" + oneUpstream, "access.allow_cidrs", 1, []string{"no client could use the proxy"}},
		{"bad duration", "reload: {debounce: 5}\n" + oneUpstream, "reload.debounce", 1, []string{"250ms"}},
		{"negative debounce", "reload: {debounce: -1s}\n" + oneUpstream, "reload.debounce", 1, []string{"zero or more"}},
		{"zero poll", "reload: {poll_interval: 0s}\n" + oneUpstream, "reload.poll_interval", 1, []string{"greater than zero"}},
		{"zero timeout", "timeouts:\n  shutdown: 0s\n" + oneUpstream, "timeouts.shutdown", 2, []string{"greater than zero"}},
		{"bad timeout", "timeouts: {dial: soon}\n" + oneUpstream, "timeouts.dial", 1, []string{"1m30s"}},
		{"verify not bool", "reload: {verify: yes please}\n" + oneUpstream, "reload.verify", 1, []string{"true or false"}},
		{"verify_path relative", up(", verify_path: health"), "upstreams[0].verify_path", 2, []string{"starting with /"}},
		{"verify_path url", up(", verify_path: 'https://x/y'"), "upstreams[0].verify_path", 2, []string{"starting with /"}},
		{"verify_path authority", up(", verify_path: '//evil.example/'"), "upstreams[0].verify_path", 2, []string{"starting with /"}},
		{"warm not a number", up(", warm_connections: many"), "upstreams[0].warm_connections", 2, []string{"whole number", "0 to 64"}},
		{"warm negative", up(", warm_connections: -1"), "upstreams[0].warm_connections", 2, []string{"0 to 64"}},
		{"warm too many", up(", warm_connections: 65"), "upstreams[0].warm_connections", 2, []string{"0 to 64"}},
		{"via https", up(", via: 'https://squid:3128'"), "upstreams[0].via", 2, []string{"http://", "http://HOST:PORT"}},
		{"via no port", up(", via: 'http://squid'"), "upstreams[0].via", 2, []string{"HOST:PORT"}},
		{"via bare host", up(", via: 'squid:3128'"), "upstreams[0].via", 2, []string{"http://HOST:PORT"}},
		{"via user", up(", via: 'http://u:p@squid:3128'"), "upstreams[0].via", 2, []string{"via_auth_file"}},
		{"via path", up(", via: 'http://squid:3128/x'"), "upstreams[0].via", 2, []string{"no path"}},
		{"via bad port", up(", via: 'http://squid:99999'"), "upstreams[0].via", 2, []string{"1 to 65535"}},
		{"via port zero", up(", via: 'http://squid:0'"), "upstreams[0].via", 2, []string{"1 to 65535"}},
		{"via port name", up(", via: 'http://squid:http'"), "upstreams[0].via", 2, []string{"not a URL", `invalid port ":http"`}},
		{"via no host", up(", via: 'http://:3128'"), "upstreams[0].via", 2, []string{"no HOST:PORT"}},
		{"via opaque", up(", via: 'http:squid:3128'"), "upstreams[0].via", 2, []string{"no HOST:PORT"}},
		{"via query", up(", via: 'http://squid:3128?x=1'"), "upstreams[0].via", 2, []string{"no path, query or fragment"}},
		{"via fragment", up(", via: 'http://squid:3128#x'"), "upstreams[0].via", 2, []string{"no path, query or fragment"}},
		{"via socks", up(", via: 'socks5://squid:1080'"), "upstreams[0].via", 2, []string{"must use http://"}},
		{"via not a url", up(", via: 'http://squid:3128/%zz'"), "upstreams[0].via", 2, []string{"not a URL"}},
		{"via user only", up(", via: 'http://u@squid:3128'"), "upstreams[0].via", 2, []string{"via_auth_file"}},
		{"via_auth_file without via", up(", via_auth_file: /a"), "upstreams[0].via_auth_file", 2, []string{"via is not"}},
		{"attempts zero", "retry: {attempts: 0}\n" + oneUpstream, "retry.attempts", 1, []string{"1 to 10"}},
		{"attempts many", "retry: {attempts: 11}\n" + oneUpstream, "retry.attempts", 1, []string{"1 to 10"}},
		{"backoff zero", "retry: {backoff: 0s}\n" + oneUpstream, "retry.backoff", 1, []string{"greater than zero"}},
		{"max_backoff short", "retry: {backoff: 1s, max_backoff: 500ms}\n" + oneUpstream, "retry.max_backoff", 1, []string{"at least the first pause"}},
		{"max_backoff default short", "retry: {backoff: 5s}\n" + oneUpstream, "retry.backoff", 1, []string{"retry.max_backoff (2s)"}},
		{"header name", "retry: {idempotency_headers: [X-Idempotency-Key, 'bad header']}\n" + oneUpstream,
			"retry.idempotency_headers[1]", 1, []string{"header name"}},
		{"headers not a list", "retry: {idempotency_headers: X-Idempotency-Key}\n" + oneUpstream,
			"retry.idempotency_headers", 1, []string{"must be a list"}},
		{"add key not bool", "retry: {add_idempotency_key: 1}\n" + oneUpstream, "retry.add_idempotency_key", 1, []string{"true or false"}},
		{"max_body unit", "retry: {max_body: 1MB}\n" + oneUpstream, "retry.max_body", 1, []string{"KiB, MiB or GiB"}},
		{"max_body huge", "retry: {max_body: 1GiB}\n" + oneUpstream, "retry.max_body", 1, []string{"0 to 64MiB"}},
		{"max_body negative", "retry: {max_body: -1}\n" + oneUpstream, "retry.max_body", 1, []string{"0 to 64MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, tt.yaml, nil, Overrides{})
			e := findError(t, err, tt.key)
			if e.Source != "file "+path {
				t.Errorf("Source = %q, want file %s", e.Source, path)
			}
			if e.Line != tt.line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tt.line, e)
			}
			contains(t, "reason", e.Reason, tt.want...)
			contains(t, "message", err.Error(), path)
		})
	}
}

func TestValidationCollectsAll(t *testing.T) {
	_, err := parseErr(t, "listen: x\nlog: {level: x, format: x}\nconnect: x\n"+oneUpstream, nil, Overrides{})
	if got := len(asErrors(t, err)); got != 4 {
		t.Errorf("got %d errors, want 4:\n%v", got, err)
	}
}

func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	certs := mkdir(t, dir, "certs")
	file := writeFile(t, dir, "a.pem", "x")
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(dir, "certs-link")
	if err := os.Symlink(certs, dirLink); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name, fields, key string
		want              []string // empty: no error expected
	}{
		{"cert_dir ok via symlink", "cert_dir: " + dirLink, "", nil},
		{"cert_file ok via symlink", "cert_file: " + link + ", key_file: " + file, "", nil},
		{"cert_dir missing", "cert_dir: " + missing, "upstreams[0].cert_dir", []string{missing, "does not exist", "create it or fix the path"}},
		{"cert_dir is a file", "cert_dir: " + file, "upstreams[0].cert_dir", []string{"not a directory"}},
		{"cert_file is a dir", "cert_file: " + certs + ", key_file: " + file, "upstreams[0].cert_file", []string{"is a directory"}},
		{"key_file missing", "cert_file: " + file + ", key_file: " + missing, "upstreams[0].key_file", []string{"does not exist"}},
		{"key_passphrase_file missing", "cert_dir: " + certs + ", key_passphrase_file: " + missing, "upstreams[0].key_passphrase_file", []string{"does not exist"}},
		{"ca_file missing", "cert_dir: " + certs + ", ca_file: " + missing, "upstreams[0].ca_file", []string{"does not exist"}},
		{"via_auth_file missing", "cert_dir: " + certs + ", via: 'http://127.0.0.1:3128', via_auth_file: " + missing, "upstreams[0].via_auth_file", []string{missing, "does not exist"}},
		{"via_auth_file is a dir", "cert_dir: " + certs + ", via: 'http://127.0.0.1:3128', via_auth_file: " + certs, "upstreams[0].via_auth_file", []string{"is a directory"}},
		{"via_auth_file ok", "cert_dir: " + certs + ", via: 'http://127.0.0.1:3128', via_auth_file: " + file, "", nil},
		{"client_secret_file missing", "cert_dir: " + certs + ", token: {client_id: c, client_secret_file: " + missing + "}", "upstreams[0].token.client_secret_file", []string{"does not exist"}},
		{"tilde hint", "cert_dir: ~/certs", "upstreams[0].cert_dir", []string{"~ is not expanded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "proxy.yaml", "upstreams: [{url: https://a.example, "+tt.fields+"}]\n")
			_, err := Load(path, nil, Overrides{})
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Load: unexpected error: %v", err)
				}
				return
			}
			e := findError(t, err, tt.key)
			contains(t, "reason", e.Reason, tt.want...)
			contains(t, "message", e.Error(), path)
		})
	}

	t.Run("top-level files", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "proxy.yaml", "access: {proxy_auth_file: nope}\nmitm: {ca_cert_file: nope.pem, ca_key_file: nope.key}\n"+
			"upstreams: [{url: https://a.example, cert_dir: "+certs+"}]\n")
		_, err := Load(path, nil, Overrides{})
		for _, key := range []string{"access.proxy_auth_file", "mitm.ca_cert_file", "mitm.ca_key_file"} {
			e := findError(t, err, key)
			contains(t, "reason", e.Reason, filepath.Join(filepath.Dir(path), "nope"))
		}
	})
	t.Run("flag path", func(t *testing.T) {
		_, err := Load("", nil, Overrides{Upstream: "https://a.example", CertDir: missing})
		if e := findError(t, err, "upstreams[0].cert_dir"); e.Source != "flag --cert-dir" {
			t.Errorf("Source = %q, want flag --cert-dir", e.Source)
		}
	})
}

// TestViaErrorsHideCredentials: a via that carries a password is refused
// without repeating it, even when the password makes the URL unparseable
// (a "/" or "#" in it), since the error reaches stderr and the logs.
func TestViaErrorsHideCredentials(t *testing.T) {
	for _, via := range []string{
		"http://user:s3cr3t@squid:3128",
		"http://user:pa/s3cr3t@squid:3128",
		"http://user:pa#s3cr3t@squid:3128",
		"http://user:pa?s3cr3t@squid:3128",
		"http://user:pa s3cr3t@squid:3128",
		"http://user:pa%zzs3cr3t@squid:3128",
	} {
		_, err := ParseVia(via)
		if err == nil {
			t.Errorf("ParseVia(%q) = nil error, want a refusal", via)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr3t") || !strings.Contains(msg, "via_auth_file") {
			t.Errorf("ParseVia(%q) = %q; want a message naming via_auth_file and not the password", via, msg)
		}
	}
}
