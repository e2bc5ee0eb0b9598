package certs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startWatcher runs a Watcher over stores until the test ends.
func startWatcher(t testing.TB, opts WatchOptions, log *zap.Logger, stores ...*Store) *Watcher {
	t.Helper()
	w, err := NewWatcher(stores, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

func serialOf(s *Store) string {
	if c := s.Certificate(); c != nil {
		return Serial(c.Leaf)
	}
	return ""
}

func waitSerial(t testing.TB, s *Store, want *pki.Leaf) {
	t.Helper()
	poll.Until(t, "serial "+Serial(want.Cert), 5*time.Second, func() bool { return serialOf(s) == Serial(want.Cert) })
}

// writeAtomic writes data to a hidden temporary name and renames it into
// place, as careful tools do.
func writeAtomic(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, filepath.Dir(tmp), filepath.Base(tmp), data, mode)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// k8sWrite lays files out as the Kubernetes atomic writer does for a Secret
// volume: a timestamped folder, "..data" pointing at it (swapped by renaming
// "..data_tmp" over it), and visible names that are symlinks into "..data".
func k8sWrite(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	ts := fmt.Sprintf("..2026_11_28_21_00_00.%d", time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		write(t, filepath.Join(dir, ts), name, data, 0o600)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

var fastWatch = WatchOptions{Debounce: 20 * time.Millisecond, PollInterval: time.Hour}

// TestWatchWaysOfWriting: every way an operator or platform replaces the
// files is picked up, and the store presents the new certificate.
func TestWatchWaysOfWriting(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name string
		opts WatchOptions
		// setup writes the first pair; rotate replaces it with next.
		setup  func(t *testing.T, dir string, first *pki.Leaf)
		rotate func(t *testing.T, dir string, next *pki.Leaf)
	}{
		{"mv into place", fastWatch,
			func(t *testing.T, dir string, l *pki.Leaf) { l.WriteFiles(dir, "domain.pem", "domain.key") },
			func(t *testing.T, dir string, l *pki.Leaf) {
				// key first: the old certificate must keep working in between
				writeAtomic(t, filepath.Join(dir, "new.key"), l.KeyPEM, 0o600)
				writeAtomic(t, filepath.Join(dir, "new.pem"), l.CertPEM, 0o644)
			}},
		{"cp over existing files", fastWatch,
			func(t *testing.T, dir string, l *pki.Leaf) { l.WriteFiles(dir, "domain.pem", "domain.key") },
			func(t *testing.T, dir string, l *pki.Leaf) {
				write(t, dir, "domain.key", l.KeyPEM, 0o600)
				write(t, dir, "domain.pem", l.CertPEM, 0o644)
			}},
		{"editor save: rename away, create, delete backup", fastWatch,
			func(t *testing.T, dir string, l *pki.Leaf) {
				write(t, dir, "domain.pem", append(append([]byte{}, l.CertPEM...), l.KeyPEM...), 0o600)
			},
			func(t *testing.T, dir string, l *pki.Leaf) {
				p := filepath.Join(dir, "domain.pem")
				if err := os.Rename(p, p+"~"); err != nil {
					t.Fatal(err)
				}
				write(t, dir, "domain.pem", append(append([]byte{}, l.CertPEM...), l.KeyPEM...), 0o600)
				if err := os.Remove(p + "~"); err != nil {
					t.Fatal(err)
				}
			}},
		{"kubernetes secret volume", fastWatch,
			func(t *testing.T, dir string, l *pki.Leaf) {
				k8sWrite(t, dir, map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM})
			},
			func(t *testing.T, dir string, l *pki.Leaf) {
				k8sWrite(t, dir, map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM})
			}},
		{"symlinks into another folder", fastWatch,
			func(t *testing.T, dir string, l *pki.Leaf) {
				other := filepath.Join(filepath.Dir(dir), "real")
				os.Mkdir(other, 0o700)
				l.WriteFiles(other, "domain.pem", "domain.key")
				os.Symlink(filepath.Join(other, "domain.pem"), filepath.Join(dir, "domain.pem"))
				os.Symlink(filepath.Join(other, "domain.key"), filepath.Join(dir, "domain.key"))
			},
			func(t *testing.T, dir string, l *pki.Leaf) {
				other := filepath.Join(filepath.Dir(dir), "real")
				writeAtomic(t, filepath.Join(other, "domain.key"), l.KeyPEM, 0o600)
				writeAtomic(t, filepath.Join(other, "domain.pem"), l.CertPEM, 0o644)
			}},
		{"folder replaced wholesale (poll)", WatchOptions{Debounce: 20 * time.Millisecond, PollInterval: 100 * time.Millisecond},
			func(t *testing.T, dir string, l *pki.Leaf) { l.WriteFiles(dir, "domain.pem", "domain.key") },
			func(t *testing.T, dir string, l *pki.Leaf) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				l.WriteFiles(dir, "domain.pem", "domain.key")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			os.Mkdir(dir, 0o700)
			first := issue(t, ca, "first", pki.KeyECDSA, time.Now().Add(-2*time.Hour), time.Time{})
			tt.setup(t, dir, first)
			s := NewStore("live", Source{Dir: dir}, zap.NewNop())
			if serialOf(s) != Serial(first.Cert) {
				t.Fatalf("setup: serial %q, want %s (%v)", serialOf(s), Serial(first.Cert), s.Current().Findings)
			}
			startWatcher(t, tt.opts, zap.NewNop(), s)
			for i := range 3 { // repeated: watches must survive each rotation
				next := issue(t, ca, fmt.Sprintf("next-%d", i), pki.KeyECDSA, time.Now().Add(-time.Hour+time.Duration(i)*time.Minute), time.Time{})
				tt.rotate(t, dir, next)
				waitSerial(t, s, next)
			}
		})
	}
}

// TestWatchBadDrops: each bad drop keeps the old certificate, logs one
// error naming the file and cause, and a later good drop is picked up.
func TestWatchBadDrops(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	// Each drop is one atomic change (the Kubernetes layout), so that the
	// folder goes straight from the good state to the bad one.
	type files = map[string][]byte
	tests := []struct {
		name  string
		drop  func(good, next *pki.Leaf) files
		words []string // the error names these
	}{
		{"csr in place of the certificate", func(good, next *pki.Leaf) files {
			return files{"domain.pem": csrPEM(t, next), "domain.key": next.KeyPEM}
		}, []string{"domain.pem", "NO_START_LINE"}},
		{"half-written certificate", func(good, next *pki.Leaf) files {
			return files{"domain.pem": next.CertPEM[:len(next.CertPEM)-30], "domain.key": next.KeyPEM}
		}, []string{"domain.pem", "half-written"}},
		{"key that matches no certificate", func(good, next *pki.Leaf) files {
			return files{"domain.pem": next.CertPEM, "domain.key": good.KeyPEM}
		}, []string{"domain.key", "matches no certificate"}},
		{"wrong passphrase", func(good, next *pki.Leaf) files {
			return files{"domain.pem": next.CertPEM, "domain.key": encPKCS8(t, next, "not the configured one")}
		}, []string{"domain.key", "does not decrypt"}},
		{"expired certificate", func(good, next *pki.Leaf) files {
			old := issue(t, ca, "expired", pki.KeyECDSA, now.Add(-48*time.Hour), now.Add(-time.Hour))
			return files{"domain.pem": old.CertPEM, "domain.key": old.KeyPEM}
		}, []string{"domain.pem", "expired"}},
		{"not yet valid certificate", func(good, next *pki.Leaf) files {
			f := issue(t, ca, "future", pki.KeyECDSA, now.Add(24*time.Hour), now.Add(48*time.Hour))
			return files{"domain.pem": f.CertPEM, "domain.key": f.KeyPEM}
		}, []string{"domain.pem", "not valid before"}},
		{"empty folder", func(good, next *pki.Leaf) files { return files{} }, []string{"holds no files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			good := issue(t, ca, "good", pki.KeyECDSA, now.Add(-2*time.Hour), time.Time{})
			next := issue(t, ca, "next", pki.KeyECDSA, now.Add(-time.Hour), time.Time{})
			k8sWrite(t, dir, files{"domain.pem": good.CertPEM, "domain.key": good.KeyPEM})
			pass := write(t, t.TempDir(), "pass", []byte(testPass), 0o600)
			core, logs := observer.New(zapcore.InfoLevel)
			s := NewStore("live", Source{Dir: dir, Passphrase: Passphrase{File: pass}}, zap.New(core))
			startWatcher(t, fastWatch, zap.NewNop(), s)

			k8sWrite(t, dir, tt.drop(good, next))
			poll.Until(t, "a failed reload", 5*time.Second, func() bool { return s.Stats().Failed > 0 })
			if serialOf(s) != Serial(good.Cert) {
				t.Fatalf("after a bad drop the store presents %q, want the old %s", serialOf(s), Serial(good.Cert))
			}
			errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
			if len(errs) != 1 {
				t.Fatalf("%d error lines, want 1: %v", len(errs), errs)
			}
			msg := fmt.Sprint(errs[0].ContextMap()["error"])
			for _, w := range tt.words {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}

			// A good drop afterwards is picked up normally.
			k8sWrite(t, dir, files{"domain.pem": next.CertPEM, "domain.key": next.KeyPEM})
			waitSerial(t, s, next)
			if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
				t.Errorf("%d error lines in all, want still 1", n)
			}
		})
	}
}

// TestWatchTwoActiveCertificates: during a rotation both certificates are
// valid; the newer is used; removing it falls back to the older one.
func TestWatchTwoActiveCertificates(t *testing.T) {
	ca := newCA(t)
	older := issue(t, ca, "older", pki.KeyECDSA, time.Now().Add(-48*time.Hour), time.Time{})
	newer := issue(t, ca, "newer", pki.KeyECDSA, time.Now().Add(-time.Hour), time.Time{})
	dir := t.TempDir()
	older.WriteFiles(dir, "old.pem", "old.key")
	s := NewStore("live", Source{Dir: dir}, zap.NewNop())
	startWatcher(t, fastWatch, zap.NewNop(), s)
	newer.WriteFiles(dir, "new.pem", "new.key")
	waitSerial(t, s, newer)
	if n := len(s.Current().Pairs); n != 2 {
		t.Errorf("%d candidate pairs, want 2", n)
	}
	os.Remove(filepath.Join(dir, "new.pem"))
	waitSerial(t, s, older)
}

// TestWatchReloadAll: SIGHUP's path reloads at once, whatever the debounce.
func TestWatchReloadAll(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Now().Add(-2*time.Hour), time.Time{})
	b := issue(t, ca, "b", pki.KeyECDSA, time.Now().Add(-time.Hour), time.Time{})
	dir := t.TempDir()
	a.WriteFiles(dir, "domain.pem", "domain.key")
	s := NewStore("live", Source{Dir: dir}, zap.NewNop())
	w := startWatcher(t, WatchOptions{Debounce: time.Hour, PollInterval: time.Hour}, zap.NewNop(), s)
	b.WriteFiles(dir, "domain.pem", "domain.key")
	w.ReloadAll()
	waitSerial(t, s, b)
}

// TestWatchPerUpstream: one upstream's bad drop does not touch another's.
func TestWatchPerUpstream(t *testing.T) {
	ca := newCA(t)
	l1 := issue(t, ca, "one", pki.KeyECDSA, time.Time{}, time.Time{})
	l2 := issue(t, ca, "two", pki.KeyECDSA, time.Time{}, time.Time{})
	d1, d2 := t.TempDir(), t.TempDir()
	l1.WriteFiles(d1, "domain.pem", "domain.key")
	l2.WriteFiles(d2, "domain.pem", "domain.key")
	s1 := NewStore("live", Source{Dir: d1}, zap.NewNop())
	s2 := NewStore("staging", Source{Dir: d2}, zap.NewNop())
	startWatcher(t, fastWatch, zap.NewNop(), s1, s2)
	write(t, d1, "domain.pem", csrPEM(t, l1), 0o644)
	poll.Until(t, "the bad drop to be seen", 5*time.Second, func() bool { return s1.Stats().Failed > 0 })
	if s2.Stats().Failed != 0 || s2.Stats().LastAttempt.After(s1.Stats().LastAttempt) {
		t.Errorf("staging was reloaded by live's drop: %+v", s2.Stats())
	}
	if serialOf(s1) != Serial(l1.Cert) || serialOf(s2) != Serial(l2.Cert) {
		t.Error("a bad drop changed a certificate in use")
	}
}

// TestWatchNoLeaks: many reloads leak neither goroutines (goleak in
// TestMain) nor file descriptors.
func TestWatchNoLeaks(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	first := issue(t, ca, "first", pki.KeyECDSA, time.Now().Add(-2*time.Hour), time.Time{})
	first.WriteFiles(dir, "domain.pem", "domain.key")
	before := openFDs(t)
	s := NewStore("live", Source{Dir: dir}, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	w, err := NewWatcher([]*Store{s}, fastWatch, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for i := range 30 {
		l := issue(t, ca, fmt.Sprint("n", i), pki.KeyECDSA, time.Now().Add(-time.Hour+time.Duration(i)*time.Second), time.Time{})
		k8sWrite(t, dir, map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM})
		waitSerial(t, s, l)
	}
	if got := s.Stats().Swapped; got < 30 {
		t.Errorf("%d swaps, want at least 30", got)
	}
	cancel()
	<-done
	if after := openFDs(t); after > before {
		t.Errorf("%d open file descriptors after 30 reloads, %d before", after, before)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}
