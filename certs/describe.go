package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Description is what every view shows about one certificate + key pair:
// the /certs JSON (Report), `check` (Inspection) and the certificate
// metrics all read it, so they cannot disagree. It is plain data judged at
// one moment (the snapshot's LoadedAt), holds certificate metadata and file
// names only, never key material, and is safe to copy and share.
//
// The JSON names of the fields /certs has always shown (subject through
// key_file) are a contract; add fields, do not rename them.
type Description struct {
	Subject     string    `json:"subject"` // the subject's distinguished name
	Issuer      string    `json:"issuer"`  // the issuer's distinguished name
	DNSNames    []string  `json:"dns_names,omitempty"`
	Serial      string    `json:"serial"`             // upper-case hex, as `openssl x509 -serial` prints it
	Fingerprint string    `json:"fingerprint_sha256"` // AB:CD:..., as `openssl x509 -fingerprint -sha256` prints it
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Validity    Validity  `json:"validity"`
	CertFile    string    `json:"cert_file"`
	KeyFile     string    `json:"key_file"`

	CommonName       string         `json:"common_name"`        // the subject's Common Name
	IssuerCommonName string         `json:"issuer_common_name"` // the issuer's Common Name
	Key              string         `json:"key"`                // "RSA-4096", "ECDSA P-256", "Ed25519"
	DaysLeft         int            `json:"days_left"`          // whole days until NotAfter, rounded down: negative once expired
	ExpiresSoon      bool           `json:"expires_soon"`       // valid, and within ExpiryWarning of NotAfter
	Payrails         []PayrailsHost `json:"payrails_hosts"`     // the names (CN and DNS SANs) that are Payrails API hosts
	// Chain are the subjects of the CA certificates sent after the leaf
	// (intermediates from the leaf's file or the folder), nearest first.
	Chain []string `json:"chain,omitempty"`
	// InUse marks the pair chosen to be presented (Snapshot.Chosen). It
	// stays set once that certificate has expired, until a reload replaces
	// it; Report.Ready says whether it is presented now.
	InUse bool `json:"in_use"`
	// Verification is what the upstream said of the certificate when the
	// proxy asked it (before it takes traffic); nil where nobody asked.
	// certs does not fill it in: the proxy's wiring does.
	Verification *Verification `json:"verification,omitempty"`
}

// Verification is the upstream's verdict on a certificate, as the proxy
// learnt it. Plain data.
type Verification struct {
	Result string    `json:"result"`           // pending, accepted, refused, unknown
	Reason string    `json:"reason,omitempty"` // the upstream's words: TLS alert, page title, error
	At     time.Time `json:"at,omitzero"`      // of the last verification
	Next   time.Time `json:"next,omitzero"`    // when it is asked again (refused, unknown)
}

// Describe returns a Description of every pair, best first, judged at
// LoadedAt, with InUse set on the chosen one.
func (s *Snapshot) Describe() []Description {
	out := make([]Description, 0, len(s.Pairs))
	for _, p := range s.Pairs {
		d := p.describe(s.LoadedAt)
		d.InUse = p == s.Chosen
		out = append(out, d)
	}
	return out
}

// describe describes p as of at.
func (p *Pair) describe(at time.Time) Description {
	c := p.Leaf
	d := Description{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), DNSNames: c.DNSNames,
		Serial: p.Serial, Fingerprint: p.Fingerprint, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Validity: p.Validity, CertFile: p.CertFile, KeyFile: p.KeyFile,
		CommonName: c.Subject.CommonName, IssuerCommonName: c.Issuer.CommonName, Key: keyDescription(c),
		DaysLeft:    int(math.Floor(c.NotAfter.Sub(at).Hours() / 24)),
		ExpiresSoon: p.Validity == Valid && c.NotAfter.Sub(at) < ExpiryWarning,
		Payrails:    []PayrailsHost{},
	}
	for _, der := range p.Certificate.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			d.Chain = append(d.Chain, ic.Subject.String())
		}
	}
	for _, n := range hostNames(d.CommonName, d.DNSNames) {
		if h, ok := ParsePayrailsHost(n); ok {
			d.Payrails = append(d.Payrails, h)
		}
	}
	return d
}

// hostNames returns the Common Name and the DNS SANs, lower case, once each.
func hostNames(cn string, dns []string) []string {
	var names []string
	for _, n := range append([]string{cn}, dns...) {
		n = strings.ToLower(n)
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func keyDescription(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}
