//go:build pkcs11 && cgo

package certs

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
)

// tokenSigner signs with one key in a token. Sign finds the key again
// after the token was re-opened, and fails (without retrying) when the
// token or key is gone: the caller's handshake fails, the token re-opens
// with back-off.
type tokenSigner struct {
	t       *Token
	ref     string // label NUL id: the key's identity across re-opens
	label   string
	id      []byte
	uri     string
	keyType uint
	pub     crypto.PublicKey
}

// Public implements crypto.Signer.
func (k *tokenSigner) Public() crypto.PublicKey { return k.pub }

// KeySource says the key is in a PKCS#11 token (see KeySource).
func (k *tokenSigner) KeySource() string { return KeySourcePKCS11 }

// String names the key by its URI.
func (k *tokenSigner) String() string { return k.uri }

// schemes are the TLS signature schemes the token can make with the key:
// nil (all of the key type) unless an RSA key's token lacks RSA-PSS, which
// leaves PKCS#1 v1.5 only, and so TLS 1.2 (TLS 1.3 requires PSS, RFC 8446
// §4.2.3).
func (k *tokenSigner) schemes() []tls.SignatureScheme {
	if k.keyType == pkcs11.CKK_RSA && !k.t.pss.Load() {
		return []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512}
	}
	return nil
}

// Sign implements crypto.Signer: PKCS#1 v1.5, RSA-PSS or ECDSA, in the token.
func (k *tokenSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	mech, data, err := k.mechanism(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("signing with %s: %w", k.uri, err)
	}
	var sig []byte
	err = k.t.withSession(func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		h, err := k.handle(ctx, s)
		if err != nil {
			return err
		}
		if err := ctx.SignInit(s, []*pkcs11.Mechanism{mech}, h); err != nil {
			return err
		}
		sig, err = ctx.Sign(s, data)
		return err
	})
	if err != nil {
		k.t.signFailures.Add(1)
		return nil, fmt.Errorf("signing with %s: %w", k.uri, err)
	}
	k.t.signatures.Add(1)
	if k.keyType == pkcs11.CKK_EC {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// handle returns the key's object handle in the open token, finding it
// again after a re-open; it checks that the key found is still this one.
func (k *tokenSigner) handle(ctx *pkcs11.Ctx, s pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	k.t.hmu.Lock()
	h, ok := k.t.handles[k.ref]
	k.t.hmu.Unlock()
	if ok {
		return h, nil
	}
	hs, err := findObjects(ctx, s, k.t.template(pkcs11.CKO_PRIVATE_KEY, k.label, k.id))
	if err != nil {
		return 0, err
	}
	for _, h := range hs {
		again, err := k.t.describeKey(ctx, s, h)
		if err == nil && publicKeyEqual(again.pub, k.pub) {
			k.t.hmu.Lock()
			k.t.handles[k.ref] = h
			k.t.hmu.Unlock()
			return h, nil
		}
	}
	return 0, fmt.Errorf("%w: the key %s is no longer in the token (deleted, or replaced by another key of the same "+
		"label); put the certificate of a key that is in the token in place", ErrKeyNotFound, k.uri)
}

var errUnsupportedOpts = errors.New("unsupported signature options")

// mechanism picks the PKCS#11 mechanism and the bytes to sign.
func (k *tokenSigner) mechanism(digest []byte, opts crypto.SignerOpts) (*pkcs11.Mechanism, []byte, error) {
	switch k.keyType {
	case pkcs11.CKK_EC:
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest, nil
	case pkcs11.CKK_RSA:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if !k.t.pss.Load() {
				return nil, nil, fmt.Errorf("%w: the token does not offer RSA-PSS (CKM_RSA_PKCS_PSS)", errUnsupportedOpts)
			}
			hashMech, mgf, err := pssHash(pss.Hash)
			if err != nil {
				return nil, nil, err
			}
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthEqualsHash || salt == rsa.PSSSaltLengthAuto {
				salt = pss.Hash.Size()
			}
			return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hashMech, mgf, uint(salt))), digest, nil
		}
		prefix, ok := digestInfo[opts.HashFunc()]
		if !ok {
			return nil, nil, fmt.Errorf("%w: hash %v for PKCS#1 v1.5", errUnsupportedOpts, opts.HashFunc())
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), append(bytes.Clone(prefix), digest...), nil
	}
	return nil, nil, fmt.Errorf("%w: key type %#x", errUnsupportedOpts, k.keyType)
}

func pssHash(h crypto.Hash) (uint, uint, error) {
	switch h {
	case crypto.SHA256:
		return pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, nil
	case crypto.SHA384:
		return pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384, nil
	case crypto.SHA512:
		return pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512, nil
	}
	return 0, 0, fmt.Errorf("%w: hash %v for RSA-PSS", errUnsupportedOpts, h)
}

// digestInfo are the DER prefixes of EMSA-PKCS1-v1_5 (RFC 8017 §9.2 note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// ecdsaDER turns PKCS#11's r||s into the ASN.1 form crypto.Signer returns.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("the token returned an ECDSA signature of %d bytes", len(raw))
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}
