package certs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestStoreReload(t *testing.T) {
	ca := newCA(t)
	first := issue(t, ca, "first", pki.KeyECDSA, time.Now().Add(-2*time.Hour), time.Time{})
	second := issue(t, ca, "second", pki.KeyECDSA, time.Now().Add(-time.Hour), time.Time{})
	dir := t.TempDir()
	write(t, dir, "domain.pem", first.CertPEM, 0o644)
	write(t, dir, "domain.key", first.KeyPEM, 0o600)
	core, logs := observer.New(zapcore.DebugLevel)
	s := NewStore("live", Source{Dir: dir}, zap.New(core))

	cert := s.Certificate()
	if cert == nil || cert.Leaf.Subject.CommonName != "first" {
		t.Fatalf("initial certificate %v, want first", cert)
	}
	if n := logs.FilterMessage("client certificate loaded").Len(); n != 1 {
		t.Errorf("%d 'loaded' lines, want 1", n)
	}

	// Unchanged content: same pointer, nothing logged.
	before := logs.Len()
	if res, err := s.Reload(); res != ResultUnchanged || err != nil {
		t.Fatalf("reload = %s, %v; want unchanged", res, err)
	}
	if s.Certificate() != cert {
		t.Error("unchanged reload published a new *tls.Certificate")
	}
	if logs.Len() != before {
		t.Errorf("unchanged reload logged %v", logs.All()[before:])
	}

	// A bad drop (the CSR over the certificate) keeps the old one, logs once.
	write(t, dir, "domain.pem", csrPEM(t, first), 0o644)
	for i := 0; i < 3; i++ {
		if res, _ := s.Reload(); res != ResultFailed {
			t.Fatalf("reload of a CSR = %s, want failed", res)
		}
	}
	if s.Certificate() != cert {
		t.Error("a bad drop replaced the certificate")
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d error lines for one bad drop, want 1: %v", n, logs.All())
	}
	if st := s.Stats(); st.Failed != 3 || st.LastResult != ResultFailed || st.LastError == "" {
		t.Errorf("stats %+v, want 3 failures", st)
	}

	// A good drop swaps and says old and new serial.
	write(t, dir, "domain.pem", second.CertPEM, 0o644)
	write(t, dir, "domain.key", second.KeyPEM, 0o600)
	if res, err := s.Reload(); res != ResultSwapped || err != nil {
		t.Fatalf("reload = %s, %v; want swapped", res, err)
	}
	if got := s.Certificate(); got == nil || got.Leaf.Subject.CommonName != "second" {
		t.Fatalf("certificate after swap %v, want second", got)
	}
	checkSwapLine(t, logs, first, second)
}

// checkSwapLine checks that one swap from old to next was logged, with
// both serials, fingerprints and not-after times, and the reason.
func checkSwapLine(t *testing.T, logs *observer.ObservedLogs, old, next *pki.Leaf) {
	t.Helper()
	swaps := logs.FilterMessageSnippet("swapped").All()
	if len(swaps) != 1 {
		t.Fatalf("%d swap lines, want 1", len(swaps))
	}
	fields := swaps[0].ContextMap()
	if fields[fieldOldSerial] != Serial(old.Cert) || fields[fieldSerial] != Serial(next.Cert) {
		t.Errorf("swap line fields %v, want old %s new %s", fields, Serial(old.Cert), Serial(next.Cert))
	}
	for _, k := range []string{fieldFingerprint, fieldOldFingerprint, fieldNotAfter, fieldOldNotAfter, fieldReason} {
		if _, ok := fields[k]; !ok {
			t.Errorf("swap line lacks %q", k)
		}
	}
}

func TestStoreStartsWithoutCertificate(t *testing.T) {
	dir := t.TempDir()
	s := NewStore("live", Source{Dir: dir}, zap.NewNop())
	if s.Certificate() != nil {
		t.Fatal("certificate from an empty folder")
	}
	if err := s.Current().Err(); err == nil {
		t.Fatal("no error for an empty folder")
	}
	ca := newCA(t)
	l := issue(t, ca, "late", pki.KeyECDSA, time.Time{}, time.Time{})
	if _, _, err := l.WriteFiles(dir, "c.pem", "k.pem"); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Reload(); res != ResultSwapped || err != nil {
		t.Fatalf("reload = %s, %v", res, err)
	}
}

func TestStoreExpiryAtRuntime(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	l := issue(t, ca, "short", pki.KeyECDSA, now.Add(-time.Hour), now.Add(time.Hour))
	dir := t.TempDir()
	if _, _, err := l.WriteFiles(dir, "c.pem", "k.pem"); err != nil {
		t.Fatal(err)
	}
	clock := now
	s := NewStore("live", Source{Dir: dir}, zap.NewNop(), WithClock(func() time.Time { return clock }))
	if s.Certificate() == nil {
		t.Fatal("no certificate while valid")
	}
	clock = now.Add(2 * time.Hour)
	if s.Certificate() != nil {
		t.Fatal("an expired certificate is still presented")
	}
}

// FuzzLoadFolder: arbitrary file contents next to a good pair never panic,
// and never stop the good pair from being chosen.
func FuzzLoadFolder(f *testing.F) {
	ca := newCA(f)
	good := issue(f, ca, "good", pki.KeyECDSA, time.Time{}, time.Time{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n"))
	f.Add(good.CertPEM[:40])
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		write(t, dir, "domain.pem", good.CertPEM, 0o644)
		write(t, dir, "domain.key", good.KeyPEM, 0o600)
		p := filepath.Join(dir, "fuzz.pem")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		snap := Load(Source{Dir: dir, Passphrase: Passphrase{Value: []byte("x")}}, time.Now())
		if snap.Chosen == nil || snap.Chosen.Leaf.Subject.CommonName != "good" {
			t.Fatalf("good pair not chosen next to %q: %v", data, snap.Findings)
		}
	})
}

// TestExpiryWarningDaily: a certificate expiring within 30 days is warned
// about at start and again each day (the periodic re-read), not on every
// re-read.
func TestExpiryWarningDaily(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	l := issue(t, ca, "soon", pki.KeyECDSA, now.Add(-time.Hour), now.Add(10*24*time.Hour))
	dir := t.TempDir()
	l.WriteFiles(dir, "domain.pem", "domain.key")
	core, logs := observer.New(zapcore.InfoLevel)
	clock := now
	s := NewStore("live", Source{Dir: dir}, zap.New(core), WithClock(func() time.Time { return clock }))
	warnings := func() int { return logs.FilterField(zap.String(fieldCode, string(CodeExpiresSoon))).Len() }
	if warnings() != 1 {
		t.Fatalf("%d expiry warnings at start, want 1", warnings())
	}
	for _, step := range []struct {
		after time.Duration
		want  int
	}{{time.Minute, 1}, {time.Hour, 1}, {25 * time.Hour, 2}, {26 * time.Hour, 2}, {49 * time.Hour, 3}} {
		clock = now.Add(step.after)
		s.Reload()
		if got := warnings(); got != step.want {
			t.Errorf("after %s: %d expiry warnings, want %d", step.after, got, step.want)
		}
	}
	if notes := s.Notes(); len(notes) != 1 {
		t.Errorf("readiness notes %v, want the expiry", notes)
	}
}
