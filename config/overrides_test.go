package config

import (
	"strings"
	"testing"
)

// twoUpstreams is a file with two upstreams, where single-upstream flags
// are refused.
const twoUpstreams = `
upstreams:
  - {name: live, url: https://live.example, cert_dir: /l}
  - {name: staging, url: https://staging.example, cert_dir: /s}
`

func TestSingleUpstreamFlagsBuild(t *testing.T) {
	t.Run("no upstreams in file: flags build one", func(t *testing.T) {
		cfg := mustLoad(t, "listen: 127.0.0.1:1\n", nil, Overrides{Upstream: "https://a.example", CertFile: "/c.pem", KeyFile: "/c.key", Address: "10.0.0.1:443"})
		u := cfg.Upstreams[0]
		if u.Name != "default" || !u.Default || u.CertFile != "/c.pem" || u.KeyFile != "/c.key" || u.Address != "10.0.0.1:443" {
			t.Errorf("got %+v, want upstream default built from flags", u)
		}
	})
	t.Run("no upstreams: env builds one", func(t *testing.T) {
		cfg := mustLoad(t, "", env(map[string]string{"PAYRAILS_PROXY_UPSTREAM": "https://a.example", "PAYRAILS_PROXY_CERT": "/c.pem", "PAYRAILS_PROXY_KEY": "/c.key"}), Overrides{})
		if u := cfg.Upstreams[0]; u.Host != "a.example" || u.CertFile != "/c.pem" || u.KeyFile != "/c.key" {
			t.Errorf("got %+v, want upstream built from env", u)
		}
	})
	t.Run("flags without url", func(t *testing.T) {
		_, err := parseErr(t, "", nil, Overrides{CertDir: "/c"})
		e := findError(t, err, "upstreams[0].url")
		if e.Source != "flag --cert-dir" {
			t.Errorf("Source = %q, want flag --cert-dir", e.Source)
		}
		contains(t, "reason", e.Reason, "--upstream")
	})
	t.Run("flags without cert", func(t *testing.T) {
		_, err := parseErr(t, "", nil, Overrides{Upstream: "https://a.example"})
		e := findError(t, err, "upstreams[0]")
		contains(t, "reason", e.Reason, "--cert-dir", "--cert FILE and --key FILE")
	})
}

func TestSingleUpstreamFlagsOverride(t *testing.T) {
	t.Run("one upstream: cert-dir replaces cert_file and key_file", func(t *testing.T) {
		cfg := mustLoad(t, "upstreams: [{name: live, url: https://a.example, cert_file: c.pem, key_file: c.key}]\n", nil, Overrides{CertDir: "/d"})
		if u := cfg.Upstreams[0]; u.CertDir != "/d" || u.CertFile != "" || u.KeyFile != "" || u.Name != "live" {
			t.Errorf("got %+v, want cert_dir /d only, name kept", u)
		}
	})
	t.Run("one upstream: cert and key replace cert_dir", func(t *testing.T) {
		cfg := mustLoad(t, oneUpstream, nil, Overrides{CertFile: "/c.pem", KeyFile: "/c.key"})
		if u := cfg.Upstreams[0]; u.CertDir != "" || u.CertFile != "/c.pem" || u.KeyFile != "/c.key" {
			t.Errorf("got %+v, want the file pair only", u)
		}
	})
	t.Run("one upstream: flag cert keeps the file's key", func(t *testing.T) {
		cfg := mustLoad(t, "upstreams: [{url: https://a.example, cert_file: /old.pem, key_file: /k.key}]\n", nil, Overrides{CertFile: "/new.pem"})
		if u := cfg.Upstreams[0]; u.CertFile != "/new.pem" || u.KeyFile != "/k.key" {
			t.Errorf("got %+v, want new cert, file's key", u)
		}
	})
	t.Run("one upstream: flag cert after env cert-dir lacks a key", func(t *testing.T) {
		_, err := parseErr(t, oneUpstream, env(map[string]string{"PAYRAILS_PROXY_CERT_DIR": "/d"}), Overrides{CertFile: "/c.pem"})
		if e := findError(t, err, "upstreams[0].cert_file"); e.Source != "flag --cert" {
			t.Errorf("Source = %q, want flag --cert", e.Source)
		}
	})
}

func TestSingleUpstreamFlagsRefused(t *testing.T) {
	for _, tt := range []struct {
		name   string
		env    map[string]string
		flags  Overrides
		source string
	}{
		{"two upstreams: flag refused", nil, Overrides{CertDir: "/x"}, "flag --cert-dir"},
		{"two upstreams: env refused", map[string]string{"PAYRAILS_PROXY_UPSTREAM": "https://x.example"}, Overrides{}, "env PAYRAILS_PROXY_UPSTREAM"},
		{"two upstreams: passphrase file flag refused", nil, Overrides{KeyPassphraseFile: "/p"}, "flag --key-passphrase-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, twoUpstreams, env(tt.env), tt.flags)
			e := findError(t, err, "upstreams")
			if e.Source != tt.source {
				t.Errorf("Source = %q, want %q", e.Source, tt.source)
			}
			contains(t, "reason", e.Reason, "edit upstreams in the file", path, "2 upstreams")
		})
	}
	t.Run("two upstreams: global flags still fine", func(t *testing.T) {
		cfg := mustLoad(t, twoUpstreams, nil, Overrides{Listen: ":1234", LogLevel: "debug"})
		if cfg.Listen != ":1234" || len(cfg.Upstreams) != 2 {
			t.Errorf("got listen %q, %d upstreams", cfg.Listen, len(cfg.Upstreams))
		}
	})
}

func TestKeyPassphraseFromEnv(t *testing.T) {
	two := `
upstreams:
  - {name: live-eu, url: https://live.example, cert_dir: /l, default: true}
  - {name: staging, url: https://staging.example, cert_dir: /s, key_passphrase_file: /p}
  - {name: sandbox, url: https://sandbox.example, cert_dir: /b}
`
	cfg := mustLoad(t, two, env(map[string]string{
		"PAYRAILS_PROXY_KEY_PASSPHRASE":         "global",
		"PAYRAILS_PROXY_LIVE_EU_KEY_PASSPHRASE": "per-upstream",
	}), Overrides{})
	want := map[string]string{"live-eu": "per-upstream", "staging": "", "sandbox": "global"}
	for _, u := range cfg.Upstreams {
		if got := u.KeyPassphrase.Value(); got != want[u.Name] {
			t.Errorf("%s: KeyPassphrase = %q, want %q", u.Name, got, want[u.Name])
		}
	}

	t.Run("lone unnamed upstream uses DEFAULT", func(t *testing.T) {
		cfg := mustLoad(t, oneUpstream, env(map[string]string{"PAYRAILS_PROXY_DEFAULT_KEY_PASSPHRASE": "d"}), Overrides{})
		if got := cfg.Upstreams[0].KeyPassphrase.Value(); got != "d" {
			t.Errorf("KeyPassphrase = %q, want d", got)
		}
	})
	t.Run("per-upstream env and file conflict", func(t *testing.T) {
		_, err := parseErr(t, two, env(map[string]string{"PAYRAILS_PROXY_STAGING_KEY_PASSPHRASE": "x"}), Overrides{})
		e := findError(t, err, "upstreams[1].key_passphrase_file")
		contains(t, "reason", e.Reason, "PAYRAILS_PROXY_STAGING_KEY_PASSPHRASE")
		if strings.Contains(err.Error(), `"x"`) {
			t.Errorf("error leaks the passphrase: %v", err)
		}
	})
	t.Run("names that share an env prefix", func(t *testing.T) {
		_, err := parseErr(t, "upstreams: [{name: a-b, url: https://a.example, cert_dir: /a}, {name: a_b, url: https://b.example, cert_dir: /b}]\n", nil, Overrides{})
		e := findError(t, err, "upstreams[1].name")
		contains(t, "reason", e.Reason, "PAYRAILS_PROXY_A_B_")
	})
}

func TestTokenSecret(t *testing.T) {
	const base = "upstreams:\n  - name: live\n    url: https://a.example\n    cert_dir: /c\n"
	t.Run("client id with env secret", func(t *testing.T) {
		cfg := mustLoad(t, base+"    token: {client_id: cid}\n", env(map[string]string{"PAYRAILS_PROXY_LIVE_CLIENT_SECRET": "s3"}), Overrides{})
		if tok := cfg.Upstreams[0].Token; tok.ClientID != "cid" || tok.ClientSecret.Value() != "s3" {
			t.Errorf("Token = %+v (secret %q), want cid / s3", tok, tok.ClientSecret.Value())
		}
	})
	tests := []struct {
		name, token string
		env         map[string]string
		key, source string
	}{
		{"client id without secret", "    token: {client_id: cid}\n", nil, "upstreams[0].token.client_id", "file"},
		{"secret file without client id", "    token: {client_secret_file: /s}\n", nil, "upstreams[0].token.client_id", "file"},
		{"env secret without client id", "", map[string]string{"PAYRAILS_PROXY_LIVE_CLIENT_SECRET": "s"}, "upstreams[0].token.client_id", "env PAYRAILS_PROXY_LIVE_CLIENT_SECRET"},
		{"secret file and env", "    token: {client_id: c, client_secret_file: /s}\n", map[string]string{"PAYRAILS_PROXY_LIVE_CLIENT_SECRET": "s"}, "upstreams[0].token.client_secret_file", "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, base+tt.token, env(tt.env), Overrides{})
			e := findError(t, err, tt.key)
			want := tt.source
			if want == "file" {
				want = "file " + path
			}
			if e.Source != want {
				t.Errorf("Source = %q, want %q", e.Source, want)
			}
		})
	}
}
