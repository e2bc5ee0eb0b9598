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
	Ready      bool          `json:"ready"`            // a valid certificate is presented now
	Error      string        `json:"error,omitempty"`  // why not ready
	InUse      *Description  `json:"in_use"`           // the chosen pair, nil for none; expired since if not Ready
	Reason     string        `json:"reason,omitempty"` // why InUse was chosen
	Candidates []Description `json:"candidates"`       // every pair, best first, InUse among them
	Files      []FileInfo    `json:"files"`
	Findings   []FindingInfo `json:"findings"`
	LoadedAt   time.Time     `json:"loaded_at"`
	Reloads    ReloadInfo    `json:"reloads"`
	Token      *TokenInfo    `json:"pkcs11_token,omitempty"` // the keys' token; nil for keys in files
}

// TokenInfo is the state of a PKCS#11 token holding the keys (no PIN, no
// key material).
type TokenInfo struct {
	URI        string `json:"uri"`
	Open       bool   `json:"open"`
	Error      string `json:"error,omitempty"` // why not open, and that it is retried
	Signatures uint64 `json:"signatures"`
	Failures   uint64 `json:"signature_failures"`
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
		Candidates: snap.Describe(), Files: []FileInfo{}, Findings: []FindingInfo{},
		Reloads: ReloadInfo(st),
	}
	if err := s.Ready(); err != nil {
		r.Error = err.Error()
	} else {
		r.Ready = true
	}
	for i := range r.Candidates {
		if r.Candidates[i].InUse {
			in := r.Candidates[i]
			r.InUse = &in
		}
	}
	if t := s.src.Token; t != nil {
		made, failed := t.Signatures()
		r.Token = &TokenInfo{URI: t.URI(), Open: true, Signatures: made, Failures: failed}
		if err := t.Healthy(); err != nil {
			r.Token.Open, r.Token.Error = false, err.Error()
		}
	}
	for _, f := range snap.Files {
		r.Files = append(r.Files, FileInfo{Path: f.Path, Kind: f.Kind, Mode: fmt.Sprintf("%04o", f.Mode.Perm())})
	}
	for _, f := range snap.Findings {
		r.Findings = append(r.Findings, FindingInfo{Severity: f.Severity.String(), Code: f.Code, File: f.Path, Message: f.Message})
	}
	return r
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
