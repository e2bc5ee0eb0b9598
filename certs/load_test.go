package certs

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"software.sslmate.com/src/go-pkcs12"
)

// TestKeyFormats loads one certificate with its key written in every format
// we promise to read, with the right, a wrong and no passphrase.
func TestKeyFormats(t *testing.T) {
	ca := newCA(t)
	rsaLeaf := issue(t, ca, "rsa", pki.KeyRSA2048, time.Time{}, time.Time{})
	ecLeaf := issue(t, ca, "ec", pki.KeyECDSA, time.Time{}, time.Time{})
	edLeaf := issue(t, ca, "ed", pki.KeyEd25519, time.Time{}, time.Time{})
	p12, err := pkcs12.Modern.Encode(ecLeaf.Key, ecLeaf.Cert, []*x509.Certificate{ca.Cert}, testPass)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		leaf     *pki.Leaf
		key      []byte // nil: the PKCS#12 bundle carries both
		pass     string
		wantCode Code // "" means the pair must load
		wantKind Kind
	}{
		{"pkcs1 rsa", rsaLeaf, traditional(t, rsaLeaf), "", "", KindKey},
		{"pkcs8 rsa", rsaLeaf, rsaLeaf.KeyPEM, "", "", KindKey},
		{"sec1 ecdsa", ecLeaf, traditional(t, ecLeaf), "", "", KindKey},
		{"pkcs8 ecdsa", ecLeaf, ecLeaf.KeyPEM, "", "", KindKey},
		{"pkcs8 ed25519", edLeaf, edLeaf.KeyPEM, "", "", KindKey},
		{"legacy encrypted rsa", rsaLeaf, legacyEncrypted(t, rsaLeaf, testPass), testPass, "", KindEncryptedKey},
		{"legacy encrypted ecdsa", ecLeaf, legacyEncrypted(t, ecLeaf, testPass), testPass, "", KindEncryptedKey},
		{"encrypted pkcs8 rsa", rsaLeaf, encPKCS8(t, rsaLeaf, testPass), testPass, "", KindEncryptedKey},
		{"encrypted pkcs8 ecdsa", ecLeaf, encPKCS8(t, ecLeaf, testPass), testPass, "", KindEncryptedKey},
		{"encrypted pkcs8 ed25519", edLeaf, encPKCS8(t, edLeaf, testPass), testPass, "", KindEncryptedKey},
		{"legacy encrypted, wrong passphrase", rsaLeaf, legacyEncrypted(t, rsaLeaf, testPass), "wrong", CodePassphraseWrong, KindEncryptedKey},
		{"encrypted pkcs8, wrong passphrase", ecLeaf, encPKCS8(t, ecLeaf, testPass), "wrong", CodePassphraseWrong, KindEncryptedKey},
		{"legacy encrypted, no passphrase", ecLeaf, legacyEncrypted(t, ecLeaf, testPass), "", CodePassphraseMissing, KindEncryptedKey},
		{"encrypted pkcs8, no passphrase", ecLeaf, encPKCS8(t, ecLeaf, testPass), "", CodePassphraseMissing, KindEncryptedKey},
		{"pkcs12", ecLeaf, nil, testPass, "", KindPKCS12},
		{"pkcs12, wrong passphrase", ecLeaf, nil, "wrong", CodePassphraseWrong, KindPKCS12},
		{"pkcs12, no passphrase", ecLeaf, nil, "", CodePassphraseMissing, KindPKCS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var keyPath string
			if tt.key != nil {
				keyPath = write(t, dir, "domain.key", tt.key, 0o600)
				write(t, dir, "domain.pem", tt.leaf.CertPEM, 0o644)
			} else {
				keyPath = write(t, dir, "bundle.p12", p12, 0o600)
			}
			passFile := write(t, t.TempDir(), "pass", []byte(tt.pass+"\n"), 0o600)
			src := Source{Dir: dir}
			if tt.pass != "" {
				src.Passphrase = Passphrase{File: passFile}
			}
			snap := Load(src, time.Now())
			if kind := fileKind(snap, keyPath); kind != tt.wantKind {
				t.Errorf("kind of %s = %q, want %q", filepath.Base(keyPath), kind, tt.wantKind)
			}
			if tt.wantCode == "" {
				if snap.Chosen == nil {
					t.Fatalf("no pair chosen; findings: %v", snap.Findings)
				}
				if got, want := snap.Chosen.Serial, Serial(tt.leaf.Cert); got != want {
					t.Errorf("chosen serial = %s, want %s", got, want)
				}
				return
			}
			if snap.Chosen != nil {
				t.Fatalf("a pair was chosen, want failure %s", tt.wantCode)
			}
			if _, ok := findFinding(snap, tt.wantCode); !ok {
				t.Errorf("findings %v do not include %s", findingCodes(snap), tt.wantCode)
			}
			if !errors.Is(snap.Err(), ErrNoValidCertificate) {
				t.Errorf("Err() = %v, want ErrNoValidCertificate", snap.Err())
			}
		})
	}
}

func fileKind(s *Snapshot, path string) Kind {
	for _, f := range s.Files {
		if f.Path == path {
			return f.Kind
		}
	}
	return ""
}

// TestPairingIgnoresNames: certificates and keys pair by public key, not by
// file name, even when the names say the opposite.
func TestPairingIgnoresNames(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Time{}, time.Time{})
	b := issue(t, ca, "b", pki.KeyECDSA, time.Now().Add(-time.Minute), time.Time{})
	dir := t.TempDir()
	write(t, dir, "a.key", b.CertPEM, 0o644)    // b's certificate, named like a's key
	write(t, dir, "b.pem", a.KeyPEM, 0o600)     // a's key, named like b's certificate
	write(t, dir, "cert.pem", a.CertPEM, 0o644) // a's certificate
	write(t, dir, "zz.txt", b.KeyPEM, 0o600)    // b's key
	snap := Load(Source{Dir: dir}, time.Now())
	if len(snap.Pairs) != 2 {
		t.Fatalf("got %d pairs, want 2; findings %v", len(snap.Pairs), snap.Findings)
	}
	byCN := map[string]*Pair{}
	for _, p := range snap.Pairs {
		byCN[p.Leaf.Subject.CommonName] = p
	}
	if p := byCN["a"]; p == nil || filepath.Base(p.CertFile) != "cert.pem" || filepath.Base(p.KeyFile) != "b.pem" {
		t.Errorf("pair a = %+v, want cert.pem + b.pem", p)
	}
	if p := byCN["b"]; p == nil || filepath.Base(p.CertFile) != "a.key" || filepath.Base(p.KeyFile) != "zz.txt" {
		t.Errorf("pair b = %+v, want a.key + zz.txt", p)
	}
	if got := snap.Chosen.Leaf.Subject.CommonName; got != "b" {
		t.Errorf("chosen %q, want b (latest NotBefore)", got)
	}
}

// TestSelection covers the rule of DESIGN.md: the latest NotBefore among
// valid pairs; never an expired or not-yet-valid one while a valid one exists.
func TestSelection(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	old := issue(t, ca, "old", pki.KeyECDSA, now.Add(-48*time.Hour), now.Add(365*24*time.Hour))
	newer := issue(t, ca, "newer", pki.KeyECDSA, now.Add(-time.Hour), now.Add(300*24*time.Hour))
	expired := issue(t, ca, "expired", pki.KeyECDSA, now.Add(-10*time.Hour), now.Add(-time.Minute))
	future := issue(t, ca, "future", pki.KeyECDSA, now.Add(time.Hour), now.Add(400*24*time.Hour))
	soon := issue(t, ca, "soon", pki.KeyECDSA, now.Add(-time.Minute), now.Add(10*24*time.Hour))
	tests := []struct {
		name    string
		leaves  []*pki.Leaf
		want    string // "" means none
		wantErr Code
	}{
		{"two valid: newer wins", []*pki.Leaf{old, newer}, "newer", ""},
		{"expired is never chosen, even if newest", []*pki.Leaf{old, expired}, "old", ""},
		{"not yet valid is never chosen", []*pki.Leaf{old, future}, "old", ""},
		{"only expired", []*pki.Leaf{expired}, "", CodeExpired},
		{"only not yet valid", []*pki.Leaf{future}, "", CodeNotYetValid},
		{"expiring soon is used, with a warning", []*pki.Leaf{soon}, "soon", CodeExpiresSoon},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, l := range tt.leaves {
				write(t, dir, l.Cert.Subject.CommonName+".pem", append(slices.Clone(l.CertPEM), l.KeyPEM...), 0o600)
			}
			snap := Load(Source{Dir: dir}, now)
			got := ""
			if snap.Chosen != nil {
				got = snap.Chosen.Leaf.Subject.CommonName
			}
			if got != tt.want {
				t.Errorf("chosen %q, want %q (findings %v)", got, tt.want, snap.Findings)
			}
			if tt.wantErr != "" {
				if _, ok := findFinding(snap, tt.wantErr); !ok {
					t.Errorf("findings %v lack %s", findingCodes(snap), tt.wantErr)
				}
			}
			if tt.want != "" && snap.Reason == "" {
				t.Error("no reason given for the choice")
			}
		})
	}
}

// TestCSRInPlaceOfCertificate: Payrails' most common mistake gets the
// explanation in the operator's words, in both source forms.
func TestCSRInPlaceOfCertificate(t *testing.T) {
	ca := newCA(t)
	l := issue(t, ca, "api.acme.payrails.io", pki.KeyECDSA, time.Time{}, time.Time{})
	t.Run("cert file", func(t *testing.T) {
		dir := t.TempDir()
		c := write(t, dir, "domain.pem", csrPEM(t, l), 0o644)
		k := write(t, dir, "domain.key", l.KeyPEM, 0o600)
		snap := Load(Source{CertFile: c, KeyFile: k}, time.Now())
		f, ok := findFinding(snap, CodeCSR)
		if !ok || f.Severity != Error {
			t.Fatalf("finding %+v, want an error about a CSR", f)
		}
		mustContain(t, snap.Err().Error(), "domain.pem", "certificate signing request", "NO_START_LINE", "dashboard", "domain.csr")
	})
	t.Run("folder", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "domain.pem", csrPEM(t, l), 0o644)
		write(t, dir, "domain.key", l.KeyPEM, 0o600)
		snap := Load(Source{Dir: dir}, time.Now())
		mustContain(t, snap.Err().Error(), "NO_START_LINE", "Step 1")
	})
	t.Run("csr kept next to a good pair is only noted", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "domain.csr", csrPEM(t, l), 0o644)
		write(t, dir, "domain.pem", l.CertPEM, 0o644)
		write(t, dir, "domain.key", l.KeyPEM, 0o600)
		snap := Load(Source{Dir: dir}, time.Now())
		if f, _ := findFinding(snap, CodeCSR); snap.Chosen == nil || f.Severity != Info {
			t.Errorf("chosen %v, CSR finding %+v; want a pair and an info note", snap.Chosen, f)
		}
	})
}

// TestBrokenFolders: each broken drop is reported by file name with its cause.
func TestBrokenFolders(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Time{}, time.Time{})
	b := issue(t, ca, "b", pki.KeyECDSA, time.Time{}, time.Time{})
	tests := []struct {
		name  string
		files map[string][]byte
		want  Code
		file  string
	}{
		{"empty folder", map[string][]byte{}, CodeEmptyDir, ""},
		{"half-written certificate", map[string][]byte{"domain.pem": a.CertPEM[:len(a.CertPEM)/2], "domain.key": a.KeyPEM}, CodeTruncated, "domain.pem"},
		{"key of another certificate", map[string][]byte{"domain.pem": a.CertPEM, "domain.key": b.KeyPEM}, CodeKeyUnmatched, "domain.key"},
		{"certificate without key", map[string][]byte{"domain.pem": a.CertPEM}, CodeCertUnmatched, "domain.pem"},
		{"empty file", map[string][]byte{"domain.pem": {}, "domain.key": a.KeyPEM}, CodeEmptyFile, "domain.pem"},
		{"garbage", map[string][]byte{"domain.pem": []byte("hello\x00\x01"), "domain.key": a.KeyPEM}, CodeUnrecognised, "domain.pem"},
		{"ca bundle only", map[string][]byte{"ca.pem": ca.CertPEM}, CodeCABundle, "ca.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, d := range tt.files {
				write(t, dir, n, d, 0o600)
			}
			snap := Load(Source{Dir: dir}, time.Now())
			if snap.Chosen != nil {
				t.Fatalf("chose %s, want none", snap.Chosen.CertFile)
			}
			f, ok := findFinding(snap, tt.want)
			if !ok {
				t.Fatalf("findings %v lack %s", findingCodes(snap), tt.want)
			}
			if tt.file != "" && filepath.Base(f.Path) != tt.file {
				t.Errorf("finding names %s, want %s", f.Path, tt.file)
			}
			if f.Severity >= Warning {
				mustContain(t, snap.Err().Error(), filepath.Base(f.Path))
			}
		})
	}
}

func TestKeyPermissionsWarning(t *testing.T) {
	ca := newCA(t)
	a := issue(t, ca, "a", pki.KeyECDSA, time.Time{}, time.Time{})
	const none = Severity(-1)
	for _, tt := range []struct {
		name      string
		mode      os.FileMode
		otherGrp  bool // chown the key to a group this process is not in
		want      Severity
		wantWords string
	}{
		{"owner only", 0o600, false, none, ""},
		{"owner read-only", 0o400, false, none, ""},
		{"world-readable", 0o644, false, Warning, "chmod 600"},
		{"group-readable, our group (Kubernetes fsGroup)", 0o640, false, Info, "fsGroup"},
		{"group-readable, another group", 0o640, true, Warning, "chmod 600"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "domain.pem", a.CertPEM, 0o644)
			key := write(t, dir, "domain.key", a.KeyPEM, tt.mode)
			if tt.otherGrp {
				if err := os.Chown(key, -1, 4242); err != nil || groupIsOursPath(key) {
					t.Skipf("cannot give the key another group here (%v); runs as root in CI", err)
				}
			}
			snap := Load(Source{Dir: dir}, time.Now())
			f, got := findFinding(snap, CodeKeyPermissions)
			switch {
			case tt.want == none && got:
				t.Errorf("unexpected finding %q", f.Message)
			case tt.want != none && !got:
				t.Errorf("no key-permission finding for mode %04o", tt.mode)
			case got && f.Severity != tt.want:
				t.Errorf("severity %s, want %s: %s", f.Severity, tt.want, f.Message)
			case got:
				mustContain(t, f.Message, tt.wantWords)
			}
		})
	}
}

func groupIsOursPath(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().Perm()&0o070 != 0 && safefile.ExposureOf(st) == safefile.OwnGroup
}

// TestPKCS12RoundTrip checks a bundle with a chain keeps the chain.
func TestPKCS12Chain(t *testing.T) {
	ca := newCA(t)
	l := issue(t, ca, "p12", pki.KeyRSA2048, time.Time{}, time.Time{})
	data, err := pkcs12.Modern.Encode(l.Key, l.Cert, []*x509.Certificate{ca.Cert}, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, dir, "client.p12", data, 0o600)
	snap := Load(Source{Dir: dir}, time.Now())
	if snap.Chosen == nil {
		t.Fatalf("no pair: %v", snap.Findings)
	}
	if n := len(snap.Chosen.Certificate.Certificate); n != 2 {
		t.Errorf("chain length %d, want 2", n)
	}
}
