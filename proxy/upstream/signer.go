package upstream

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The client certificate's key signs every full TLS handshake (TLS 1.3
// CertificateVerify, TLS 1.2 CertificateVerify); a resumed one signs
// nothing. When the key is in a PKCS#11 token (certs' key_uri), a
// signature can fail: the token was removed, the HSM restarted. This file
// sees every signature, for exactly the handshake that asked for it: a
// per-handshake signer counts it by upstream and source with its latency,
// and records a failure where dialTLS finds it, so that request fails with
// client_key_unavailable and the client reports not ready until a
// signature succeeds again.

// Key sources, the metrics label: a key that says where it lives (certs'
// token signer has a KeySource() string method), else a file.
const (
	sourceFile = "file"
)

// keySource is where c's private key lives: "pkcs11" for a key in a token,
// "file" otherwise.
func keySource(c *tls.Certificate) string {
	if s, ok := c.PrivateKey.(interface{ KeySource() string }); ok {
		return s.KeySource()
	}
	return sourceFile
}

// tls12Only reports whether c's key cannot sign TLS 1.3's CertificateVerify:
// an RSA key restricted to PKCS#1 v1.5 (a PKCS#11 token without
// CKM_RSA_PKCS_PSS), since TLS 1.3 allows only RSA-PSS (RFC 8446 §4.2.3).
func tls12Only(c *tls.Certificate) bool {
	if c == nil || c.Leaf == nil || len(c.SupportedSignatureAlgorithms) == 0 {
		return false
	}
	if _, isRSA := c.Leaf.PublicKey.(*rsa.PublicKey); !isRSA {
		return false
	}
	return !slices.ContainsFunc(c.SupportedSignatureAlgorithms, func(s tls.SignatureScheme) bool {
		return s == tls.PSSWithSHA256 || s == tls.PSSWithSHA384 || s == tls.PSSWithSHA512
	})
}

// signing is one handshake's view of its client signature: dialTLS puts
// it in the handshake's context, the certificate callback hands it to the
// signer, and dialTLS reads what happened.
type signing struct {
	upstream string
	m        *Metrics
	keys     *keyHealth
	mu       sync.Mutex
	err      error // the signature's failure; nil when none failed
}

type signingKey struct{}

// failed returns the signature's failure, if any.
func (s *signing) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// withSigner returns cert for one handshake: when that handshake's context
// carries a signing, a shallow copy whose key reports to it. The copy
// shares everything but PrivateKey; cert itself is never modified.
func withSigner(ctx context.Context, cert *tls.Certificate) *tls.Certificate {
	rec, _ := ctx.Value(signingKey{}).(*signing)
	inner, ok := cert.PrivateKey.(crypto.Signer)
	if rec == nil || !ok {
		return cert
	}
	c := *cert
	c.PrivateKey = &countingSigner{Signer: inner, rec: rec, source: keySource(cert)}
	return &c
}

// countingSigner is a client key during one handshake.
type countingSigner struct {
	crypto.Signer
	rec    *signing
	source string
}

// Sign signs with the key, counting the signature and its latency, and
// records a failure for the handshake and the client's readiness.
func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.Signer.Sign(r, digest, opts)
	s.rec.m.signature(s.rec.upstream, s.source, err == nil, time.Since(start))
	s.rec.mu.Lock()
	s.rec.err = err
	s.rec.mu.Unlock()
	s.rec.keys.record(err)
	return sig, err
}

// keyError is a handshake that failed because the client certificate's
// key could not sign it.
type keyError struct {
	addr string
	err  error // the signer's
}

func (e *keyError) Error() string {
	return "TLS handshake with " + e.addr + ": the client certificate's key could not sign it: " + e.err.Error()
}
func (e *keyError) Unwrap() error { return e.err }

// Back-off of the probe that checks a failed key again: doubled from
// keyProbeMin per failure, capped at keyProbeMax.
const (
	keyProbeMin = 500 * time.Millisecond
	keyProbeMax = 30 * time.Second
)

// keyHealth is whether the client key's last signature failed. A failure
// makes the client not ready (Ready) until a signature succeeds again; Run
// forces one with a probe handshake at back-off (probeDue), since resumed
// and pooled connections never sign. Safe for concurrent use.
type keyHealth struct {
	mu      sync.Mutex
	err     error     // the last signature's failure; nil when it succeeded
	at      time.Time // of that failure
	backoff time.Duration
	next    time.Time // when Run probes again
	kick    func()    // wakes Run; may be nil
	name    string    // the upstream's, for the log
	log     *zap.Logger
}

// record notes a signature's outcome. A nil *keyHealth records nothing.
func (k *keyHealth) record(err error) {
	if k == nil {
		return
	}
	k.mu.Lock()
	wasOK := k.err == nil
	switch {
	case err == nil:
		k.err, k.backoff, k.next = nil, 0, time.Time{}
	case wasOK:
		k.err, k.at, k.backoff = err, time.Now(), keyProbeMin
		k.next = k.at.Add(k.backoff)
	default:
		k.err = err
	}
	// Logged before the state is seen unlocked, so that the log line
	// precedes what readers of Ready observe.
	switch {
	case err != nil && wasOK && k.log != nil:
		k.log.Error("the client certificate's key could not sign a TLS handshake: requests that need a new "+
			"connection fail with client_key_unavailable and the upstream reports not ready until it signs again "+
			"(a key in a PKCS#11 token is re-opened by itself)", zap.String(fieldUpstream, k.name), zap.Error(err))
	case err == nil && !wasOK && k.log != nil:
		k.log.Info("the client certificate's key signs again; the upstream is ready", zap.String(fieldUpstream, k.name))
	}
	kick := k.kick
	k.mu.Unlock()
	if err != nil && wasOK && kick != nil {
		kick() // Run schedules the probe
	}
}

// ready returns nil unless the last signature failed.
func (k *keyHealth) ready() error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		return nil
	}
	return fmt.Errorf("the client certificate's key could not sign the last full TLS handshake (%v, since %s); "+
		"a key in a PKCS#11 token is re-opened by itself, and the upstream is ready again once a signature succeeds: "+
		"check the HSM and run `payrails-mtls-proxy check --key-uri ...`", k.err, k.at.UTC().Format(time.RFC3339))
}

// probeDue returns when Run should probe the key (zero: no probe needed).
func (k *keyHealth) probeDue() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.next
}

// probed notes that a probe failed to bring a signature, doubling the
// back-off; a successful signature resets it (record).
func (k *keyHealth) probed() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		return
	}
	k.backoff = min(max(2*k.backoff, keyProbeMin), keyProbeMax)
	k.next = time.Now().Add(k.backoff)
}

// probeKey forces a full handshake with the certificate in use when the
// key's last signature failed and the probe is due (resumed and pooled
// connections never sign, so nothing else would show the key is back).
// It returns when to probe next; zero when the key is fine.
func (c *Client) probeKey(ctx context.Context) time.Time {
	due := c.d.keys.probeDue()
	if due.IsZero() || time.Now().Before(due) {
		return due
	}
	if g := c.sel.gen.Load(); g != nil {
		cfg := g.tls.Clone() // the generation's own stays as it was built
		cfg.ClientSessionCache = nil
		if conn, err := c.d.dialTLS(ctx, cfg); err == nil {
			conn.Close()
		}
	}
	c.d.keys.probed()
	return c.d.keys.probeDue()
}
