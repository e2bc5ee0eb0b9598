// Package softhsm makes a fresh SoftHSM2 token for a test: its own
// configuration and token folder in t.TempDir(), pointed at by
// SOFTHSM2_CONF for the rest of the test, initialised with
// softhsm2-util. Test support only. A machine without SoftHSM2 skips the
// test, or fails it under PAYRAILS_PROXY_REQUIRE_INTEROP=1 (internal/interop).
//
// SOFTHSM2_CONF is read when the library is initialised, so tests that use
// this package must not run in parallel, and must close every token they
// open (the library is finalised when its last user closes).
package softhsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// PIN and SOPIN are every test token's user and security officer PINs:
// words no output holds by chance, so that a test finding the PIN in what
// a command printed has found a leak. (A PIN of four digits turned up in a
// temporary folder's random name: TestPKCS11CheckAndToken failed so.)
const (
	PIN   = "user-pin-of-the-test-token"
	SOPIN = "so-pin-of-the-test-token"
)

// Token is a SoftHSM2 token made for one test.
type Token struct {
	Label   string
	Lib     string // the PKCS#11 library
	Dir     string // the token folder (directories.tokendir)
	Conf    string // the SOFTHSM2_CONF file
	PINFile string // holds PIN
}

// libs are where Debian and others put the library.
var libs = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Lib returns the SoftHSM2 library's path, skipping (or failing) the test
// where it is not installed.
func Lib(t testing.TB) string {
	t.Helper()
	for _, l := range libs {
		if _, err := os.Stat(l); err == nil {
			return l
		}
	}
	const how = "apt-get install -y softhsm2"
	if interop.Required() {
		t.Fatalf("libsofthsm2.so is required (%s=1) but not installed; install it: %s", interop.EnvRequire, how)
	}
	t.Skipf("SoftHSM2 not installed (%s); set %s=1 to make this a failure", how, interop.EnvRequire)
	return ""
}

// New makes a fresh token labelled label in its own SoftHSM2 folder and
// points SOFTHSM2_CONF at it for the rest of the test.
func New(t testing.TB, label string) *Token {
	t.Helper()
	lib := Lib(t)
	dir := t.TempDir()
	tk := &Token{Label: label, Lib: lib, Dir: filepath.Join(dir, "tokens"), Conf: filepath.Join(dir, "softhsm2.conf"),
		PINFile: filepath.Join(dir, "pin")}
	if err := os.Mkdir(tk.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tk.Dir)
	if err := os.WriteFile(tk.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tk.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tb, ok := t.(interface{ Setenv(k, v string) }); ok {
		tb.Setenv("SOFTHSM2_CONF", tk.Conf)
	} else {
		t.Fatal("softhsm.New needs a *testing.T or *testing.B")
	}
	tk.Util(t, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	return tk
}

// Util runs softhsm2-util with this token's configuration.
func (tk *Token) Util(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(interop.Tool(t, "softhsm2-util"), args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tk.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Tool runs pkcs11-tool (OpenSC) against this token's library, logged in.
func (tk *Token) Tool(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"--module", tk.Lib, "--token-label", tk.Label, "--login", "--pin", PIN}, args...)
	cmd := exec.Command(interop.Tool(t, "pkcs11-tool"), full...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tk.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// URI is the token's key_uri with the PIN from PINFile; object names one
// key ("" for the token).
func (tk *Token) URI(object string) string {
	u := "pkcs11:token=" + tk.Label
	if object != "" {
		u += ";object=" + object
	}
	return u + "?module-path=" + tk.Lib + "&pin-source=file:" + tk.PINFile
}
