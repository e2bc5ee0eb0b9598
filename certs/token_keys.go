//go:build pkcs11 && cgo

package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// keys lists the token's private keys that the URI selects, each with a
// signer and its own URI.
func (t *Token) keys() ([]tokenKey, error) {
	var out []tokenKey
	err := t.withSession(func(ctx *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		out = nil
		handles, err := findObjects(ctx, s, t.template(pkcs11.CKO_PRIVATE_KEY, t.cfg.Object, t.cfg.ID))
		if err != nil {
			return err
		}
		if len(handles) == 0 {
			// Private objects are invisible without a login: one that
			// another user of the library ended looks like an empty token.
			if info, err := ctx.GetSessionInfo(s); err == nil && info.State != pkcs11.CKS_RO_USER_FUNCTIONS &&
				info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
				return pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
			}
		}
		for _, h := range handles {
			k, err := t.describeKey(ctx, s, h)
			if err != nil {
				if tokenGone(err) {
					return err
				}
				t.log.Warn("a private key in the token cannot be used; skipped", zap.Error(err))
				continue
			}
			t.hmu.Lock()
			t.handles[k.ref] = h
			t.hmu.Unlock()
			out = append(out, tokenKey{uri: k.uri, signer: k, schemes: k.schemes()})
		}
		return nil
	})
	return out, err
}

// template matches objects of a class, with a label and ID when given.
func (t *Token) template(class uint, label string, id []byte) []*pkcs11.Attribute {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if id != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	return tmpl
}

func findObjects(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := ctx.FindObjects(s, 64)
		if err != nil {
			_ = ctx.FindObjectsFinal(s)
			return nil, err
		}
		all = append(all, hs...)
		if len(hs) < 64 {
			break
		}
	}
	return all, ctx.FindObjectsFinal(s)
}

// describeKey reads a private key's label, ID, type and public half.
func (t *Token) describeKey(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (*tokenSigner, error) {
	attrs, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	if err != nil {
		return nil, err
	}
	k := &tokenSigner{t: t, keyType: bytesToUint(attrs[0].Value), label: string(attrs[1].Value), id: attrs[2].Value}
	k.ref = k.label + "\x00" + string(k.id)
	k.uri = t.keyURI(k.label, k.id)
	switch k.keyType {
	case pkcs11.CKK_RSA:
		a, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(a[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31 {
			return nil, fmt.Errorf("%s: RSA public exponent too large", k.uri)
		}
		k.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(e.Int64())}
	case pkcs11.CKK_EC:
		pub, err := t.ecPublic(ctx, s, h, k)
		if err != nil {
			return nil, err
		}
		k.pub = pub
	default:
		return nil, fmt.Errorf("%s: key type %#x cannot sign a TLS handshake here (RSA and ECDSA can)", k.uri, k.keyType)
	}
	return k, nil
}

// ecPublic reads an EC key's curve from the private key and its point
// from the public key object of the same label and ID (a private key
// object carries no CKA_EC_POINT).
func (t *Token) ecPublic(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, k *tokenSigner) (*ecdsa.PublicKey, error) {
	a, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
	if err != nil {
		return nil, err
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(a[0].Value, &oid); err != nil {
		return nil, fmt.Errorf("%s: EC parameters are not a named curve: %w", k.uri, err)
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}):
		curve = elliptic.P256()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 34}):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("%s: curve %v is not supported (P-256 and P-384 are)", k.uri, oid)
	}
	pubs, err := findObjects(ctx, s, t.template(pkcs11.CKO_PUBLIC_KEY, k.label, k.id))
	if err != nil || len(pubs) == 0 {
		return nil, fmt.Errorf("%s: the token has no public key object beside this EC key (same label and id): %v", k.uri, err)
	}
	p, err := ctx.GetAttributeValue(s, pubs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, err
	}
	point := p[0].Value
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner // DER OCTET STRING, as PKCS#11 v2.20 says
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("%s: the public key's EC point does not parse: %w", k.uri, err)
	}
	return pub, nil
}

// keyURI names one key: the configured URI's token part, then object and
// id, then its query (module-path, pin-source).
func (t *Token) keyURI(label string, id []byte) string {
	base, query, _ := strings.Cut(t.cfg.URI, "?")
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(base, "pkcs11:"), ";") {
		if p != "" && !strings.HasPrefix(p, "object=") && !strings.HasPrefix(p, "id=") && !strings.HasPrefix(p, "type=") {
			parts = append(parts, p)
		}
	}
	if label != "" {
		parts = append(parts, "object="+strings.ReplaceAll(url.PathEscape(label), ";", "%3B"))
	}
	if len(id) > 0 {
		var b strings.Builder
		for _, c := range id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		parts = append(parts, "id="+b.String())
	}
	s := "pkcs11:" + strings.Join(parts, ";")
	if query != "" {
		s += "?" + query
	}
	return s
}

func bytesToUint(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- { // CK_ULONG in host (little-endian) order
		v = v<<8 | uint(b[i])
	}
	return v
}

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
