package certs

import (
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
)

// PKCS11 says where the merchant's private keys are when they are in a
// PKCS#11 token (HSM, cloud HSM, SoftHSM2) instead of files: config's
// key_uri, translated by cmd. With Source.Dir it names the token and every
// certificate in the folder is paired with the token's key of the same
// public key; with Source.CertFile it names one key (Object or ID).
type PKCS11 struct {
	// URI is the key_uri in canonical form, for messages, /certs and logs.
	// It never holds a PIN.
	URI string
	// ModulePath is the absolute path of the PKCS#11 library.
	ModulePath string
	// Token, Serial, Manufacturer and Model select the token by its
	// CK_TOKEN_INFO ("" matches any); SlotID by slot (nil: any).
	Token, Serial, Manufacturer, Model string
	SlotID                             *uint
	// Object (CKA_LABEL) and ID (CKA_ID) narrow the keys to one; "" and
	// nil match any.
	Object string
	ID     []byte
	// PIN is the user PIN: a file (pin-source=file:, re-read at every
	// login, only its first line counts) or a value from the environment.
	PIN Passphrase
}

// String is the URI.
func (p *PKCS11) String() string { return p.URI }

// Errors a token can fail with; classify with errors.Is. Every one comes
// wrapped with the URI and what to do.
var (
	// ErrPKCS11Unavailable: this binary was built without PKCS#11 support
	// (the default, static build); the pkcs11 flavour has it.
	ErrPKCS11Unavailable = errors.New("this payrails-mtls-proxy binary has no PKCS#11 support (the default static build); " +
		"use the pkcs11 flavour: the image payrails-mtls-proxy:<version>-pkcs11, or a binary built with " +
		"`scripts/build.sh --pkcs11` (cgo, glibc)")
	// ErrTokenNotFound: the library loaded, but no token matches the URI.
	ErrTokenNotFound = errors.New("no such token")
	// ErrPINWrong: the token refused the PIN. It is not tried again until
	// the PIN changes, so that retries cannot lock the token.
	ErrPINWrong = errors.New("the token refused the PIN")
	// ErrPINLocked: the token locked its user PIN after wrong attempts.
	ErrPINLocked = errors.New("the token's user PIN is locked")
	// ErrKeyNotFound: the token holds no private key matching the URI.
	ErrKeyNotFound = errors.New("no private key matching the URI in the token")
	// ErrTokenUnavailable: the library or token failed (not loadable,
	// removed, a session or signature failed); the token is re-opened with
	// back-off by itself.
	ErrTokenUnavailable = errors.New("the PKCS#11 token is unavailable")
)

// KeySourceFile and KeySourcePKCS11 are what KeySource reports: the metrics
// label of a signature's source.
const (
	KeySourceFile   = "file"
	KeySourcePKCS11 = "pkcs11"
)

// KeySource returns where a tls.Certificate's private key lives:
// KeySourcePKCS11 for a key in a token (its signer says so), else
// KeySourceFile. It lets a consumer label signatures without importing
// this package's types: the token's signer has a KeySource() string method.
func KeySource(c *tls.Certificate) string {
	if s, ok := c.PrivateKey.(interface{ KeySource() string }); ok {
		return s.KeySource()
	}
	return KeySourceFile
}

// tokenKey is one private key found in a token, ready to pair.
type tokenKey struct {
	uri    string        // pkcs11:... naming this key object, for Pair.KeyFile
	signer crypto.Signer // signs through the token; Public() is the key's public half
	// schemes are the signature schemes the token can make with this key,
	// for tls.Certificate.SupportedSignatureAlgorithms; nil means all.
	schemes []tls.SignatureScheme
}

// tokenLoad is what Load gets from a token: keys, or why there are none.
func tokenLoad(t *Token) ([]tokenKey, *Finding) {
	keys, err := t.keys()
	if err == nil && len(keys) == 0 {
		err = fmt.Errorf("%w: the token of %s holds no private key; make one with `payrails-mtls-proxy csr "+
			"--key-uri 'pkcs11:...;object=NAME?...'` (the key stays in the token), upload the CSR in the Payrails "+
			"dashboard and drop the certificate here", ErrKeyNotFound, t.cfg.URI)
	}
	if err != nil {
		return nil, &Finding{Severity: Error, Code: tokenCode(err), Path: t.cfg.URI, Message: err.Error()}
	}
	return keys, nil
}

// tokenCode is the finding code of a token failure.
func tokenCode(err error) Code {
	switch {
	case errors.Is(err, ErrPKCS11Unavailable):
		return CodePKCS11Unavailable
	case errors.Is(err, ErrTokenNotFound):
		return CodeTokenNotFound
	case errors.Is(err, ErrPINWrong), errors.Is(err, ErrPINLocked):
		return CodePINWrong
	case errors.Is(err, ErrKeyNotFound):
		return CodeTokenKeyNotFound
	default:
		return CodeTokenUnavailable
	}
}
