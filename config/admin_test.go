package config

import (
	"strings"
	"testing"
)

func TestAdminListen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// serve would refuse this file (no upstream, an unknown key): AdminListen
	// reads admin_listen only.
	file := writeFile(t, dir, "c.yaml", "admin_listen: 127.0.0.1:9191\nlisten: nonsense\nunknown_key: 1\n")
	noAdmin := writeFile(t, dir, "none.yaml", "listen: 127.0.0.1:8081\n")
	badYAML := writeFile(t, dir, "bad.yaml", "admin_listen: [\n")
	badValue := writeFile(t, dir, "badvalue.yaml", "admin_listen: {a: 1}\n")
	cases := []struct {
		name    string
		path    string
		env     map[string]string
		flag    string
		want    string
		wantErr []string
	}{
		{name: "default", want: DefaultAdminListen},
		{name: "file", path: file, want: "127.0.0.1:9191"},
		{name: "file without the key", path: noAdmin, want: DefaultAdminListen},
		{name: "environment beats the file", path: file, env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "0.0.0.0:9292"}, want: "0.0.0.0:9292"},
		{name: "empty environment counts as unset", path: file, env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": ""}, want: "127.0.0.1:9191"},
		{name: "flag beats the environment", path: file, env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "0.0.0.0:9292"}, flag: "[::]:9393", want: "[::]:9393"},
		{name: "not HOST:PORT", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "9090"},
			wantErr: []string{"env PAYRAILS_PROXY_ADMIN_LISTEN", "admin_listen", "HOST:PORT"}},
		{name: "unreadable file", path: dir + "/missing.yaml", wantErr: []string{"missing.yaml", "cannot read"}},
		{name: "not YAML", path: badYAML, wantErr: []string{"bad.yaml", "not valid YAML"}},
		{name: "admin_listen not a scalar", path: badValue, wantErr: []string{"badvalue.yaml", "admin_listen"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := AdminListen(tc.path, env(tc.env), tc.flag)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("AdminListen = %q, want an error containing %q", got, tc.wantErr)
				}
				asErrors(t, err)
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("AdminListen = %q, %v; want %q", got, err, tc.want)
			}
			// The same answer as Load's, wherever Load can answer.
			if tc.path != file {
				return
			}
			cfg, err := Parse([]byte("admin_listen: 127.0.0.1:9191\nupstreams: [{name: a, url: https://a.example, cert_dir: /c}]\n"),
				tc.path, env(tc.env), Overrides{AdminListen: tc.flag}, false)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg.AdminListen != got {
				t.Errorf("Parse gives admin_listen %q, AdminListen %q", cfg.AdminListen, got)
			}
		})
	}
}
