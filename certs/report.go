package certs

import (
	"crypto/x509"
	"fmt"
	"time"
)

// Report is a plain, JSON-ready view of a Store for the admin endpoints:
// the certificate in use, the candidates, the files, the findings and the
// reload history. It holds no key material, by construction: only
// certificate metadata and file names are copied into it.
type Report struct {
	Upstream   string        `json:"upstream"`
	Source     string        `json:"source"`
	Ready      bool          `json:"ready"`
	Error      string        `json:"error,omitempty"` // why not ready
	InUse      *CertInfo     `json:"in_use"`
	Reason     string        `json:"reason,omitempty"` // why InUse was chosen
	Candidates []CertInfo    `json:"candidates"`
	Files      []FileInfo    `json:"files"`
	Findings   []FindingInfo `json:"findings"`
	LoadedAt   time.Time     `json:"loaded_at"`
	Reloads    ReloadInfo    `json:"reloads"`
}

// CertInfo describes one certificate.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint_sha256"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Validity    Validity  `json:"validity"`
	CertFile    string    `json:"cert_file"`
	KeyFile     string    `json:"key_file"`
}

// FileInfo describes one file of the source.
type FileInfo struct {
	Path string `json:"path"`
	Kind Kind   `json:"kind"`
	Mode string `json:"mode"`
}

// FindingInfo is a Finding for JSON.
type FindingInfo struct {
	Severity string `json:"severity"`
	Code     Code   `json:"code"`
	File     string `json:"file"`
	Message  string `json:"message"`
}

// ReloadInfo is the reload history.
type ReloadInfo struct {
	Swapped     uint64    `json:"swapped"`
	Unchanged   uint64    `json:"unchanged"`
	Failed      uint64    `json:"failed"`
	LastAttempt time.Time `json:"last_attempt"`
	LastResult  Result    `json:"last_result"`
	LastError   string    `json:"last_error,omitempty"`
	LastSuccess time.Time `json:"last_success"`
}

// Report describes the store now. Safe for concurrent use.
func (s *Store) Report() Report {
	snap, st := s.Current(), s.Stats()
	r := Report{
		Upstream: s.name, Source: snap.Source, LoadedAt: snap.LoadedAt, Reason: snap.Reason,
		Candidates: []CertInfo{}, Files: []FileInfo{}, Findings: []FindingInfo{},
		Reloads: ReloadInfo(st),
	}
	if err := s.Ready(); err != nil {
		r.Error = err.Error()
	} else {
		r.Ready = true
	}
	for _, p := range snap.Pairs {
		info := certInfo(p)
		if p == snap.Chosen {
			r.InUse = &info
		}
		r.Candidates = append(r.Candidates, info)
	}
	for _, f := range snap.Files {
		r.Files = append(r.Files, FileInfo{Path: f.Path, Kind: f.Kind, Mode: fmt.Sprintf("%04o", f.Mode.Perm())})
	}
	for _, f := range snap.Findings {
		r.Findings = append(r.Findings, FindingInfo{Severity: f.Severity.String(), Code: f.Code, File: f.Path, Message: f.Message})
	}
	return r
}

func certInfo(p *Pair) CertInfo {
	c := p.Leaf
	return CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), DNSNames: c.DNSNames, Serial: p.Serial,
		Fingerprint: p.Fingerprint, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Validity: p.Validity,
		CertFile: p.CertFile, KeyFile: p.KeyFile,
	}
}

// Ready returns nil when a valid certificate is presented now, else why not.
func (s *Store) Ready() error {
	if s.Certificate() != nil {
		return nil
	}
	snap := s.Current()
	if snap.Chosen != nil { // chosen at load time, expired since
		return fmt.Errorf("the certificate in use (serial %s) expired on %s; drop a new one into %s",
			snap.Chosen.Serial, snap.Chosen.NotAfter().UTC().Format(time.RFC3339), snap.Source)
	}
	return snap.Err()
}

// Notes are non-fatal remarks for the readiness endpoint, such as a
// certificate expiring within ExpiryWarning.
func (s *Store) Notes() []string {
	var notes []string
	for _, f := range s.Current().Findings {
		if f.Code == CodeExpiresSoon {
			notes = append(notes, f.Message)
		}
	}
	return notes
}

// InUse returns the leaf presented now, or nil.
func (s *Store) InUse() *x509.Certificate {
	if c := s.Certificate(); c != nil {
		return c.Leaf
	}
	return nil
}
