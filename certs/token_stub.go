//go:build !(pkcs11 && cgo)

package certs

import (
	"crypto"

	"go.uber.org/zap"
)

// PKCS11Built reports whether this binary can use PKCS#11 tokens. It is
// false in the default static build (CGO_ENABLED=0): cmd refuses key_uri
// at start, naming the pkcs11 flavour.
const PKCS11Built = false

// Token is an open PKCS#11 token. In this build there is none: OpenToken
// always fails with ErrPKCS11Unavailable.
type Token struct{ cfg PKCS11 }

// OpenToken fails in this build: it has no PKCS#11 support.
func OpenToken(cfg PKCS11, _ *zap.Logger) (*Token, error) { return nil, ErrPKCS11Unavailable }

// Close does nothing.
func (t *Token) Close() error { return nil }

func (t *Token) keys() ([]tokenKey, error) { return nil, ErrPKCS11Unavailable }

// OpenTokenForWriting fails in this build: it has no PKCS#11 support.
func OpenTokenForWriting(cfg PKCS11, _ *zap.Logger) (*Token, error) { return nil, ErrPKCS11Unavailable }

// GenerateRSA fails in this build: it has no PKCS#11 support.
func (t *Token) GenerateRSA(string, int) (crypto.Signer, string, error) {
	return nil, "", ErrPKCS11Unavailable
}

// Signatures is zero in this build.
func (t *Token) Signatures() (made, failed uint64) { return 0, 0 }

// Healthy fails in this build: it has no PKCS#11 support.
func (t *Token) Healthy() error { return ErrPKCS11Unavailable }

// URI is the token's key_uri, for messages (never holds a PIN).
func (t *Token) URI() string { return t.cfg.URI }
