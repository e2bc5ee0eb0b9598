package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
)

// TestPKCS11StaticBuildRefusesKeyURI: the default (static, cgo-less) binary
// refuses key_uri at start with exit 2 and names the pkcs11 flavour; so do
// check, token and csr with --key-uri. A PIN flag is refused in every build.
func TestPKCS11StaticBuildRefusesKeyURI(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "pin")
	mustWriteFile(t, pin, []byte("1234\n"), 0o600)
	uri := "pkcs11:token=payrails?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:" + pin
	t.Run("PIN flag", func(t *testing.T) {
		for _, args := range [][]string{{"check", "--cert-dir", dir, "--pin", "1234"}, {"serve", "--pkcs11-pin=1234"}} {
			code, _, errOut := runCLI(t, nil, args...)
			if code != exitUsage || !strings.Contains(errOut, "never taken from the command line") || !strings.Contains(errOut, "pin-source=file:") {
				t.Errorf("%v: exit %d, stderr %q; want 2 and advice", args, code, errOut)
			}
		}
	})
	if certs.PKCS11Built {
		t.Skip("this is the pkcs11 build; the refusal is the default build's")
	}
	for _, args := range [][]string{
		{"serve", "--upstream", "https://" + apiHost, "--cert-dir", dir, "--key-uri", uri, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
		{"check", "--cert-dir", dir, "--key-uri", uri},
		{"token", "--client-id", "cid", "--upstream", "https://" + apiHost, "--cert-dir", dir, "--key-uri", uri},
		{"csr", "--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme", "--env", "live",
			"--out-dir", dir, "--key-uri", strings.Replace(uri, "payrails", "payrails;object=k", 1)},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Setenv("PAYRAILS_CLIENT_SECRET", "s3cret")
			code, _, errOut := runCLI(t, nil, args...)
			if code != exitUsage || !strings.Contains(errOut, "-pkcs11") || !strings.Contains(errOut, "scripts/build.sh --pkcs11") {
				t.Errorf("exit %d, stderr %q; want exit 2 naming the pkcs11 flavour", code, errOut)
			}
		})
	}
}
