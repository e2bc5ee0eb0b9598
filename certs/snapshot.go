package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExpiryWarning is how close to NotAfter the chosen certificate gets a warning.
const ExpiryWarning = 30 * 24 * time.Hour

// Validity is a certificate's state at the time of a load.
type Validity string

// Validity states.
const (
	Valid       Validity = "valid"
	Expired     Validity = "expired"
	NotYetValid Validity = "not yet valid"
)

func validityAt(c *x509.Certificate, now time.Time) Validity {
	switch {
	case now.Before(c.NotBefore):
		return NotYetValid
	case now.After(c.NotAfter):
		return Expired
	default:
		return Valid
	}
}

// Pair is a certificate matched with its private key. It is immutable once
// published; Certificate is shared with TLS handshakes and must not be
// modified.
type Pair struct {
	Certificate *tls.Certificate // leaf, chain and key; Leaf is set
	Leaf        *x509.Certificate
	CertFile    string
	KeyFile     string
	Serial      string // upper-case hex, as `openssl x509 -serial` prints it
	Fingerprint string // SHA-256 of the DER, AB:CD:... as `openssl x509 -fingerprint -sha256` prints it
	Validity    Validity
}

// NotBefore and NotAfter are shortcuts to the leaf's validity window.
func (p *Pair) NotBefore() time.Time { return p.Leaf.NotBefore }

// NotAfter is the end of the leaf's validity window.
func (p *Pair) NotAfter() time.Time { return p.Leaf.NotAfter }

// Snapshot is the complete, immutable result of reading one source at one
// moment: every file, every pair, the chosen pair and why. Nothing in it is
// modified after Load returns, so it can be shared freely between goroutines.
type Snapshot struct {
	Source   string    // the folder, or "CERT + KEY"
	LoadedAt time.Time // when it was read
	Files    []File
	Pairs    []*Pair // every matched pair, best first
	Chosen   *Pair   // nil when no valid pair exists
	Reason   string  // why Chosen was chosen, or "" when nil
	Findings []Finding
	digest   [sha256.Size]byte // of the chosen pair's chain, to recognise an unchanged reload
}

// ErrNoValidCertificate is wrapped by Snapshot.Err when no pair can be used.
var ErrNoValidCertificate = errors.New("no usable client certificate")

// LoadError explains why a source yielded no usable pair.
type LoadError struct {
	Source   string
	Findings []Finding // the warnings and errors that explain it
}

func (e *LoadError) Error() string {
	detail := joinFindings(e.Findings, Warning)
	if detail == "" {
		detail = "no certificate with a matching private key was found"
	}
	return fmt.Sprintf("%v in %s: %s", ErrNoValidCertificate, e.Source, detail)
}

// Unwrap makes errors.Is(err, ErrNoValidCertificate) true.
func (e *LoadError) Unwrap() error { return ErrNoValidCertificate }

// Err returns nil when a pair was chosen, else a *LoadError.
func (s *Snapshot) Err() error {
	if s == nil {
		return &LoadError{Source: "(nothing loaded)"}
	}
	if s.Chosen != nil {
		return nil
	}
	return &LoadError{Source: s.Source, Findings: s.Findings}
}

// Worst returns the findings at or above min severity.
func (s *Snapshot) Worst(min Severity) []Finding {
	var out []Finding
	for _, f := range s.Findings {
		if f.Severity >= min {
			out = append(out, f)
		}
	}
	return out
}

// sameChosen reports whether two snapshots present the same certificate
// chain (and so the same key): a reload that changes nothing else need not
// disturb connections.
func sameChosen(a, b *Snapshot) bool {
	if a == nil || b == nil || a.Chosen == nil || b.Chosen == nil {
		return false
	}
	return a.digest == b.digest
}

func chainDigest(chain [][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, der := range chain {
		h.Write(der)
	}
	var d [sha256.Size]byte
	copy(d[:], h.Sum(nil))
	return d
}

// Fingerprint formats the SHA-256 of der as OpenSSL does: AB:CD:...
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// Serial formats a certificate's serial as `openssl x509 -serial` does.
func Serial(c *x509.Certificate) string {
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}
