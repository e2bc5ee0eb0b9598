package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPrecedence(t *testing.T) {
	file := `
listen: 127.0.0.1:1001
log: {level: warn, format: console}
connect: reject
access: {allow_cidrs: [10.0.0.0/8]}
upstreams:
  - url: https://file.example
    cert_dir: /file-certs
`
	noFile := ""
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		flags Overrides
		get   func(*Config) any
		want  any
	}{
		{"listen default", noFile + oneUpstream, nil, Overrides{}, func(c *Config) any { return c.Listen }, "127.0.0.1:8080"},
		{"listen file", file, nil, Overrides{}, func(c *Config) any { return c.Listen }, "127.0.0.1:1001"},
		{"listen env over file", file, map[string]string{"PAYRAILS_PROXY_LISTEN": "127.0.0.1:1002"}, Overrides{},
			func(c *Config) any { return c.Listen }, "127.0.0.1:1002"},
		{"listen flag over env", file, map[string]string{"PAYRAILS_PROXY_LISTEN": "127.0.0.1:1002"}, Overrides{Listen: "127.0.0.1:1003"},
			func(c *Config) any { return c.Listen }, "127.0.0.1:1003"},
		{"empty env is not set", file, map[string]string{"PAYRAILS_PROXY_LISTEN": ""}, Overrides{},
			func(c *Config) any { return c.Listen }, "127.0.0.1:1001"},
		{"admin_listen env", file, map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": ":7000"}, Overrides{},
			func(c *Config) any { return c.AdminListen }, ":7000"},
		{"log level env", file, map[string]string{"PAYRAILS_PROXY_LOG_LEVEL": "error"}, Overrides{},
			func(c *Config) any { return c.Log.Level }, "error"},
		{"log level flag", file, map[string]string{"PAYRAILS_PROXY_LOG_LEVEL": "error"}, Overrides{LogLevel: "debug"},
			func(c *Config) any { return c.Log.Level }, "debug"},
		{"log format file", file, nil, Overrides{}, func(c *Config) any { return c.Log.Format }, "console"},
		{"log format env", file, map[string]string{"PAYRAILS_PROXY_LOG_FORMAT": "json"}, Overrides{},
			func(c *Config) any { return c.Log.Format }, "json"},
		{"connect flag", file + "mitm: {ca_cert_file: /ca.pem, ca_key_file: /ca.key}\n",
			map[string]string{"PAYRAILS_PROXY_CONNECT": "reject"}, Overrides{Connect: "mitm"},
			func(c *Config) any { return c.Connect }, ConnectMITM},
		{"allow_cidrs file", file, nil, Overrides{}, func(c *Config) any { return prefixes(c) }, "10.0.0.0/8"},
		{"allow_cidrs env", file, map[string]string{"PAYRAILS_PROXY_ALLOW_CIDRS": " 192.168.0.0/16, ,::1 "}, Overrides{},
			func(c *Config) any { return prefixes(c) }, "192.168.0.0/16 ::1/128"},
		{"upstream url env", file, map[string]string{"PAYRAILS_PROXY_UPSTREAM": "https://env.example"}, Overrides{},
			func(c *Config) any { return c.Upstreams[0].Host }, "env.example"},
		{"upstream url flag", file, map[string]string{"PAYRAILS_PROXY_UPSTREAM": "https://env.example"}, Overrides{Upstream: "https://flag.example"},
			func(c *Config) any { return c.Upstreams[0].Host }, "flag.example"},
		{"cert dir env", file, map[string]string{"PAYRAILS_PROXY_CERT_DIR": "/env-certs"}, Overrides{},
			func(c *Config) any { return c.Upstreams[0].CertDir }, "/env-certs"},
		{"cert dir flag", file, map[string]string{"PAYRAILS_PROXY_CERT_DIR": "/env-certs"}, Overrides{CertDir: "/flag-certs"},
			func(c *Config) any { return c.Upstreams[0].CertDir }, "/flag-certs"},
		{"address env", file, map[string]string{"PAYRAILS_PROXY_ADDRESS": "10.0.0.1:443"}, Overrides{},
			func(c *Config) any { return c.Upstreams[0].Address }, "10.0.0.1:443"},
		{"ca file flag", file, map[string]string{"PAYRAILS_PROXY_CA_FILE": "/env.pem"}, Overrides{CAFile: "/flag.pem"},
			func(c *Config) any { return c.Upstreams[0].CAFile }, "/flag.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoad(t, tt.file, env(tt.env), tt.flags)
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// prefixes renders the allowed CIDRs space-separated.
func prefixes(c *Config) string {
	s := ""
	for i, p := range c.Access.AllowCIDRs {
		if i > 0 {
			s += " "
		}
		s += p.String()
	}
	return s
}

func TestErrorSourceNamesLayer(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		flags       Overrides
		key, source string
	}{
		{"file", nil, Overrides{}, "listen", "file"},
		{"env", map[string]string{"PAYRAILS_PROXY_LISTEN": "bad"}, Overrides{}, "listen", "env PAYRAILS_PROXY_LISTEN"},
		{"flag", map[string]string{"PAYRAILS_PROXY_LISTEN": "bad"}, Overrides{Listen: "worse"}, "listen", "flag --listen"},
		{"flag upstream", nil, Overrides{Upstream: "http://x.example"}, "upstreams[0].url", "flag --upstream"},
		{"env upstream", map[string]string{"PAYRAILS_PROXY_UPSTREAM": "ftp://x"}, Overrides{}, "upstreams[0].url", "env PAYRAILS_PROXY_UPSTREAM"},
		{"env cidrs", map[string]string{"PAYRAILS_PROXY_ALLOW_CIDRS": "10.0.0.0/8,nope"}, Overrides{}, "access.allow_cidrs", "env PAYRAILS_PROXY_ALLOW_CIDRS"},
		{"env cidrs empty list", map[string]string{"PAYRAILS_PROXY_ALLOW_CIDRS": ","}, Overrides{}, "access.allow_cidrs", "env PAYRAILS_PROXY_ALLOW_CIDRS"},
		{"flag log", nil, Overrides{LogFormat: "text"}, "log.format", "flag --log-format"},
		{"env connect", map[string]string{"PAYRAILS_PROXY_CONNECT": "tunnel"}, Overrides{}, "connect", "env PAYRAILS_PROXY_CONNECT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, "listen: nope\n"+oneUpstream, env(tt.env), tt.flags)
			e := findError(t, err, tt.key)
			want := tt.source
			if want == "file" {
				want = "file " + path
			}
			if e.Source != want {
				t.Errorf("Source = %q, want %q (error: %v)", e.Source, want, e)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	confDir := mkdir(t, dir, "etc/proxy")
	work := mkdir(t, dir, "work")
	mkdir(t, confDir, "certs")
	mkdir(t, work, "flagcerts")
	writeFile(t, confDir, "ca.pem", "x")
	writeFile(t, work, "pass.txt", "x")
	path := writeFile(t, confDir, "proxy.yaml", `
upstreams:
  - url: https://a.example
    cert_dir: ./certs/
    ca_file: ../proxy/ca.pem
`)
	t.Chdir(work)

	cfg, err := Load(path, env(nil), Overrides{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	u := cfg.Upstreams[0]
	if want := filepath.Join(confDir, "certs"); u.CertDir != want {
		t.Errorf("file cert_dir = %q, want %q (relative to the file)", u.CertDir, want)
	}
	if want := filepath.Join(confDir, "ca.pem"); u.CAFile != want {
		t.Errorf("file ca_file = %q, want %q", u.CAFile, want)
	}

	cfg, err = Load(path, env(map[string]string{"PAYRAILS_PROXY_KEY_PASSPHRASE_FILE": "pass.txt"}), Overrides{CertDir: "flagcerts/"})
	if err != nil {
		t.Fatalf("Load with flags: %v", err)
	}
	u = cfg.Upstreams[0]
	if want := filepath.Join(work, "flagcerts"); u.CertDir != want {
		t.Errorf("flag cert_dir = %q, want %q (relative to the working directory)", u.CertDir, want)
	}
	if want := filepath.Join(work, "pass.txt"); u.KeyPassphraseFile != want {
		t.Errorf("env key_passphrase_file = %q, want %q", u.KeyPassphraseFile, want)
	}

	rel, err := filepath.Rel(work, path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(rel, env(nil), Overrides{})
	if err != nil {
		t.Fatalf("Load(%q): %v", rel, err)
	}
	if want := filepath.Join(confDir, "certs"); cfg.Upstreams[0].CertDir != want {
		t.Errorf("relative --config: cert_dir = %q, want %q", cfg.Upstreams[0].CertDir, want)
	}
	if _, err := os.Stat(cfg.Upstreams[0].CertDir); err != nil {
		t.Errorf("resolved cert_dir does not exist: %v", err)
	}
}
