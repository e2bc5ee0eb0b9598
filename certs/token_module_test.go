//go:build pkcs11 && cgo

package certs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// TestOpenTokenModuleDoesNotLoad: a module-path that is no library is
// refused at open (errModuleLoad), in the dynamic loader's words and with
// what to give instead.
func TestOpenTokenModuleDoesNotLoad(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libvendor-pkcs11.so")
	if err := os.WriteFile(lib, []byte(strings.Repeat("not a shared library\n", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := PKCS11{URI: "pkcs11:token=t?module-path=" + lib, ModulePath: lib, Token: "t", PIN: Passphrase{Value: []byte("1234")}}
	tok, err := OpenToken(cfg, zaptest.NewLogger(t))
	if err == nil {
		tok.Close()
		t.Fatal("OpenToken succeeded with a module-path that is no library")
	}
	if !errors.Is(err, errModuleLoad) {
		t.Errorf("error %v: want errModuleLoad", err)
	}
	for _, want := range []string{lib, "does not load as a PKCS#11 library: ", "ELF", "give module-path= the vendor's library", "FROM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
