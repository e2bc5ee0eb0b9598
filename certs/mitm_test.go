package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

func mitmCA(t *testing.T, hosts ...string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := NewMITMCA(hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestNewMITMCA(t *testing.T) {
	ca := mitmCA(t, "api.acme.payrails.io", "acme-api.staging.payrails.io")
	c := ca.Leaf
	if !c.IsCA || !c.MaxPathLenZero || !c.PermittedDNSDomainsCritical || len(c.ExcludedIPRanges) != 2 {
		t.Errorf("CA %+v lacks its constraints", c)
	}
	if got := fmt.Sprint(c.PermittedDNSDomains); got != "[api.acme.payrails.io acme-api.staging.payrails.io]" {
		t.Errorf("permitted %s", got)
	}
	for _, bad := range [][]string{nil, {"10.0.0.1"}, {"*.acme.io"}, {""}} {
		if _, _, err := NewMITMCA(bad, time.Now()); err == nil {
			t.Errorf("NewMITMCA(%q) accepted", bad)
		}
	}
	// The key is PKCS#8, which Load reads.
	_, keyPEM, _ := NewMITMCA([]string{"a.test"}, time.Now())
	if b, _ := pem.Decode(keyPEM); b.Type != "PRIVATE KEY" {
		t.Errorf("key block %q", b.Type)
	}
}

func TestMinter(t *testing.T) {
	var ca atomic.Pointer[tls.Certificate]
	ca.Store(mitmCA(t, "a.test", "b.test", "c.test"))
	m := NewMinter(ca.Load, 24*time.Hour, 2)
	get := func(h string) *tls.Certificate {
		t.Helper()
		c, err := m.Certificate(h)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Load().Leaf)
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
			t.Errorf("leaf for %s does not verify: %v", h, err)
		}
		return c
	}
	a := get("a.test")
	if get("a.test") != a || m.Signatures() != 1 {
		t.Errorf("the cached leaf was not reused (%d signatures)", m.Signatures())
	}
	get("b.test")
	get("c.test") // evicts a.test (size 2)
	if get("a.test") == a || m.Signatures() != 4 {
		t.Errorf("LRU: %d signatures, want 4", m.Signatures())
	}
	ca.Store(mitmCA(t, "a.test", "b.test", "c.test")) // a new CA: new leaves
	if b := get("b.test"); b.Leaf.CheckSignatureFrom(ca.Load().Leaf) != nil {
		t.Error("after a CA change the leaf is not signed by the new CA")
	}
	if _, err := NewMinter(func() *tls.Certificate { return nil }, time.Hour, 1).Certificate("a.test"); err == nil {
		t.Error("a leaf without a CA")
	}
}

// TestMITMCAConstraintsRefuseOtherNames: a leaf signed with the local CA's
// key verifies for a permitted host only, never for a name under it
// (X.509 permits subdomains of a permitted dNSName unless they are
// excluded) nor for any other name, in Go's verifier and in OpenSSL's. The
// leaves are made with the CA key directly, as someone who stole it would.
func TestMITMCAConstraintsRefuseOtherNames(t *testing.T) {
	const host, other = "api.acme.payrails.io", "acme-api.staging.payrails.io"
	ca := mitmCA(t, host, other)
	bin := interop.Tool(t, "openssl")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	for i, tt := range []struct {
		names []string
		ok    bool
	}{
		{[]string{host}, true},
		{[]string{other}, true},
		{[]string{"API.ACME.Payrails.IO"}, true},
		{[]string{"evil." + host}, false},
		{[]string{"a.b." + host}, false},
		{[]string{"*." + host}, false},
		{[]string{"EVIL." + strings.ToUpper(host)}, false},
		{[]string{host, "evil." + host}, false},
		{[]string{"x." + other}, false},
		{[]string{"evil.payrails.io"}, false},
		{[]string{"evilapi.acme.payrails.io"}, false},
		{[]string{"example.com"}, false},
	} {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			leaf := signLeafWithCAKey(t, ca, tt.names)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tt.ok {
				t.Errorf("Go: a leaf for %q: verification error %v, want ok=%v", tt.names, err, tt.ok)
			}
			leafFile := filepath.Join(dir, fmt.Sprintf("leaf%d.pem", i))
			if err := os.WriteFile(leafFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "verify", "-CAfile", caFile, leafFile).CombinedOutput()
			if (err == nil) != tt.ok {
				t.Errorf("openssl verify -CAfile ca.pem leaf.pem for %q: %v, want ok=%v\n%s", tt.names, err, tt.ok, out)
			}
			if !tt.ok && err != nil && !bytes.Contains(out, []byte("subtree violation")) && !bytes.Contains(out, []byte("name constraint")) {
				t.Errorf("openssl refused %q for another reason than the name constraints:\n%s", tt.names, out)
			}
		})
	}
}

// TestMinterLeavesVerifyWithOpenSSL: the leaves the Minter signs with a CA
// from NewMITMCA pass openssl verify for the permitted host, and one
// minted for a name under it (the Minter signs what it is asked) fails.
func TestMinterLeavesVerifyWithOpenSSL(t *testing.T) {
	const host = "api.acme.payrails.io"
	ca := mitmCA(t, host)
	bin := interop.Tool(t, "openssl")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewMinter(func() *tls.Certificate { return ca }, 24*time.Hour, 4)
	for name, ok := range map[string]bool{host: true, "evil." + host: false} {
		leaf, err := m.Certificate(name)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Leaf.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "verify", "-CAfile", caFile, "-purpose", "sslserver", f).CombinedOutput()
		if (err == nil) != ok {
			t.Errorf("openssl verify of the Minter's leaf for %s: %v, want ok=%v\n%s", name, err, ok, out)
		}
	}
}

// signLeafWithCAKey makes a server certificate for names signed with the
// CA's key, without the Minter.
func signLeafWithCAKey(t *testing.T, ca *tls.Certificate, names []string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, key.Public(), ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}
