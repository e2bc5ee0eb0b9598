package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	certs := mkdir(t, dir, "certs")
	flags := Overrides{Upstream: "https://api.acme.payrails.io", CertDir: certs}
	cfg, err := Load("", env(nil), flags)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Source", cfg.Source, ""},
		{"Listen", cfg.Listen, "127.0.0.1:8080"},
		{"AdminListen", cfg.AdminListen, "127.0.0.1:9090"},
		{"Log", cfg.Log, Log{Level: "info", Format: "json"}},
		{"AllowCIDRs", cfg.Access.AllowCIDRs, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{"ProxyAuthFile", cfg.Access.ProxyAuthFile, ""},
		{"Reload", cfg.Reload, Reload{Debounce: 250 * time.Millisecond, PollInterval: 30 * time.Second, Verify: true}},
		{"Retry", cfg.Retry, Retry{Attempts: 4, Backoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second,
			IdempotencyHeaders: []string{"X-Idempotency-Key", "Idempotency-Key"}, MaxBody: 1 << 20}},
		{"Timeouts", cfg.Timeouts, Timeouts{Dial: 5 * time.Second, TLSHandshake: 10 * time.Second,
			ResponseHeader: 60 * time.Second, IdleConn: 90 * time.Second, Shutdown: 30 * time.Second}},
		{"Connect", cfg.Connect, ConnectReject},
		{"MITM", cfg.MITM, MITM{}},
		{"len(Upstreams)", len(cfg.Upstreams), 1},
		{"Upstream.Name", cfg.Upstreams[0].Name, "default"},
		{"Upstream.Default", cfg.Upstreams[0].Default, true},
		{"Upstream.URL", cfg.Upstreams[0].URL.String(), "https://api.acme.payrails.io"},
		{"Upstream.Host", cfg.Upstreams[0].Host, "api.acme.payrails.io"},
		{"Upstream.CertDir", cfg.Upstreams[0].CertDir, certs},
		{"Upstream.VerifyPath", cfg.Upstreams[0].VerifyPath, "/"},
		{"Upstream.WarmConnections", cfg.Upstreams[0].WarmConnections, 1},
		{"Upstream.Via", cfg.Upstreams[0].Via, (*url.URL)(nil)},
		{"Upstream.ViaAuthFile", cfg.Upstreams[0].ViaAuthFile, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestDefaultsAreNotShared(t *testing.T) {
	a := mustLoad(t, oneUpstream, nil, Overrides{})
	b := mustLoad(t, oneUpstream, nil, Overrides{})
	a.Access.AllowCIDRs[0] = netip.MustParsePrefix("0.0.0.0/0")
	a.Retry.IdempotencyHeaders[0] = "X-Changed"
	if got := b.Access.AllowCIDRs[0].String(); got != "127.0.0.0/8" {
		t.Errorf("changing one Config changed another: got %s, want 127.0.0.0/8", got)
	}
	if got := b.Retry.IdempotencyHeaders[0]; got != "X-Idempotency-Key" {
		t.Errorf("changing one Config changed another: got %s, want X-Idempotency-Key", got)
	}
}

// designExample is DESIGN.md's example with relative cert folders, and with
// "::1/128" quoted: the YAML parser rejects an unquoted "::" in a [...] list.
const designExample = `
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
log: {level: info, format: json}
access:                      # who may use the proxy (it carries the merchant's identity)
  allow_cidrs: [127.0.0.1/32, "::1/128"]
  proxy_auth_file: ""        # optional: file with "user:password" lines
upstreams:
  - name: live
    url: https://api.acme.payrails.io
    address: ""              # optional dial override HOST:PORT
    default: true            # origin-form (base-URL) requests go here
    cert_dir: certs/live     # or cert_file + key_file
    key_passphrase_file: ""
    ca_file: ""
    token: {client_id: "", client_secret_file: ""}   # optional managed tokens
    verify_path: /           # probe request used to verify a certificate against this upstream
    warm_connections: 1      # idle, verified TLS connections kept open (0: none)
    via: ""                  # optional egress proxy http://HOST:PORT (CONNECT; TLS stays end to end)
    via_auth_file: ""        # optional "user:password" for that egress proxy
  - name: staging
    url: https://acme-api.staging.payrails.io
    cert_dir: certs/staging
reload: {debounce: 250ms, poll_interval: 30s, verify: true}
retry:                       # proxy-side retries, only where a second send cannot double a payment
  attempts: 4                # total sends of one request, the first included (1: never retry)
  backoff: 200ms             # doubled per attempt with jitter, capped by max_backoff (covers a restart of ~1 s)
  max_backoff: 2s
  idempotency_headers: [X-Idempotency-Key, Idempotency-Key]
  add_idempotency_key: false # true: give POST/PATCH without a key a fresh X-Idempotency-Key
  max_body: 1MiB             # larger request bodies are streamed, never kept, never retried
timeouts: {dial: 5s, tls_handshake: 10s, response_header: 60s, idle_conn: 90s, shutdown: 30s}
connect: reject              # what a CONNECT (HTTPS_PROXY) request gets: reject | mitm
mitm: {ca_cert_file: "", ca_key_file: ""}   # local CA for connect: mitm (see ca init)
tracing: {otlp_endpoint: "", sample_ratio: 1.0}  # OpenTelemetry; OTEL_* environment variables work too
`

func TestDesignExample(t *testing.T) {
	dir := t.TempDir()
	live, staging := mkdir(t, dir, "certs/live"), mkdir(t, dir, "certs/staging")
	path := writeFile(t, dir, "proxy.yaml", designExample)
	cfg, err := Load(path, env(nil), Overrides{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Source != path {
		t.Errorf("Source = %q, want %q", cfg.Source, path)
	}
	want := []Upstream{
		{Name: "live", Host: "api.acme.payrails.io", Default: true, CertDir: live, VerifyPath: "/", WarmConnections: 1},
		{Name: "staging", Host: "acme-api.staging.payrails.io", CertDir: staging, VerifyPath: "/", WarmConnections: 1},
	}
	if len(cfg.Upstreams) != len(want) {
		t.Fatalf("got %d upstreams, want %d", len(cfg.Upstreams), len(want))
	}
	for i, w := range want {
		got := cfg.Upstreams[i]
		if got.URL.String() != "https://"+w.Host {
			t.Errorf("upstreams[%d].URL = %s, want https://%s", i, got.URL, w.Host)
		}
		got.URL = nil
		if !reflect.DeepEqual(got, w) {
			t.Errorf("upstreams[%d] = %+v, want %+v", i, got, w)
		}
	}
}

func TestFullExample(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"auth.txt", "ca/ca.pem", "ca/ca.key", "live.pem", "live.key", "pass.txt", "roots.pem", "secret.txt", "via.txt"} {
		writeFile(t, dir, f, "x")
	}
	content := `
listen: 0.0.0.0:3128
admin_listen: "[::1]:9999"
log: {level: debug, format: console}
access:
  allow_cidrs: [10.0.0.0/8, 192.168.1.7, "fd00::/8", 10.1.2.3/16]
  proxy_auth_file: auth.txt
upstreams:
  - name: live-eu
    url: https://API.Acme.Payrails.io:8443/
    address: 10.0.0.5:443
    cert_file: live.pem
    key_file: live.key
    key_passphrase_file: pass.txt
    ca_file: roots.pem
    token: {client_id: cid, client_secret_file: secret.txt}
    verify_path: /health?probe=1
    warm_connections: 0
    via: HTTP://Squid.Internal:3128
    via_auth_file: via.txt
reload: {debounce: 0s, poll_interval: 1m30s, verify: false}
retry:
  attempts: 1
  backoff: 50ms
  max_backoff: 50ms
  idempotency_headers: [idempotency-key, x-request-key]
  add_idempotency_key: true
  max_body: 512KiB
timeouts: {dial: 1s, tls_handshake: 2s, response_header: 3s, idle_conn: 4s, shutdown: 5s}
connect: mitm
mitm: {ca_cert_file: ca/ca.pem, ca_key_file: ./ca/../ca/ca.key}
`
	path := writeFile(t, dir, "proxy.yaml", content)
	cfg, err := Load(path, env(nil), Overrides{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	u := cfg.Upstreams[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"Listen", cfg.Listen, "0.0.0.0:3128"},
		{"AdminListen", cfg.AdminListen, "[::1]:9999"},
		{"Log", cfg.Log, Log{Level: "debug", Format: "console"}},
		{"AllowCIDRs", cfg.Access.AllowCIDRs, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16")}},
		{"ProxyAuthFile", cfg.Access.ProxyAuthFile, filepath.Join(dir, "auth.txt")},
		{"Name", u.Name, "live-eu"},
		{"URL", u.URL.String(), "https://api.acme.payrails.io:8443"},
		{"Host", u.Host, "api.acme.payrails.io"},
		{"Address", u.Address, "10.0.0.5:443"},
		{"Default", u.Default, true},
		{"CertDir", u.CertDir, ""},
		{"CertFile", u.CertFile, filepath.Join(dir, "live.pem")},
		{"KeyFile", u.KeyFile, filepath.Join(dir, "live.key")},
		{"KeyPassphraseFile", u.KeyPassphraseFile, filepath.Join(dir, "pass.txt")},
		{"CAFile", u.CAFile, filepath.Join(dir, "roots.pem")},
		{"Token", u.Token, Token{ClientID: "cid", ClientSecretFile: filepath.Join(dir, "secret.txt")}},
		{"VerifyPath", u.VerifyPath, "/health?probe=1"},
		{"WarmConnections", u.WarmConnections, 0},
		{"Via", u.Via.String(), "http://squid.internal:3128"},
		{"ViaAuthFile", u.ViaAuthFile, filepath.Join(dir, "via.txt")},
		{"Reload", cfg.Reload, Reload{Debounce: 0, PollInterval: 90 * time.Second}},
		{"Retry", cfg.Retry, Retry{Attempts: 1, Backoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			IdempotencyHeaders: []string{"Idempotency-Key", "X-Request-Key"}, AddIdempotencyKey: true, MaxBody: 512 << 10}},
		{"Timeouts", cfg.Timeouts, Timeouts{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}},
		{"Connect", cfg.Connect, ConnectMITM},
		{"MITM", cfg.MITM, MITM{CACertFile: filepath.Join(dir, "ca/ca.pem"), CAKeyFile: filepath.Join(dir, "ca/ca.key")}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil, Overrides{})
	es := asErrors(t, err)
	if len(es) != 1 || es[0].Source != "file "+path {
		t.Fatalf("got %v, want one error from file %s", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false, want true")
	}
	contains(t, "message", err.Error(), path, "--config")
}

func TestEmptyFile(t *testing.T) {
	for _, content := range []string{"", "\n# only a comment\n", "---\n", "~\n"} {
		t.Run(content, func(t *testing.T) {
			cfg := mustLoad(t, content, nil, Overrides{Upstream: "https://a.example", CertDir: "/certs"})
			if cfg.Listen != DefaultListen || len(cfg.Upstreams) != 1 {
				t.Errorf("got listen %q and %d upstreams, want defaults and 1", cfg.Listen, len(cfg.Upstreams))
			}
			path, err := parseErr(t, content, nil, Overrides{})
			if e := findError(t, err, "upstreams"); e.Source != "file "+path {
				t.Errorf("Source = %q, want %q", e.Source, "file "+path)
			}
		})
	}
	_, err := Parse(nil, "", nil, Overrides{}, false)
	e := findError(t, err, "upstreams")
	if e.Source != "defaults" {
		t.Errorf("no file, no flags: Source = %q, want defaults", e.Source)
	}
	contains(t, "reason", e.Reason, "--upstream", "--cert-dir", "upstreams")
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse([]byte("listen: nope\nlog: {level: loud}\n"+oneUpstream), "x.yaml", nil, Overrides{}, false)
	var list Errors
	var ptr *Errors
	var one *Error
	if !errors.As(err, &list) || len(list) != 2 {
		t.Errorf("errors.As(Errors) = %v, want 2 errors", list)
	}
	if !errors.As(err, &ptr) || len(*ptr) != 2 {
		t.Errorf("errors.As(*Errors) failed")
	}
	if !errors.As(err, &one) || one.Key != "listen" {
		t.Errorf("errors.As(*Error) = %v, want the listen error first", one)
	}
	want := "file x.yaml, line 1: listen: \"nope\" is not a HOST:PORT address (missing port in address); " +
		"write it like 127.0.0.1:8080, or :8080 for all interfaces\n" +
		"file x.yaml, line 2: log.level: \"loud\" is not allowed; use one of debug, info, warn, error"
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}
