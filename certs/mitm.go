package certs

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MITMCAValidity is how long a local CA made by NewMITMCA is valid.
const MITMCAValidity = 5 * 365 * 24 * time.Hour

// NewMITMCA makes the local CA for `connect: mitm`: an ECDSA P-256 key and a
// self-signed CA certificate that may only sign for hosts themselves (RFC
// 5280 §4.2.1.10 name constraints, marked critical) and for no IP address at
// all, so that even a stolen CA key cannot impersonate any other site to
// the services that trust it. It returns PEM certificate and PKCS#8 key.
//
// A permitted dNSName "host" also permits every name under it
// ("evil.host"), so each host is paired with the excluded subtree ".host":
// a leading period matches names under the host only, never the host
// itself, in OpenSSL and Go (TestMITMCAConstraintsRefuseOtherNames runs
// both). A verifier that ignores the exclusion still confines the CA to
// the hosts and the names under them.
func NewMITMCA(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no host to constrain the CA to: give the configured upstream hosts")
	}
	for _, h := range hosts {
		if h == "" || net.ParseIP(h) != nil || strings.ContainsAny(h, " *") {
			return nil, nil, fmt.Errorf("%q is not a host name the CA can be constrained to", h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	_, all4, _ := net.ParseCIDR("0.0.0.0/0")
	_, all6, _ := net.ParseCIDR("::/0")
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{CommonName: "payrails-mtls-proxy local CA (" + strings.Join(hosts, ", ") + ")",
			Organization: []string{"payrails-mtls-proxy"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(MITMCAValidity),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         hosts,
		ExcludedDNSDomains:          subdomainsOf(hosts),
		ExcludedIPRanges:            []*net.IPNet{all4, all6},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// subdomainsOf returns ".host" for each host: the excluded subtrees that
// leave only the hosts themselves permitted.
func subdomainsOf(hosts []string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = "." + h
	}
	return out
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// Minter issues the certificates the proxy presents to a service inside a
// CONNECT tunnel, signed by the local CA. They are short-lived, made on
// demand, and cached (a bounded LRU) so that a handshake costs one
// signature per host, not per connection. Safe for concurrent use.
type Minter struct {
	ca       func() *tls.Certificate // the CA with its key; a new pointer means a new CA
	validity time.Duration
	size     int

	mu    sync.Mutex
	order *list.List // of *mintedLeaf, most recently used first
	byKey map[string]*list.Element

	signatures atomic.Int64
}

type mintedLeaf struct {
	host string
	ca   *tls.Certificate
	leaf *tls.Certificate
}

// NewMinter returns a Minter signing with the CA ca returns (a Store's
// Certificate method), keeping at most size leaves valid for validity.
func NewMinter(ca func() *tls.Certificate, validity time.Duration, size int) *Minter {
	return &Minter{ca: ca, validity: validity, size: size, order: list.New(), byKey: map[string]*list.Element{}}
}

// Signatures counts the leaves signed so far.
func (m *Minter) Signatures() int64 { return m.signatures.Load() }

// Certificate returns a certificate for host, minting one when the cache
// has none that is valid for at least half its lifetime from the current CA.
func (m *Minter) Certificate(host string) (*tls.Certificate, error) {
	ca := m.ca()
	if ca == nil || ca.Leaf == nil {
		return nil, errors.New("no valid local CA is loaded (mitm.ca_cert_file / mitm.ca_key_file)")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[host]; ok {
		e := el.Value.(*mintedLeaf)
		if e.ca == ca && time.Until(e.leaf.Leaf.NotAfter) > m.validity/2 {
			m.order.MoveToFront(el)
			return e.leaf, nil
		}
		m.order.Remove(el)
		delete(m.byKey, host)
	}
	leaf, err := m.mint(ca, host)
	if err != nil {
		return nil, err
	}
	m.byKey[host] = m.order.PushFront(&mintedLeaf{host: host, ca: ca, leaf: leaf})
	for m.order.Len() > m.size {
		last := m.order.Back()
		m.order.Remove(last)
		delete(m.byKey, last.Value.(*mintedLeaf).host)
	}
	return leaf, nil
}

func (m *Minter) mint(ca *tls.Certificate, host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key for %s: %w", host, err)
	}
	now := time.Now()
	notAfter := now.Add(m.validity)
	if notAfter.After(ca.Leaf.NotAfter) {
		notAfter = ca.Leaf.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate a client clock slightly behind
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer, ok := ca.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the local CA's key cannot sign")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %s with the local CA: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	m.signatures.Add(1)
	return &tls.Certificate{Certificate: [][]byte{der, ca.Leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
