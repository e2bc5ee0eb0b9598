package config

import (
	"strings"
	"testing"
)

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml string
		key        string
		line       int
		want       []string
	}{
		{"top-level typo", "lisen: :80\n", "lisen", 1, []string{`did you mean "listen"?`}},
		{"hyphen for underscore", "admin-listen: :80\n", "admin-listen", 1, []string{`did you mean "admin_listen"?`}},
		{"nested typo", "reload:\n  debounse: 1s\n", "reload.debounse", 2, []string{`did you mean "debounce"?`}},
		{"upstream typo", oneUpstream + "    cert-dir: /x\n", "upstreams[0].cert-dir", 5, []string{`did you mean "cert_dir"?`}},
		{"token typo", oneUpstream + "    token: {clientid: x}\n", "upstreams[0].token.clientid", 5, []string{`did you mean "client_id"?`}},
		{"far from anything", "\n\nfrobnicate: 1\n", "frobnicate", 3, []string{"allowed here are", "admin_listen", "upstreams"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, tt.yaml, nil, Overrides{})
			e := findError(t, err, tt.key)
			if e.Line != tt.line {
				t.Errorf("Line = %d, want %d", e.Line, tt.line)
			}
			if e.Source != "file "+path {
				t.Errorf("Source = %q, want file %s", e.Source, path)
			}
			contains(t, "reason", e.Reason, tt.want...)
			contains(t, "message", e.Error(), path, tt.key)
		})
	}
}

func TestSecretsNeverFromYAML(t *testing.T) {
	const secret = "hunter2-do-not-print"
	tests := []struct {
		name, yaml, key string
		want            []string
	}{
		{"key_passphrase", "upstreams:\n  - name: live\n    url: https://a.example\n    cert_dir: /c\n    key_passphrase: " + secret + "\n",
			"upstreams[0].key_passphrase", []string{"key_passphrase_file", "PAYRAILS_PROXY_LIVE_KEY_PASSPHRASE", "never read from the config file"}},
		{"client_secret", "upstreams:\n  - name: staging-eu\n    url: https://a.example\n    cert_dir: /c\n    token: {client_id: x, client_secret: " + secret + "}\n",
			"upstreams[0].token.client_secret", []string{"client_secret_file", "PAYRAILS_PROXY_STAGING_EU_CLIENT_SECRET"}},
		{"unnamed lone upstream", oneUpstream + "    passphrase: " + secret + "\n",
			"upstreams[0].passphrase", []string{"PAYRAILS_PROXY_DEFAULT_KEY_PASSPHRASE"}},
		{"top-level password", "key_password: " + secret + "\n" + oneUpstream,
			"key_password", []string{"PAYRAILS_PROXY_<NAME>_KEY_PASSPHRASE"}},
		{"api key", oneUpstream + "    x-api-key: " + secret + "\n",
			"upstreams[0].x-api-key", []string{"client_secret_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseErr(t, tt.yaml, nil, Overrides{})
			e := findError(t, err, tt.key)
			contains(t, "reason", e.Reason, tt.want...)
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error leaks the secret: %v", err)
			}
		})
	}
}

func TestYAMLStructure(t *testing.T) {
	tests := []struct {
		name, yaml string
		key        string
		line       int
		want       string
	}{
		{"list for a mapping", "log: [info]\n", "log", 1, "must be a mapping"},
		{"mapping for a scalar", "listen: {host: x}\n", "listen", 1, "must be a single value, found a mapping"},
		{"scalar for upstreams", "upstreams: https://a.example\n", "upstreams", 1, "must be a list of upstreams"},
		{"scalar upstream item", "upstreams:\n  - https://a.example\n", "upstreams[0]", 2, "must be a mapping"},
		{"scalar for allow_cidrs", "access: {allow_cidrs: 10.0.0.0/8}\n" + oneUpstream, "access.allow_cidrs", 1, "must be a list"},
		{"nested list in allow_cidrs", "access:\n  allow_cidrs:\n    - [10.0.0.0/8]\n" + oneUpstream, "access.allow_cidrs[0]", 3, "single value"},
		{"top level is a list", "- a\n- b\n", "", 1, "top level must be a mapping"},
		{"duplicate key", "listen: :1\nadmin_listen: :2\nlisten: :3\n" + oneUpstream, "listen", 3, "already set on line 1"},
		{"duplicate nested key", oneUpstream + "    url: https://b.example\n", "upstreams[0].url", 5, "already set on line 3"},
		{"syntax error", "listen: :1\n  bad: indent\n", "", 2, "not valid YAML"},
		{"tab indent", "log:\n\tlevel: info\n", "", 2, "tabs"},
		{"two documents", oneUpstream + "---\nlisten: :1\n", "", 0, "more than one YAML document"},
		{"unquoted ipv6 in flow list", "access: {allow_cidrs: [127.0.0.1/32, ::1/128]}\n", "", 0, `["::1/128"]`},
		{"merge of a scalar", "reload:\n  <<: 5\n" + oneUpstream, "reload", 2, "merge key"},
		{"bool default", "upstreams: [{url: https://a.example, cert_dir: /c, default: yes}]\n", "upstreams[0].default", 1, "write true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, tt.yaml, nil, Overrides{})
			e := findError(t, err, tt.key)
			if e.Line != tt.line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tt.line, e)
			}
			if e.Source != "file "+path {
				t.Errorf("Source = %q, want file %s", e.Source, path)
			}
			contains(t, "reason", e.Reason, tt.want)
		})
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	content := `
upstreams:
  - &live
    name: live
    url: https://live.example
    cert_dir: /certs
    ca_file: /roots.pem
    default: true
  - <<: *live
    name: staging
    url: https://staging.example
    default: false
timeouts: &t {dial: 1s}
`
	cfg := mustLoad(t, content, nil, Overrides{})
	st := cfg.Upstreams[1]
	if st.Name != "staging" || st.Host != "staging.example" || st.CertDir != "/certs" || st.CAFile != "/roots.pem" || st.Default {
		t.Errorf("merged upstream = %+v, want staging with live's cert_dir and ca_file, not default", st)
	}
	if cfg.Timeouts.Dial.String() != "1s" {
		t.Errorf("Dial = %v, want 1s", cfg.Timeouts.Dial)
	}

	// An anchor containing an alias to itself must not make the walk loop.
	for _, y := range []string{"reload: &a {<<: *a}\n", "reload: &a {x: *a}\n", "a: &a [*a]\nupstreams: *a\n"} {
		_, err := Parse([]byte(y), "x.yaml", nil, Overrides{}, false)
		if err == nil {
			t.Errorf("Parse(%q): got no error, want one", y)
		}
	}
}
