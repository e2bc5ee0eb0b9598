package certs

import (
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
type Source struct {
	Dir        string
	CertFile   string
	KeyFile    string
	Passphrase Passphrase
}

// String names the source in messages: the folder, or "CERT + KEY".
func (s Source) String() string {
	if s.Dir != "" {
		return s.Dir
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
		if src.KeyFile != src.CertFile {
			files = append(files, readFile(src.KeyFile, roleKey, pass))
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
	pairs, findings := match(files, now)
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
// File names play no part: a key named cert.pem still pairs.
func match(files []*parsedFile, now time.Time) ([]*Pair, []Finding) {
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
			pairs = append(pairs, p)
		}
	}
	for _, f := range files {
		findings = append(findings, unmatchedCerts(f, matched)...)
	}
	return pairs, findings
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
		Certificate: &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: ref.cert},
		Leaf:        ref.cert,
		CertFile:    ref.file.Path,
		KeyFile:     keyFile.Path,
		Serial:      Serial(ref.cert),
		Fingerprint: Fingerprint(ref.cert.Raw),
		Validity:    validityAt(ref.cert, now),
	}
}

func unmatchedCerts(f *parsedFile, matched map[*x509.Certificate]bool) []Finding {
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
	return []Finding{{Severity: Warning, Code: CodeCertUnmatched, Path: f.Path,
		Message: fmt.Sprintf("holds certificate %q (serial %s) but no private key here matches it: add the "+
			"domain.key the CSR was made with (a new key needs a new CSR and certificate)",
			leaf.Subject.CommonName, Serial(leaf))}}
}
