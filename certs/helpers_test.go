package certs

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/youmark/pkcs8"
)

const testPass = "correct horse battery staple"

func newCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a client certificate valid from nb to na (zero: an hour ago
// for a year).
func issue(t testing.TB, ca *pki.CA, cn string, kt pki.KeyType, nb, na time.Time) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(pki.LeafOptions{CommonName: cn, KeyType: kt, NotBefore: nb, NotAfter: na, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func write(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is filtered by umask
		t.Fatal(err)
	}
	return p
}

func traditional(t testing.TB, l *pki.Leaf) []byte {
	t.Helper()
	b, err := pki.EncodeKeyTraditional(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacyEncrypted writes the key as "Proc-Type: 4,ENCRYPTED" PEM, what
// `openssl rsa -aes256 -traditional` writes.
func legacyEncrypted(t testing.TB, l *pki.Leaf, pass string) []byte {
	t.Helper()
	blk, _ := pem.Decode(traditional(t, l))
	//lint:ignore SA1019 the format under test.
	enc, err := x509.EncryptPEMBlock(rand.Reader, blk.Type, blk.Bytes, []byte(pass), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(enc)
}

// encPKCS8 writes "ENCRYPTED PRIVATE KEY" with PBES2, PBKDF2-SHA256 and
// AES-256-CBC, what OpenSSL 3 writes without -nodes.
func encPKCS8(t testing.TB, l *pki.Leaf, pass string) []byte {
	t.Helper()
	der, err := pkcs8.MarshalPrivateKey(l.Key, []byte(pass), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
}

func csrPEM(t testing.TB, l *pki.Leaf) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: l.Cert.Subject}, l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func findingCodes(s *Snapshot) []Code {
	var out []Code
	for _, f := range s.Findings {
		out = append(out, f.Code)
	}
	return out
}

func findFinding(s *Snapshot, c Code) (Finding, bool) {
	for _, f := range s.Findings {
		if f.Code == c {
			return f, true
		}
	}
	return Finding{}, false
}

func mustContain(t testing.TB, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("message %q\n does not contain %q", got, w)
		}
	}
}
