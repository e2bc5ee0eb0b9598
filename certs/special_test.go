package certs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

// loadWithin runs Load and fails the test when it does not return within
// a few seconds (it blocked on a file).
func loadWithin(t *testing.T, src Source) *Snapshot {
	t.Helper()
	done := make(chan *Snapshot, 1)
	go func() { done <- Load(src, time.Now()) }()
	select {
	case s := <-done:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("Load(%s) still runs after 5 s: it blocked on a file", src)
		return nil
	}
}

// TestSpecialFilesNeverBlock (issue 22, item 10): a FIFO in place of the
// key file, of the passphrase file, or in the folder is reported and never
// waited on; a valid file put back is used at the next load.
func TestSpecialFilesNeverBlock(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Time{}, time.Time{})
	mkfifo := func(p string) {
		t.Helper()
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("key file", func(t *testing.T) {
		dir := t.TempDir()
		cert := write(t, dir, "domain.pem", a.CertPEM, 0o644)
		key := filepath.Join(dir, "domain.key")
		mkfifo(key)
		snap := loadWithin(t, Source{CertFile: cert, KeyFile: key})
		if snap.Chosen != nil {
			t.Fatal("a pair was chosen without a key")
		}
		f, ok := findFinding(snap, CodeUnreadable)
		if !ok {
			t.Fatalf("no finding for the FIFO: %v", findingCodes(snap))
		}
		mustContain(t, f.Message, "FIFO")
		os.Remove(key)
		write(t, dir, "domain.key", a.KeyPEM, 0o600)
		if snap := loadWithin(t, Source{CertFile: cert, KeyFile: key}); snap.Chosen == nil {
			t.Errorf("the key put back was not used: %v", findingCodes(snap))
		}
	})
	t.Run("passphrase file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "domain.pem", a.CertPEM, 0o644)
		write(t, dir, "domain.key", legacyEncrypted(t, a, testPass), 0o600)
		pass := filepath.Join(t.TempDir(), "passphrase")
		mkfifo(pass)
		snap := loadWithin(t, Source{Dir: dir, Passphrase: Passphrase{File: pass}})
		if snap.Chosen != nil {
			t.Error("a pair was chosen without its passphrase")
		}
	})
	t.Run("folder", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "domain.pem", a.CertPEM, 0o644)
		write(t, dir, "domain.key", a.KeyPEM, 0o600)
		mkfifo(filepath.Join(dir, "stray.key"))
		snap := loadWithin(t, Source{Dir: dir})
		if snap.Chosen == nil {
			t.Errorf("a stray FIFO kept the folder's pair from being used: %v", findingCodes(snap))
		}
		if _, ok := findFinding(snap, CodeNotRegular); !ok {
			t.Errorf("the stray FIFO is not reported: %v", findingCodes(snap))
		}
	})
}

// TestPassphrasePermissionsWarning (issue 22, item 7): a passphrase file
// readable by others gets a warning, as a key file does.
func TestPassphrasePermissionsWarning(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Time{}, time.Time{})
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o644, true}} {
		dir := t.TempDir()
		write(t, dir, "domain.pem", a.CertPEM, 0o644)
		write(t, dir, "domain.key", legacyEncrypted(t, a, testPass), 0o600)
		pass := write(t, t.TempDir(), "passphrase", []byte(testPass+"\n"), tt.mode)
		snap := Load(Source{Dir: dir, Passphrase: Passphrase{File: pass}}, time.Now())
		if snap.Chosen == nil {
			t.Fatalf("mode %04o: no pair chosen: %v", tt.mode, findingCodes(snap))
		}
		f, got := findFinding(snap, CodeSecretPermissions)
		if got != tt.warn {
			t.Errorf("mode %04o: permission finding %v (%q), want %v", tt.mode, got, f.Message, tt.warn)
		}
		if got {
			mustContain(t, f.Message, "chmod 600")
		}
	}
}
