//go:build pkcs11 && cgo

package certs

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// GenerateRSA makes an RSA key of bits inside the token, labelled label:
// a token object, private, sensitive and never extractable, usable only for
// signing. It refuses a label a private key already has. It returns a
// signer and the key's URI. The token must be open for writing
// (OpenTokenForWriting).
func (t *Token) GenerateRSA(label string, bits int) (crypto.Signer, string, error) {
	if label == "" {
		return nil, "", errors.New("the key needs a label: add ;object=NAME to the URI")
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, "", err
	}
	var k *tokenSigner
	err := t.withSession(func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		if hs, err := findObjects(ctx, s, t.template(pkcs11.CKO_PRIVATE_KEY, label, nil)); err != nil {
			return err
		} else if len(hs) > 0 {
			return fmt.Errorf("the token already holds a private key labelled %q; keys in a token are never replaced "+
				"(the certificate made for it may still be in use): choose another object= name, such as %s-2", label, label)
		}
		pub := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}), pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		priv := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
		_, h, err := ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
		if err != nil {
			return fmt.Errorf("generating an RSA-%d key in the token: %w", bits, err)
		}
		if err := checkNonExtractable(ctx, s, h); err != nil {
			return err
		}
		if k, err = t.describeKey(ctx, s, h); err != nil {
			return err
		}
		t.hmu.Lock()
		t.handles[k.ref] = h
		t.hmu.Unlock()
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return k, k.uri, nil
}

// checkNonExtractable confirms what the key was made with: a token that
// ignored CKA_SENSITIVE or CKA_EXTRACTABLE would let the key leave it.
func checkNonExtractable(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
	a, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil)})
	if err != nil {
		return fmt.Errorf("reading the new key's attributes: %w", err)
	}
	if len(a[0].Value) != 1 || a[0].Value[0] != 1 || len(a[1].Value) != 1 || a[1].Value[0] != 0 {
		_ = ctx.DestroyObject(s, h)
		return errors.New("the token made the key without CKA_SENSITIVE=true and CKA_EXTRACTABLE=false, so it could leave " +
			"the token; it was deleted again: check the token's policy")
	}
	return nil
}
