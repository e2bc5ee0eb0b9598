package config

import (
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		oneUpstream,
		designExample,
		"listen: :1\nupstreams: [{url: https://a.example, cert_dir: c, default: true}]\n",
		"upstreams:\n  - &a {name: a, url: https://a.example, cert_dir: /c}\n  - {<<: *a, name: b, url: https://b.example}\n",
		"upstreams: [{url: 'http://a', cert_file: a, key_file: b, token: {client_id: x}}]\n",
		"reload: &r {<<: *r}\n",
		"access: {allow_cidrs: [10.0.0.1, '::1/128']}\ntimeouts: {dial: 1m30s}\nconnect: mitm\nmitm: {ca_cert_file: a, ca_key_file: b}\n" + oneUpstream,
		"- [a, {b: c}]\n",
		"a: &a [*a]\nupstreams: *a\n",
		"upstreams: [{url: https://a.example, cert_file: /c, key_uri: 'pkcs11:token=t;object=k?module-path=/l.so&pin-source=file:/p'}]\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", env(nil), Overrides{}, false)
		if err != nil {
			for _, e := range asErrors(t, err) {
				if e.Reason == "" {
					t.Errorf("error without a reason: %#v", e)
				}
			}
			return
		}
		checkInvariants(t, cfg)
	})
}

// checkInvariants asserts what every successfully parsed Config promises.
func checkInvariants(t *testing.T, cfg *Config) {
	t.Helper()
	if len(cfg.Upstreams) == 0 {
		t.Fatalf("no upstreams in a valid config")
	}
	defaults := 0
	names := map[string]bool{}
	hosts := map[string]bool{}
	for i, u := range cfg.Upstreams {
		if u.URL == nil || u.URL.Scheme != "https" || u.URL.Host == "" || u.URL.Path != "" || u.URL.User != nil || u.URL.RawQuery != "" {
			t.Errorf("upstreams[%d].URL = %v, want https://HOST only", i, u.URL)
		}
		if u.Host == "" || names[u.Name] || hosts[u.Host] || !validName(u.Name) {
			t.Errorf("upstreams[%d]: name %q / host %q empty, invalid or not unique", i, u.Name, u.Host)
		}
		names[u.Name], hosts[u.Host] = true, true
		if (u.CertDir == "") == (u.CertFile == "" || (u.KeyFile == "") == (u.KeyURI == nil)) {
			t.Errorf("upstreams[%d]: want exactly one certificate source, got %+v", i, u)
		}
		if u.Default {
			defaults++
		}
	}
	if defaults > 1 {
		t.Errorf("%d default upstreams, want at most one", defaults)
	}
	if len(cfg.Access.AllowCIDRs) == 0 || cfg.Reload.PollInterval <= 0 || cfg.Reload.Debounce < 0 || cfg.Timeouts.Dial <= 0 {
		t.Errorf("invalid values in a valid config: %+v", cfg)
	}
	if cfg.Connect != ConnectReject && cfg.Connect != ConnectMITM {
		t.Errorf("Connect = %q", cfg.Connect)
	}
}
