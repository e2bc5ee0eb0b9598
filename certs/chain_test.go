package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"go.uber.org/zap"
)

// newIntermediate makes a CA certificate signed by root, as an issuing CA
// below Payrails' root would be, and returns it as a pki.CA.
func newIntermediate(t testing.TB, root *pki.CA, cn string) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, &key.PublicKey, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: key, CertPEM: pki.EncodeCert(der)}
}

// TestIntermediateInFolder: a separate intermediate certificate file in
// the folder is sent after the leaf it issued (matched by issuer name, key
// identifier and signature), not reported as a CA bundle and ignored; a root
// is never sent; an intermediate of another issuer is not taken.
func TestIntermediateInFolder(t *testing.T) {
	root := newCA(t)
	inter := newIntermediate(t, root, "Payrails Issuing CA")
	other := newIntermediate(t, root, "Payrails Issuing CA") // same name, other key
	leaf := issue(t, inter, "api.acme.payrails.io", pki.KeyECDSA, time.Time{}, time.Time{})
	dir := t.TempDir()
	write(t, dir, "domain.pem", leaf.CertPEM, 0o644)
	write(t, dir, "domain.key", leaf.KeyPEM, 0o600)
	write(t, dir, "intermediate.pem", inter.CertPEM, 0o644)
	write(t, dir, "other-intermediate.pem", other.CertPEM, 0o644)
	write(t, dir, "root.pem", root.CertPEM, 0o644)

	snap := Load(Source{Dir: dir}, time.Now())
	if err := snap.Err(); err != nil {
		t.Fatal(err)
	}
	chain := snap.Chosen.Certificate.Certificate
	if len(chain) != 2 || string(chain[1]) != string(inter.Cert.Raw) {
		t.Fatalf("chain has %d certificates, want the leaf then the intermediate that issued it", len(chain))
	}
	if d := snap.Describe()[0]; len(d.Chain) != 1 || d.Chain[0] != "CN=Payrails Issuing CA" {
		t.Errorf("Description.Chain = %q, want the intermediate's subject", d.Chain)
	}
	codes := map[string]Code{}
	for _, f := range snap.Findings {
		codes[f.Path[len(dir)+1:]] = f.Code
	}
	if codes["intermediate.pem"] != CodeChain {
		t.Errorf("intermediate.pem: finding %q, want %q (findings %v)", codes["intermediate.pem"], CodeChain, snap.Findings)
	}
	if codes["root.pem"] != CodeCABundle || codes["other-intermediate.pem"] != CodeCABundle {
		t.Errorf("root.pem %q, other-intermediate.pem %q: want both reported as CA certificates not sent", codes["root.pem"], codes["other-intermediate.pem"])
	}
	// The chain verifies from the root, as the server will verify it.
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	inters := x509.NewCertPool()
	inters.AddCert(mustParse(t, chain[1]))
	if _, err := snap.Chosen.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the chain sent does not verify: %v", err)
	}

	t.Run("dropping the intermediate later swaps the chain", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "domain.pem", leaf.CertPEM, 0o644)
		write(t, dir, "domain.key", leaf.KeyPEM, 0o600)
		s := NewStore("live", Source{Dir: dir}, zap.NewNop())
		if n := len(s.Certificate().Certificate); n != 1 {
			t.Fatalf("chain of %d before the intermediate is dropped", n)
		}
		write(t, dir, "intermediate.pem", inter.CertPEM, 0o644)
		if res, err := s.Reload(); res != ResultSwapped || err != nil || len(s.Certificate().Certificate) != 2 {
			t.Errorf("Reload = %s, %v, chain %d; want swapped to a chain of 2", res, err, len(s.Certificate().Certificate))
		}
	})
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
