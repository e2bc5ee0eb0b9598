package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
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
