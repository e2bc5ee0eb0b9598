package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/youmark/pkcs8"
)

// Errors a key can fail with; classify with errors.Is.
var (
	// ErrPassphraseMissing: the key (or PKCS#12 bundle) is encrypted and no
	// passphrase is configured.
	ErrPassphraseMissing = errors.New("encrypted, and no passphrase is configured")
	// ErrPassphraseWrong: the configured passphrase does not decrypt it.
	ErrPassphraseWrong = errors.New("the passphrase does not decrypt it")
	// ErrKeyUnsupported: a key algorithm or encryption scheme we cannot use.
	ErrKeyUnsupported = errors.New("unsupported key")
)

// isKeyBlock reports whether a PEM block type holds a private key.
func isKeyBlock(typ string) bool {
	switch typ {
	case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return true
	}
	return false
}

// isEncryptedKeyBlock reports whether the block needs a passphrase.
func isEncryptedKeyBlock(b *pem.Block) bool {
	//lint:ignore SA1019 legacy PEM encryption is insecure, but OpenSSL -traditional still writes it and we must read it.
	return b.Type == "ENCRYPTED PRIVATE KEY" || x509.IsEncryptedPEMBlock(b) //nolint:staticcheck
}

// ParseKeyBlock decodes a private key PEM block: PKCS#1, SEC1 or PKCS#8,
// plain or encrypted (legacy "Proc-Type: 4,ENCRYPTED" PEM or PKCS#8 PBES2),
// holding an RSA, ECDSA or Ed25519 key. passphrase may be nil for
// unencrypted blocks. Failures wrap ErrPassphraseMissing,
// ErrPassphraseWrong or ErrKeyUnsupported where those apply.
func ParseKeyBlock(b *pem.Block, passphrase []byte) (crypto.Signer, error) {
	if b.Type == "OPENSSH PRIVATE KEY" {
		return nil, fmt.Errorf("%w: an OpenSSH key, not a TLS key; convert it with `ssh-keygen -p -m PEM -f FILE` "+
			"or use the domain.key made with the certificate request", ErrKeyUnsupported)
	}
	der := b.Bytes
	encrypted := isEncryptedKeyBlock(b)
	if encrypted && len(passphrase) == 0 {
		return nil, ErrPassphraseMissing
	}
	if b.Type == "ENCRYPTED PRIVATE KEY" {
		return parseEncryptedPKCS8(der, passphrase)
	}
	if encrypted {
		var err error
		//lint:ignore SA1019 see isEncryptedKeyBlock.
		der, err = x509.DecryptPEMBlock(b, passphrase) //nolint:staticcheck
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, ErrPassphraseWrong
		}
		if err != nil {
			return nil, fmt.Errorf("%w: legacy PEM encryption: %w", ErrKeyUnsupported, err)
		}
	}
	key, err := parseKeyDER(b.Type, der)
	if err != nil && encrypted {
		// Legacy PEM encryption has no integrity check: a wrong passphrase
		// passes the padding test about one time in 256 and yields garbage.
		return nil, ErrPassphraseWrong
	}
	return key, err
}

func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch typ {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	default:
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", typ, err)
	}
	return asSigner(key)
}

// encryptedPKCS8 is the outer structure of an "ENCRYPTED PRIVATE KEY":
// EncryptedPrivateKeyInfo (RFC 5958 §3).
type encryptedPKCS8 struct {
	Algo struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	EncryptedData []byte
}

// oidPBES2 is PKCS#5 v2 (RFC 8018 §A.4), what OpenSSL 3 writes by default.
var oidPBES2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}

func parseEncryptedPKCS8(der, passphrase []byte) (crypto.Signer, error) {
	var info encryptedPKCS8
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return nil, fmt.Errorf("parsing ENCRYPTED PRIVATE KEY: %w", err)
	}
	if !info.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("%w: PKCS#8 encryption %v is not PBES2; re-encrypt with "+
			"`openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`", ErrKeyUnsupported, info.Algo.Algorithm)
	}
	key, _, err := pkcs8.ParsePrivateKey(der, passphrase)
	if err != nil {
		// The library reports a wrong passphrase as a padding or parse
		// failure after decryption; the structure was already checked above,
		// so what is left is a wrong passphrase or an exotic cipher.
		if isUnsupportedPBES2(err) {
			return nil, fmt.Errorf("%w: %w", ErrKeyUnsupported, err)
		}
		return nil, ErrPassphraseWrong
	}
	return asSigner(key)
}

// isUnsupportedPBES2 tells an unknown KDF or cipher from a wrong passphrase.
// github.com/youmark/pkcs8 exports no sentinel errors, so its messages are
// the only signal; they have been stable since 2017.
func isUnsupportedPBES2(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unsupported KDF", "unsupported cipher", "invalid KDF", "invalid cipher", "invalid PBES2"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// asSigner accepts the key types TLS client authentication can use.
func asSigner(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: %T keys cannot sign a TLS handshake", ErrKeyUnsupported, key)
	}
}

// publicKeyEqual compares a certificate's public key with a key's public half.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
