package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const softhsm = "/usr/lib/softhsm/libsofthsm2.so"

func TestParseKeyURI(t *testing.T) {
	slot := uint(7)
	tests := []struct {
		name string
		in   string
		want KeyURI
	}{
		{"design example", "pkcs11:token=payrails;object=client-2026?module-path=" + softhsm + "&pin-source=file:/run/secrets/hsm-pin",
			KeyURI{Token: "payrails", Object: "client-2026", ModulePath: softhsm, PINFile: "/run/secrets/hsm-pin"}},
		{"token only", "pkcs11:token=payrails?module-path=" + softhsm,
			KeyURI{Token: "payrails", ModulePath: softhsm}},
		{"percent-encoded label and id", "pkcs11:token=Acme%20HSM;object=client%3B2026;id=%01%02%ff;type=private?module-path=" + softhsm,
			KeyURI{Token: "Acme HSM", Object: "client;2026", ID: []byte{1, 2, 0xff}, ModulePath: softhsm}},
		{"serial, slot and case", "PKCS11:serial=abc123;slot-id=7;manufacturer=SoftHSM%20project;model=SoftHSM%20v2?MODULE-PATH=" + softhsm,
			KeyURI{Serial: "abc123", SlotID: &slot, Manufacturer: "SoftHSM project", Model: "SoftHSM v2", ModulePath: softhsm}},
		{"file URL forms", "pkcs11:token=t?module-path=" + softhsm + "&pin-source=file:///run/pin",
			KeyURI{Token: "t", ModulePath: softhsm, PINFile: "/run/pin"}},
		{"plus is kept", "pkcs11:token=a+b?module-path=" + softhsm, KeyURI{Token: "a+b", ModulePath: softhsm}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeyURI(tt.in)
			if err != nil {
				t.Fatalf("ParseKeyURI(%q): %v", tt.in, err)
			}
			if !sameKeyURI(got, &tt.want) {
				t.Errorf("ParseKeyURI(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := ParseKeyURI(got.String())
			if err != nil || !sameKeyURI(again, got) {
				t.Errorf("round trip through %q = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseKeyURIRefusals(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"not a URI", "/etc/hsm.key", []string{"starts with pkcs11:", "module-path="}},
		{"pin-value", "pkcs11:token=t?module-path=" + softhsm + "&pin-value=1234", []string{"pin-value", "pin-source=file:", "PAYRAILS_PROXY_PKCS11_PIN"}},
		{"no module", "pkcs11:token=t;object=k", []string{"no module-path", "libsofthsm2.so"}},
		{"relative module", "pkcs11:token=t?module-path=libsofthsm2.so", []string{"not an absolute path"}},
		{"module-name", "pkcs11:token=t?module-name=softhsm2", []string{"module-name is not supported", "module-path="}},
		{"no token", "pkcs11:object=k?module-path=" + softhsm, []string{"names no token", "token=LABEL"}},
		{"public key", "pkcs11:token=t;type=public?module-path=" + softhsm, []string{"type=public", "type=private"}},
		{"twice", "pkcs11:token=t;token=u?module-path=" + softhsm, []string{"token is given twice"}},
		{"typo", "pkcs11:tokne=t?module-path=" + softhsm, []string{`unknown attribute "tokne"`, "did you mean token"}},
		{"vendor", "pkcs11:token=t;x-vendor=1?module-path=" + softhsm, []string{`unknown attribute "x-vendor"`}},
		{"library attr", "pkcs11:token=t;library-version=1?module-path=" + softhsm, []string{"library-version is not supported"}},
		{"bad escape", "pkcs11:token=t%zz?module-path=" + softhsm, []string{"percent-encoding", "%25"}},
		{"bare name", "pkcs11:token?module-path=" + softhsm, []string{"name=value"}},
		{"bad slot", "pkcs11:slot-id=one?module-path=" + softhsm, []string{"slot-id", "decimal"}},
		{"pin command", "pkcs11:token=t?module-path=" + softhsm + "&pin-source=|/usr/bin/pinentry", []string{"pin-source", "file:/ABSOLUTE/PATH"}},
		{"pin relative", "pkcs11:token=t?module-path=" + softhsm + "&pin-source=file:pin", []string{"file:/ABSOLUTE/PATH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyURI(tt.in)
			if err == nil {
				t.Fatalf("ParseKeyURI(%q) = %+v, want an error", tt.in, k)
			}
			contains(t, "error", err.Error(), tt.want...)
		})
	}
	t.Run("pin-value is never repeated", func(t *testing.T) {
		_, err := ParseKeyURI("pkcs11:tokne=x?pin-value=s3cr3t-pin&module-path=rel")
		if !errors.Is(err, ErrPINInURI) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error = %v, want ErrPINInURI without the PIN", err)
		}
	})
}

func TestKeyURIConfig(t *testing.T) {
	uri := "pkcs11:token=payrails?module-path=" + softhsm
	keyURI := "pkcs11:token=payrails;object=client-2026?module-path=" + softhsm
	pinEnv := env(map[string]string{"PAYRAILS_PROXY_PKCS11_PIN": "1234"})
	t.Run("cert_dir with a token", func(t *testing.T) {
		cfg := mustLoad(t, "upstreams: [{url: https://a.example, cert_dir: /c, key_uri: '"+uri+"'}]\n", pinEnv, Overrides{})
		u := cfg.Upstreams[0]
		if u.CertDir != "/c" || u.KeyURI == nil || u.KeyURI.Token != "payrails" || u.PKCS11PIN.Value() != "1234" ||
			u.PKCS11PINEnv != "PAYRAILS_PROXY_PKCS11_PIN" {
			t.Errorf("got %+v, want cert_dir with the token and the PIN from the environment", u)
		}
	})
	t.Run("cert_file with a key object, PIN per upstream", func(t *testing.T) {
		cfg := mustLoad(t, "upstreams: [{name: live, url: https://a.example, cert_file: /c.pem, key_uri: '"+keyURI+"'}]\n",
			env(map[string]string{"PAYRAILS_PROXY_LIVE_PKCS11_PIN": "9"}), Overrides{})
		u := cfg.Upstreams[0]
		if u.CertFile != "/c.pem" || u.KeyFile != "" || u.KeyURI.Object != "client-2026" || u.PKCS11PINEnv != "PAYRAILS_PROXY_LIVE_PKCS11_PIN" {
			t.Errorf("got %+v, want cert_file with the key object", u)
		}
	})
	t.Run("flag and env", func(t *testing.T) {
		cfg := mustLoad(t, "", env(map[string]string{"PAYRAILS_PROXY_KEY_URI": uri, "PAYRAILS_PROXY_PKCS11_PIN": "1"}),
			Overrides{Upstream: "https://a.example", CertDir: "/c"})
		if u := cfg.Upstreams[0]; u.KeyURI == nil || u.CertDir != "/c" {
			t.Errorf("got %+v, want key_uri from PAYRAILS_PROXY_KEY_URI", u)
		}
		cfg = mustLoad(t, "upstreams: [{url: https://a.example, cert_file: /c.pem, key_file: /c.key}]\n", pinEnv,
			Overrides{KeyURI: keyURI})
		if u := cfg.Upstreams[0]; u.KeyURI == nil || u.KeyFile != "" {
			t.Errorf("got %+v, want --key-uri in place of the file's key_file", u)
		}
		cfg = mustLoad(t, "upstreams: [{url: https://a.example, cert_file: /c.pem, key_uri: '"+keyURI+"'}]\n", pinEnv,
			Overrides{KeyFile: "/k.key"})
		if u := cfg.Upstreams[0]; u.KeyURI != nil || u.KeyFile != "/k.key" {
			t.Errorf("got %+v, want --key in place of the file's key_uri", u)
		}
	})
	up := func(fields string) string {
		return "upstreams:\n  - {name: live, url: https://live.example" + fields + "}\n"
	}
	refusals := []struct {
		name, yaml string
		lookup     func(string) (string, bool)
		flags      Overrides
		key        string
		want       []string
	}{
		{"object with cert_dir", up(", cert_dir: /c, key_uri: '" + keyURI + "'"), pinEnv, Overrides{}, "upstreams[0].key_uri", []string{"names the token only"}},
		{"token with cert_file", up(", cert_file: /c.pem, key_uri: '" + uri + "'"), pinEnv, Overrides{}, "upstreams[0].key_uri", []string{"add object=LABEL"}},
		{"key_file too", up(", cert_file: /c.pem, key_file: /k, key_uri: '" + keyURI + "'"), pinEnv, Overrides{}, "upstreams[0].key_uri", []string{"both key_file and key_uri"}},
		{"no certificate", up(", key_uri: '" + keyURI + "'"), pinEnv, Overrides{}, "upstreams[0].key_uri", []string{"no certificate is configured", "cert_dir"}},
		{"no PIN", up(", cert_dir: /c, key_uri: '" + uri + "'"), nil, Overrides{}, "upstreams[0].key_uri", []string{"no PIN", "pin-source=file:", "PAYRAILS_PROXY_PKCS11_PIN", "PAYRAILS_PROXY_LIVE_PKCS11_PIN"}},
		{"two PINs", up(", cert_dir: /c, key_uri: '" + uri + "&pin-source=file:/p'"), env(map[string]string{"PAYRAILS_PROXY_LIVE_PKCS11_PIN": "1"}), Overrides{}, "upstreams[0].key_uri", []string{"both pin-source", "PAYRAILS_PROXY_LIVE_PKCS11_PIN"}},
		{"passphrase file", up(", cert_dir: /c, key_passphrase_file: /p, key_uri: '" + uri + "'"), pinEnv, Overrides{}, "upstreams[0].key_passphrase_file", []string{"remove key_passphrase_file"}},
		{"bad URI in file", up(", cert_dir: /c, key_uri: 'pkcs11:token=t'"), pinEnv, Overrides{}, "upstreams[0].key_uri", []string{"no module-path"}},
		{"pin-value from argv", "", pinEnv, Overrides{Upstream: "https://a.example", CertDir: "/c", KeyURI: uri + "&pin-value=1234"}, "upstreams[0].key_uri", []string{"pin-value", "argv"}},
		{"pin key in the file", up(", cert_dir: /c, pkcs11_pin: 1234"), nil, Overrides{}, "upstreams[0].pkcs11_pin", []string{"never read from the config file", "PAYRAILS_PROXY_LIVE_PKCS11_PIN"}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			path, err := parseErr(t, tt.yaml, tt.lookup, tt.flags)
			e := findError(t, err, tt.key)
			contains(t, "reason", e.Reason, tt.want...)
			if tt.yaml != "" && tt.flags == (Overrides{}) && e.Source != "file "+path {
				t.Errorf("Source = %q, want the file %s", e.Source, path)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("the error repeats the PIN: %v", err)
			}
		})
	}
	t.Run("files are checked", func(t *testing.T) {
		dir := t.TempDir()
		y := up(", cert_dir: " + dir + ", key_uri: 'pkcs11:token=t?module-path=" + dir + "/nolib.so&pin-source=file:" + dir + "/nopin'")
		_, err := Parse([]byte(y), writeFile(t, dir, "proxy.yaml", y), nil, Overrides{}, true)
		e := findError(t, err, "upstreams[0].key_uri")
		contains(t, "reason", err.Error(), "nolib.so\": no PKCS#11 library there", "-v /host/path/lib.so:"+dir+"/nolib.so:ro",
			"FROM", "fix module-path", "nopin\" does not exist")
		_ = e
	})
}

func sameKeyURI(a, b *KeyURI) bool {
	slot := func(p *uint) int64 {
		if p == nil {
			return -1
		}
		return int64(*p)
	}
	return a.Token == b.Token && a.Manufacturer == b.Manufacturer && a.Serial == b.Serial && a.Model == b.Model &&
		slot(a.SlotID) == slot(b.SlotID) && a.Object == b.Object && bytes.Equal(a.ID, b.ID) && (a.ID == nil) == (b.ID == nil) &&
		a.ModulePath == b.ModulePath && a.PINFile == b.PINFile
}

func FuzzKeyURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=payrails;object=client-2026?module-path=" + softhsm + "&pin-source=file:/run/secrets/hsm-pin",
		"pkcs11:serial=1;slot-id=0;id=%00%ff?module-path=/l.so",
		"pkcs11:token=%;object=?pin-value=x",
		"pkcs11:token=a;type=private?module-path=/a&pin-source=file:///b",
		"PKCS11:;;?&&",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyURI(s)
		if err != nil {
			if strings.Contains(strings.ToLower(s), "pin-value=") && strings.Contains(err.Error(), "pin-value=") {
				t.Errorf("error %q quotes a pin-value", err)
			}
			return
		}
		if k.ModulePath == "" || (k.Token == "" && k.Serial == "" && k.SlotID == nil) {
			t.Errorf("ParseKeyURI(%q) = %+v: accepted without module-path or token", s, k)
		}
		again, err := ParseKeyURI(k.String())
		if err != nil || !sameKeyURI(again, k) {
			t.Errorf("round trip of %q through %q = %+v, %v; want %+v", s, k.String(), again, err, k)
		}
	})
}
