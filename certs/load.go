package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Source says where one upstream's client certificate comes from: a folder
// (Dir) or a pair of files (CertFile and KeyFile). Exactly one form is set.
// With Token, the private keys are in a PKCS#11 token instead of files:
// with Dir every certificate in the folder is paired with the token's key
// of the same public key (key files in the folder are reported and not
// used); with CertFile (and no KeyFile) the token's one selected key.
type Source struct {
	Dir        string
	CertFile   string
	KeyFile    string
	Passphrase Passphrase
	Token      *Token // nil: keys from files
}

// String names the source in messages: the folder, or "CERT + KEY"
// (the key's URI for a key in a token).
func (s Source) String() string {
	if s.Dir != "" {
		return s.Dir
	}
	if s.Token != nil {
		return s.CertFile + " + " + s.Token.URI()
	}
	return s.CertFile + " + " + s.KeyFile
}

// Load reads the source completely and chooses the pair to present at time
// now. It never fails and never panics: every problem becomes a Finding, and
// a result without a usable pair has a nil Chosen and a non-nil Err.
func Load(src Source, now time.Time) *Snapshot {
	snap := &Snapshot{Source: src.String(), LoadedAt: now}
	pass := &passphrase{src: src.Passphrase}
	var files []*parsedFile
	if src.Dir != "" {
		paths, findings := listDir(src.Dir)
		snap.Findings = append(snap.Findings, findings...)
		for _, p := range paths {
			files = append(files, readFile(p, roleAny, pass))
		}
	} else {
		files = append(files, readFile(src.CertFile, roleCert, pass))
		if src.Token == nil && src.KeyFile != src.CertFile {
			files = append(files, readFile(src.KeyFile, roleKey, pass))
		}
	}
	if src.Token != nil {
		for _, f := range files {
			if len(f.keys) > 0 || f.Keys > 0 {
				f.keys = nil
				f.add(Warning, CodeKeyOnDisk, "holds a private key on disk, which is not used: the keys come from the "+
					"token (key_uri); delete this file, keeping the key only in the token is the point of using one")
			}
		}
	}
	for _, f := range files {
		snap.Files = append(snap.Files, f.File)
		snap.Findings = append(snap.Findings, f.findings...)
	}
	if pass.warning != "" {
		snap.Findings = append(snap.Findings, Finding{Severity: Warning, Code: CodeSecretPermissions,
			Path: pass.src.File, Message: pass.warning})
	}
	if src.Token != nil {
		keys, finding := tokenLoad(src.Token)
		if finding != nil {
			snap.Findings = append(snap.Findings, *finding)
		}
		for _, k := range keys {
			files = append(files, &parsedFile{File: File{Path: k.uri, Kind: KindTokenKey, Keys: 1},
				keys: []crypto.Signer{k.signer}, schemes: k.schemes, token: true, oneKey: src.Dir == ""})
		}
	}
	pairs, findings := match(files, now, src.Token != nil)
	snap.Pairs = pairs
	snap.Findings = append(snap.Findings, findings...)
	choose(snap, now)
	return snap
}

// listDir returns the candidate files of a folder in name order: regular
// files and symlinks to regular files. Hidden names are skipped: they are
// editor swap files and the Kubernetes atomic writer's "..data" machinery,
// whose files are reached through the visible symlinks.
func listDir(dir string) ([]string, []Finding) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []Finding{{Severity: Error, Code: CodeUnreadable, Path: dir,
			Message: fmt.Sprintf("folder cannot be read: %v; check that it exists and is mounted", err)}}
	}
	var paths []string
	var special []Finding
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // follows symlinks
		switch {
		case err != nil || st.IsDir():
			continue
		case !st.Mode().IsRegular():
			// Never opened: a FIFO would stall reloading. readFile checks the
			// file it opens too, for one swapped in after this check.
			special = append(special, Finding{Severity: Warning, Code: CodeNotRegular, Path: p,
				Message: "is not a regular file (a FIFO, socket or device); ignored, never opened: remove it"})
			continue
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return nil, append(special, Finding{Severity: Error, Code: CodeEmptyDir, Path: dir,
			Message: "folder holds no files; put the certificate downloaded from the Payrails dashboard " +
				"(domain.pem) and its private key (domain.key) here"})
	}
	return paths, special
}

type certRef struct {
	cert  *x509.Certificate
	file  *parsedFile
	index int
}

// match pairs every key with the certificate that holds its public key.
// File names play no part: a key named cert.pem still pairs. token says
// that the keys come from a PKCS#11 token (the advice differs).
func match(files []*parsedFile, now time.Time, token bool) ([]*Pair, []Finding) {
	var certs []certRef
	for _, f := range files {
		for i, c := range f.Certs {
			certs = append(certs, certRef{c, f, i})
		}
	}
	var (
		pairs    []*Pair
		findings []Finding
		matched  = map[*x509.Certificate]bool{}
		seen     = map[string]bool{}
	)
	for _, f := range files {
		for _, key := range f.keys {
			ref, ok := findCert(certs, f, key)
			if !ok && f.token {
				findings = append(findings, tokenKeyUnmatched(f))
				continue
			}
			if !ok {
				findings = append(findings, Finding{Severity: Warning, Code: CodeKeyUnmatched, Path: f.Path,
					Message: "holds a private key that matches no certificate here: add the certificate issued " +
						"for the CSR made with this key, or remove the key"})
				continue
			}
			matched[ref.cert] = true
			p := newPair(ref, f, key, now)
			if seen[p.Fingerprint] {
				continue // the same certificate in two files
			}
			seen[p.Fingerprint] = true
			for _, ic := range intermediates(p, certs) {
				p.Certificate.Certificate = append(p.Certificate.Certificate, ic.cert.Raw)
				if !matched[ic.cert] {
					matched[ic.cert] = true
					findings = append(findings, Finding{Severity: Info, Code: CodeChain, Path: ic.file.Path,
						Message: fmt.Sprintf("holds the intermediate CA certificate %q, sent after the certificate it "+
							"issued (serial %s) so that the server can build the chain", ic.cert.Subject.CommonName, p.Serial)})
				}
			}
			pairs = append(pairs, p)
		}
	}
	for _, f := range files {
		findings = append(findings, unmatchedCerts(f, matched, token)...)
	}
	return pairs, findings
}

// tokenKeyUnmatched explains a key in a token that no certificate belongs
// to: with a folder, the normal state while a CSR waits for its
// certificate; with one certificate file, the wrong key.
func tokenKeyUnmatched(f *parsedFile) Finding {
	if f.oneKey {
		return Finding{Severity: Error, Code: CodeTokenKeyUnmatched, Path: f.Path,
			Message: "is a key in the token that does not belong to the certificate (cert_file): the certificate was " +
				"issued for a CSR made with another key; name that key's object= in key_uri, or use the certificate " +
				"issued for this key's CSR"}
	}
	return Finding{Severity: Info, Code: CodeTokenKeyUnmatched, Path: f.Path,
		Message: "is a key in the token that no certificate in the folder belongs to (a key whose CSR awaits its " +
			"certificate?); when Payrails returns the certificate, drop it in the folder and it is paired with this key"}
}

func findCert(certs []certRef, keyFile *parsedFile, key crypto.Signer) (certRef, bool) {
	var found *certRef
	for i := range certs {
		if !publicKeyEqual(certs[i].cert.PublicKey, key.Public()) {
			continue
		}
		if certs[i].file == keyFile {
			return certs[i], true // prefer the certificate stored with the key
		}
		if found == nil {
			found = &certs[i]
		}
	}
	if found == nil {
		return certRef{}, false
	}
	return *found, true
}

func newPair(ref certRef, keyFile *parsedFile, key crypto.Signer, now time.Time) *Pair {
	chain := [][]byte{ref.cert.Raw}
	for i, c := range ref.file.Certs {
		if i != ref.index {
			chain = append(chain, c.Raw)
		}
	}
	return &Pair{
		Certificate: &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: ref.cert,
			SupportedSignatureAlgorithms: keyFile.schemes},
		Leaf:        ref.cert,
		CertFile:    ref.file.Path,
		KeyFile:     keyFile.Path,
		Serial:      Serial(ref.cert),
		Fingerprint: Fingerprint(ref.cert.Raw),
		Validity:    validityAt(ref.cert, now),
	}
}

// maxChain bounds the certificates sent: a leaf and a few intermediates.
const maxChain = 6

// intermediates finds, among the certificates of other files, the CA
// certificates that continue p's chain upwards (issuer name, key identifier
// and signature must all match, RFC 5280 §4.2.1.1), stopping before a
// self-signed root, which the server has and which is never sent. Some
// CAs hand out the intermediate as a file of its own (ghostunnel #322).
func intermediates(p *Pair, all []certRef) []certRef {
	var out []certRef
	have := map[string]bool{}
	for _, der := range p.Certificate.Certificate {
		have[string(der)] = true
	}
	last := p.Certificate.Certificate[len(p.Certificate.Certificate)-1]
	cur, err := x509.ParseCertificate(last)
	for err == nil && len(p.Certificate.Certificate)+len(out) < maxChain && !selfSigned(cur) {
		next, ok := issuerOf(cur, all, have)
		if !ok || selfSigned(next.cert) {
			break
		}
		out = append(out, next)
		have[string(next.cert.Raw)] = true
		cur = next.cert
	}
	return out
}

func issuerOf(c *x509.Certificate, all []certRef, have map[string]bool) (certRef, bool) {
	for _, r := range all {
		ca := r.cert
		if have[string(ca.Raw)] || !ca.IsCA || !bytes.Equal(ca.RawSubject, c.RawIssuer) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
			continue
		}
		if c.CheckSignatureFrom(ca) == nil {
			return r, true
		}
	}
	return certRef{}, false
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

func unmatchedCerts(f *parsedFile, matched map[*x509.Certificate]bool, token bool) []Finding {
	if len(f.Certs) == 0 {
		return nil
	}
	for _, c := range f.Certs {
		if matched[c] {
			return nil // a chain whose leaf was paired (or a CA with its key, as for connect: mitm)
		}
	}
	if f.Kind == KindCABundle {
		return []Finding{{Severity: Info, Code: CodeCABundle, Path: f.Path,
			Message: "holds only CA certificates and no key: not a client certificate; ignored (a CA that " +
				"verifies the server belongs in ca_file)"}}
	}
	leaf := f.Certs[0]
	if token {
		return []Finding{{Severity: Warning, Code: CodeCertUnmatched, Path: f.Path,
			Message: fmt.Sprintf("holds certificate %q (serial %s) but no key in the token matches it: it was issued "+
				"for a CSR made with a key that is not in this token (check token= in key_uri, or make a new key with "+
				"`payrails-mtls-proxy csr --key-uri` and get a certificate for it)", leaf.Subject.CommonName, Serial(leaf))}}
	}
	return []Finding{{Severity: Warning, Code: CodeCertUnmatched, Path: f.Path,
		Message: fmt.Sprintf("holds certificate %q (serial %s) but no private key here matches it: add the "+
			"domain.key the CSR was made with (a new key needs a new CSR and certificate)",
			leaf.Subject.CommonName, Serial(leaf))}}
}
