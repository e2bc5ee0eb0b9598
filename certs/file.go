package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"

	"software.sslmate.com/src/go-pkcs12"
)

// Kind says what a file holds, in the words an operator uses.
type Kind string

// File kinds.
const (
	KindCertificate  Kind = "certificate"       // one certificate
	KindChain        Kind = "certificate chain" // a leaf followed by intermediates
	KindKey          Kind = "private key"       // unencrypted key
	KindEncryptedKey Kind = "encrypted private key"
	KindCertAndKey   Kind = "certificate and key" // both in one PEM file
	KindCSR          Kind = "certificate signing request"
	KindPKCS12       Kind = "PKCS#12 bundle"
	KindCABundle     Kind = "CA certificates"
	KindEmpty        Kind = "empty file"
	KindTruncated    Kind = "truncated PEM"
	KindUnrecognised Kind = "unrecognised"
	KindUnreadable   Kind = "unreadable"
	KindTokenKey     Kind = "key in a PKCS#11 token"
)

// maxFileSize bounds what is read from a certificate folder: a client
// certificate with its chain is a few KiB; a stray log file must not be.
const maxFileSize = 1 << 20

// File is what one file in a source held. Certs are public and safe to show;
// keys are never exposed.
type File struct {
	Path  string
	Kind  Kind
	Mode  fs.FileMode
	Certs []*x509.Certificate // in file order
	Keys  int                 // how many private keys it held (decrypted or not)
}

// role is what a file is expected to hold: anything (a folder entry), a
// certificate (--cert) or a key (--key).
type role int

const (
	roleAny role = iota
	roleCert
	roleKey
)

// parsedFile is a File plus the secret parts the pairing step needs.
type parsedFile struct {
	File
	keys      []crypto.Signer
	token     bool                  // a key in a PKCS#11 token, not a file
	oneKey    bool                  // that key was named alone (cert_file + key_uri)
	schemes   []tls.SignatureScheme // what the token can sign with the key; nil: all
	csr       bool
	encrypted bool
	findings  []Finding
}

func (p *parsedFile) add(sev Severity, code Code, format string, args ...any) {
	p.findings = append(p.findings, Finding{Severity: sev, Code: code, Path: p.Path, Message: fmt.Sprintf(format, args...)})
}

// readFile reads and classifies one file. It never fails: problems become
// findings on the result.
func readFile(path string, r role, pass *passphrase) *parsedFile {
	p := &parsedFile{File: File{Path: path}}
	data, st, err := readBounded(path)
	if st != nil {
		p.Mode = st.Mode()
	}
	switch {
	case errors.Is(err, safefile.ErrTooLarge):
		p.Kind = KindUnrecognised
		p.add(Warning, CodeTooLarge, "larger than %d bytes, not a certificate file; ignored", maxFileSize)
		return p
	case errors.Is(err, safefile.ErrNotRegular):
		p.Kind = KindUnreadable
		p.add(Error, CodeUnreadable, "%v; it is never opened (a FIFO would stall reloading); replace it with the "+
			"PEM or PKCS#12 file", err)
		return p
	case err != nil:
		p.Kind = KindUnreadable
		p.add(Error, CodeUnreadable, "cannot be read: %v; check the file's owner and permissions", err)
		return p
	case len(bytes.TrimSpace(data)) == 0:
		p.Kind = KindEmpty
		p.add(Warning, CodeEmptyFile, "is empty (a copy still in progress?); it is read again on the next change")
		return p
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		p.parsePEM(data, pass)
	} else {
		p.parseDER(data, pass)
	}
	p.classify(r)
	if p.Keys > 0 {
		p.checkKeyPermissions(st)
	}
	return p
}

// readBounded reads a file of the source: a regular file only, never
// waited on (safefile), at most maxFileSize bytes.
func readBounded(path string) ([]byte, fs.FileInfo, error) { return safefile.Read(path, maxFileSize) }

// checkKeyPermissions warns about a key file others can read. A key
// readable by its group only, when that group is this process's own, is
// how Kubernetes lets a non-root container read a Secret (fsGroup turns
// defaultMode 0400 into 0440): that gets a note, not a warning, so the
// warning keeps its meaning.
func (p *parsedFile) checkKeyPermissions(st fs.FileInfo) {
	if st == nil {
		return
	}
	perm := p.Mode.Perm()
	switch safefile.ExposureOf(st) {
	case safefile.OwnerOnly:
	case safefile.OwnGroup:
		p.add(Info, CodeKeyPermissions, "holds a private key readable by its group (mode %04o), which is this "+
			"process's own group, as Kubernetes' fsGroup arranges; fine while no other process shares that group", perm)
	default:
		p.add(Warning, CodeKeyPermissions, "holds a private key and is readable by group or others (mode %04o): "+
			"run `chmod 600 %s` (Kubernetes: defaultMode 0400 with the pod's fsGroup set to the container's group)", perm, p.Path)
	}
}

func (p *parsedFile) parsePEM(data []byte, pass *passphrase) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		p.parseBlock(b, pass)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		// pem.Decode stops at a block with no END line: the file is being
		// written, or was cut short.
		p.Kind = KindTruncated
		p.add(Error, CodeTruncated, "holds a PEM block without its END line: the file is half-written or "+
			"was cut short; copy it again (write to a temporary name, then mv it into place)")
	}
}

func (p *parsedFile) parseBlock(b *pem.Block, pass *passphrase) {
	switch {
	case b.Type == "CERTIFICATE" || b.Type == "X509 CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			p.add(Error, CodeBadBlock, "holds a CERTIFICATE block that does not parse (%v); download it again", err)
			return
		}
		p.Certs = append(p.Certs, c)
	case b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST":
		p.csr = true
	case isKeyBlock(b.Type):
		p.Keys++
		p.parseKey(b, pass)
	default:
		// EC PARAMETERS (openssl ecparam), PUBLIC KEY, PKCS7, DH PARAMETERS...
		p.add(Info, CodeIgnoredBlock, "holds a %q PEM block, which plays no part in client authentication; ignored", b.Type)
	}
}

func (p *parsedFile) parseKey(b *pem.Block, pass *passphrase) {
	var secret []byte
	if isEncryptedKeyBlock(b) {
		p.encrypted = true
		var err error
		if secret, err = pass.get(); err != nil {
			p.add(Error, CodePassphraseRead, "is an encrypted key, and the passphrase could not be read: %v", err)
			return
		}
	}
	key, err := ParseKeyBlock(b, secret)
	switch {
	case errors.Is(err, ErrPassphraseMissing):
		p.add(Error, CodePassphraseMissing, "is an encrypted private key and no passphrase is configured; set "+
			"key_passphrase_file (--key-passphrase-file) or PAYRAILS_PROXY_KEY_PASSPHRASE")
	case errors.Is(err, ErrPassphraseWrong):
		p.add(Error, CodePassphraseWrong, "is an encrypted private key and %s does not decrypt it; check that the "+
			"passphrase file holds the passphrase used when the key was made (a trailing newline is ignored)", pass.origin())
	case err != nil:
		p.add(Error, CodeKeyUnsupported, "holds a private key that cannot be used: %v", err)
	default:
		p.keys = append(p.keys, key)
	}
}

// parseDER handles binary files: a PKCS#12 bundle (.p12/.pfx), or a single
// DER certificate or CSR.
func (p *parsedFile) parseDER(data []byte, pass *passphrase) {
	if c, err := x509.ParseCertificate(data); err == nil {
		p.Certs = append(p.Certs, c)
		return
	}
	if _, err := x509.ParseCertificateRequest(data); err == nil {
		p.csr = true
		return
	}
	secret, perr := pass.get()
	key, leaf, chain, err := pkcs12.DecodeChain(data, string(secret))
	if err != nil && !looksLikePKCS12(err) {
		p.Kind = KindUnrecognised
		p.add(Info, CodeUnrecognised, "is neither PEM nor a DER certificate nor PKCS#12; ignored")
		return
	}
	p.Kind = KindPKCS12
	p.Keys = 1
	switch {
	case perr != nil:
		p.add(Error, CodePassphraseRead, "is a PKCS#12 bundle, and the passphrase could not be read: %v", perr)
	case errors.Is(err, pkcs12.ErrIncorrectPassword) && len(secret) == 0:
		p.add(Error, CodePassphraseMissing, "is a PKCS#12 bundle protected by a password and no passphrase is "+
			"configured; set key_passphrase_file (--key-passphrase-file) or PAYRAILS_PROXY_KEY_PASSPHRASE")
	case errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption):
		p.add(Error, CodePassphraseWrong, "is a PKCS#12 bundle and %s does not open it", pass.origin())
	case err != nil:
		p.add(Error, CodeKeyUnsupported, "is a PKCS#12 bundle that cannot be used: %v", err)
	default:
		signer, err := asSigner(key)
		if err != nil {
			p.add(Error, CodeKeyUnsupported, "is a PKCS#12 bundle whose key cannot be used: %v", err)
			return
		}
		p.keys = append(p.keys, signer)
		p.Certs = append(append(p.Certs, leaf), chain...)
	}
}

// looksLikePKCS12 reports whether DecodeChain got far enough to recognise
// a PKCS#12 structure: only password errors (or an unsupported but valid
// bundle) mean the bytes were PKCS#12.
func looksLikePKCS12(err error) bool {
	return errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption) ||
		errors.As(err, new(pkcs12.NotImplementedError))
}

// classify sets Kind from what was found, and reports contents that do not
// fit the file's role.
func (p *parsedFile) classify(r role) {
	if p.Kind != "" {
		return
	}
	switch {
	case len(p.Certs) > 0 && p.Keys > 0:
		p.Kind = KindCertAndKey
	case len(p.Certs) > 1:
		p.Kind = KindChain
		if allCA(p.Certs) {
			p.Kind = KindCABundle
		}
	case len(p.Certs) == 1:
		p.Kind = KindCertificate
		if allCA(p.Certs) {
			p.Kind = KindCABundle
		}
	case p.Keys > 0 && p.encrypted:
		p.Kind = KindEncryptedKey
	case p.Keys > 0:
		p.Kind = KindKey
	case p.csr:
		p.Kind = KindCSR
		p.add(Info, CodeCSR, "%s", csrMessage(p.Path, r == roleCert))
		if r == roleCert {
			p.findings[len(p.findings)-1].Severity = Error
		}
	default:
		p.Kind = KindUnrecognised
		if len(p.findings) == 0 {
			p.add(Info, CodeUnrecognised, "holds no certificate or key; ignored")
		}
	}
	switch {
	case r == roleCert && len(p.Certs) == 0 && p.Keys > 0:
		p.add(Error, CodeSwapped, "is given as the certificate but holds a private key: are --cert and --key swapped?")
	case r == roleKey && p.Keys == 0 && len(p.Certs) > 0:
		p.add(Error, CodeSwapped, "is given as the key but holds a certificate: are --cert and --key swapped?")
	}
}

func allCA(cs []*x509.Certificate) bool {
	for _, c := range cs {
		if !c.IsCA {
			return false
		}
	}
	return true
}
