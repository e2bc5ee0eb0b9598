package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/youmark/pkcs8"
)

// KeyType is the kind of private key NewCSR makes.
type KeyType string

// Key types. The zero value means KeyRSA4096.
const (
	KeyRSA4096   KeyType = "rsa4096"    // what Payrails' guide asks for: openssl req -newkey rsa:4096
	KeyECDSAP256 KeyType = "ecdsa-p256" // smaller and faster, for CAs that accept it
)

// ParseKeyType accepts "rsa4096" (also "" and "rsa") or "ecdsa-p256".
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "rsa", "rsa4096", "rsa-4096":
		return KeyRSA4096, nil
	case "ecdsa-p256", "ecdsa", "p256", "prime256v1":
		return KeyECDSAP256, nil
	}
	return "", fmt.Errorf("key type %q: use rsa4096 (what Payrails asks for) or ecdsa-p256", s)
}

// Subject is what Payrails' guide asks to put in the CSR.
type Subject struct {
	Country      string // ISO 3166-1 alpha-2 code: DE
	State        string // state or province, full name: Berlin
	Organization string // the merchant's legal name: Acme GmbH
	CommonName   string // the Payrails API host of the environment
}

// Upper bounds from RFC 5280 Appendix A (ub-state-name, ub-organization-name,
// ub-common-name); CAs refuse longer values.
const (
	maxState        = 128
	maxOrganization = 64
	maxCommonName   = 64
)

// Subject fields, as SubjectError names them.
const (
	FieldCountry      = "country"
	FieldState        = "state or province"
	FieldOrganization = "organization"
	FieldCommonName   = "common name"
)

// SubjectError is a problem with one field of a Subject. Its message
// names the field already.
type SubjectError struct {
	Field string // one of the Field constants
	Err   error  // a *CountryError for the country
}

func (e *SubjectError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *SubjectError) Unwrap() error { return e.Err }

// Normalize returns the subject with spaces trimmed, the country code in
// upper case and the common name in lower case, or an error that joins a
// *SubjectError for every field that is wrong.
func (s Subject) Normalize() (Subject, error) {
	var errs []error
	fail := func(field string, err error) {
		if err != nil {
			errs = append(errs, &SubjectError{Field: field, Err: err})
		}
	}
	n := Subject{State: strings.TrimSpace(s.State), Organization: strings.TrimSpace(s.Organization)}
	var err error
	n.Country, err = NormalizeCountry(s.Country)
	fail(FieldCountry, err)
	fail(FieldState, checkText(FieldState, n.State, maxState, "its full name, e.g. Berlin, not BE"))
	fail(FieldOrganization, checkText(FieldOrganization, n.Organization, maxOrganization,
		"the merchant's legal name, e.g. Acme GmbH"))
	n.CommonName, err = NormalizeHost(s.CommonName)
	if err == nil && len(n.CommonName) > maxCommonName {
		err = fmt.Errorf("common name %q is longer than %d characters, which certificates do not allow",
			n.CommonName, maxCommonName)
	}
	fail(FieldCommonName, err)
	return n, errors.Join(errs...)
}

func checkText(field, v string, limit int, want string) error {
	switch {
	case len(v) > 0 && v[0] == '-':
		return fmt.Errorf("%s %q starts with a hyphen: a flag given without its value?", field, v)
	case v == "":
		return fmt.Errorf("%s is empty: give %s", field, want)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case utf8.RuneCountInString(v) > limit:
		return fmt.Errorf("%s is longer than %d characters", field, limit)
	}
	return nil
}

// Name returns the subject as an X.509 name.
func (s Subject) Name() pkix.Name {
	return pkix.Name{Country: []string{s.Country}, Province: []string{s.State},
		Organization: []string{s.Organization}, CommonName: s.CommonName}
}

// String prints the subject in OpenSSL's order: C=DE, ST=Berlin, O=Acme GmbH, CN=api.acme.payrails.io.
func (s Subject) String() string {
	return fmt.Sprintf("C=%s, ST=%s, O=%s, CN=%s", s.Country, s.State, s.Organization, s.CommonName)
}

// CSR is a new private key and the certificate signing request made with
// it. KeyPEM is secret: write it with WriteFiles, never log it.
type CSR struct {
	Subject   Subject
	KeyType   KeyType
	Request   *x509.CertificateRequest
	CSRPEM    []byte // a "CERTIFICATE REQUEST" block, what the Payrails dashboard takes
	KeyPEM    []byte // "PRIVATE KEY", or "ENCRYPTED PRIVATE KEY" when made with a passphrase
	Encrypted bool
}

// NewCSR makes a key of type kt and a CSR for subj, as `openssl req -new
// -newkey rsa:4096 -nodes` does: no extensions, SHA-256 signature, subject
// C, ST, O, CN. subj is normalized first; an invalid subject is an error
// before any key is made. With a non-empty passphrase the key is encrypted
// as PKCS#8 PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), what OpenSSL 3 writes
// and reads; otherwise it is unencrypted PKCS#8, as with -nodes.
func NewCSR(subj Subject, kt KeyType, passphrase []byte) (*CSR, error) {
	subj, err := subj.Normalize()
	if err != nil {
		return nil, err
	}
	if kt == "" {
		kt = KeyRSA4096
	}
	key, err := newKey(kt)
	if err != nil {
		return nil, err
	}
	c, err := makeCSR(subj, kt, key)
	if err != nil {
		return nil, err
	}
	if c.KeyPEM, err = encodeKey(key, passphrase); err != nil {
		return nil, err
	}
	c.Encrypted = len(passphrase) > 0
	return c, nil
}

// NewTokenCSR makes the CSR for subj with a key that stays where it is (in
// a PKCS#11 token: Token.GenerateRSA), with the same subject checks as
// NewCSR. KeyPEM is nil: there is no key file to write (WriteRequest).
func NewTokenCSR(subj Subject, key crypto.Signer) (*CSR, error) {
	subj, err := subj.Normalize()
	if err != nil {
		return nil, err
	}
	kt := KeyRSA4096
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		kt = KeyECDSAP256
	}
	return makeCSR(subj, kt, key)
}

// makeCSR signs the request for subj with key and parses it back.
func makeCSR(subj Subject, kt KeyType, key crypto.Signer) (*CSR, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subj.Name()}, key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate request: %w", err)
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate request just made: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate request just made does not verify (the key signed wrongly): %w", err)
	}
	return &CSR{Subject: subj, KeyType: kt, Request: req,
		CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}, nil
}

// WriteRequest writes only domain.csr into dir (replacing an old one, as
// WriteFiles does), for a CSR whose key is in a token.
func (c *CSR) WriteRequest(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating folder %q: %w", dir, err)
	}
	csrPath := filepath.Join(dir, CSRFileName)
	if err := PlaceFile(csrPath, c.CSRPEM, 0o644, true); err != nil {
		return "", err
	}
	return csrPath, nil
}

func newKey(kt KeyType) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch kt {
	case KeyRSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	case KeyECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("key type %q: use %s or %s", kt, KeyRSA4096, KeyECDSAP256)
	}
	if err != nil {
		return nil, fmt.Errorf("generating the %s key: %w", kt, err)
	}
	return key, nil
}

// keyEncryption is how NewCSR encrypts a key. OpenSSL 3 uses the same KDF
// and cipher with 2048 iterations; 100,000 costs about 50 ms at every load
// of the folder, and makes guessing a passphrase from a stolen file fifty
// times dearer. Set explicitly: pkcs8.DefaultOpts is a mutable global.
var keyEncryption = &pkcs8.Opts{
	Cipher:  pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 100_000, HMACHash: crypto.SHA256},
}

// encodeKey returns key as PKCS#8 PEM, encrypted when passphrase is not empty.
func encodeKey(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding the key as PKCS#8: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, keyEncryption)
	if err != nil {
		return nil, fmt.Errorf("encrypting the key as PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// File names from Payrails' guide.
const (
	KeyFileName  = "domain.key" // the private key; never leaves the merchant
	CSRFileName  = "domain.csr" // the request uploaded in the dashboard
	CertFileName = "domain.pem" // the certificate downloaded from the dashboard
)

// WriteFiles writes KeyFileName (mode 0600) and CSRFileName (mode 0644)
// into dir, creating dir (mode 0700) if needed, and returns their paths.
// Each file appears complete or not at all (PlaceFile). Unless overwrite is
// true, an existing key file is left alone and the error wraps ErrExists;
// nothing is written then. A symbolic link at either name is refused
// (ErrNotRegular), with or without overwrite.
func (c *CSR) WriteFiles(dir string, overwrite bool) (keyPath, csrPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating folder %q: %w", dir, err)
	}
	keyPath, csrPath = filepath.Join(dir, KeyFileName), filepath.Join(dir, CSRFileName)
	if err := CheckPlace(csrPath, true); err != nil {
		return "", "", err
	}
	if err := PlaceFile(keyPath, c.KeyPEM, 0o600, overwrite); err != nil {
		return "", "", err
	}
	if err := PlaceFile(csrPath, c.CSRPEM, 0o644, true); err != nil {
		return "", "", err
	}
	return keyPath, csrPath, nil
}

// Read returns the passphrase as Load uses it: the first line of File, or
// Value when File is "". csr reads its --key-passphrase-file with it, so
// that the key it encrypts opens with the same file later.
func (p Passphrase) Read() ([]byte, error) {
	return (&passphrase{src: p}).load()
}
