package certs

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// Codes of the findings Inspect adds to a snapshot's.
const (
	CodeTooManyActive   Code = "too_many_active"   // more than MaxActive valid certificates name one host
	CodeNotPayrailsHost Code = "not_payrails_host" // the chosen certificate names no Payrails API host
	CodeOtherHost       Code = "other_host"        // the chosen certificate is for another Payrails host than the target
)

// MaxActive is how many certificates Payrails keeps active at a time.
const MaxActive = 2

// Inspection is what `check` shows about one source, computed from a Snapshot
// so that check and the proxy can never disagree: plain data, to print.
type Inspection struct {
	Source   string    // the folder, or "CERT + KEY"
	At       time.Time // the moment validity was judged (the snapshot's LoadedAt)
	Files    []InspectedFile
	Pairs    []Description // best first, as the proxy orders them; InUse marks the one it would use
	Reason   string        // why that pair, or "" for none
	Hosts    []HostGroup   // the host names valid certificates name, in order of first appearance
	Findings []Finding     // the snapshot's and Inspect's, most severe first
}

// InspectedFile is one file of the source.
type InspectedFile struct {
	Path  string
	Kind  Kind
	Mode  fs.FileMode
	Keys  int
	Certs []CertSummary // in file order
}

// CertSummary names a certificate found in a file.
type CertSummary struct {
	CommonName string
	Serial     string
	IsCA       bool
}

// HostGroup groups the valid certificates that name one host.
type HostGroup struct {
	Name     string
	Payrails *PayrailsHost // nil when the name is not a Payrails API host
	Serials  []string      // of the valid certificates naming it, best first
}

// Ready reports whether the proxy would have a certificate to present.
func (r *Inspection) Ready() bool { return r.ChosenPair() != nil }

// ChosenPair returns the pair the proxy would use, or nil.
func (r *Inspection) ChosenPair() *Description {
	if i := slices.IndexFunc(r.Pairs, func(d Description) bool { return d.InUse }); i >= 0 {
		return &r.Pairs[i]
	}
	return nil
}

// Inspect turns a snapshot into an Inspection and adds what only a whole view
// shows: more than MaxActive valid certificates for one host, a chosen
// certificate that names no Payrails API host, or (when target is not "")
// one for another Payrails host than target, the host the proxy will call.
func Inspect(snap *Snapshot, target string) *Inspection {
	r := &Inspection{Source: snap.Source, At: snap.LoadedAt, Pairs: snap.Describe(), Reason: snap.Reason}
	for _, f := range snap.Files {
		r.Files = append(r.Files, inspectFile(f))
	}
	r.Hosts = groupHosts(r.Pairs)
	findings := slices.Clone(snap.Findings)
	findings = append(findings, tooManyActive(r)...)
	findings = append(findings, hostFindings(r, target)...)
	slices.SortStableFunc(findings, func(a, b Finding) int { return int(b.Severity) - int(a.Severity) })
	r.Findings = findings
	return r
}

func inspectFile(f File) InspectedFile {
	fr := InspectedFile{Path: f.Path, Kind: f.Kind, Mode: f.Mode, Keys: f.Keys}
	for _, c := range f.Certs {
		fr.Certs = append(fr.Certs, CertSummary{CommonName: c.Subject.CommonName, Serial: Serial(c), IsCA: c.IsCA})
	}
	return fr
}

// groupHosts lists, per host name, the valid certificates naming it.
func groupHosts(pairs []Description) []HostGroup {
	var hosts []HostGroup
	for _, p := range pairs {
		if p.Validity != Valid {
			continue
		}
		for _, n := range hostNames(p.CommonName, p.DNSNames) {
			i := slices.IndexFunc(hosts, func(h HostGroup) bool { return h.Name == n })
			if i < 0 {
				h := HostGroup{Name: n}
				if ph, ok := ParsePayrailsHost(n); ok {
					h.Payrails = &ph
				}
				hosts = append(hosts, h)
				i = len(hosts) - 1
			}
			hosts[i].Serials = append(hosts[i].Serials, p.Serial)
		}
	}
	return hosts
}

func tooManyActive(r *Inspection) []Finding {
	var out []Finding
	for _, h := range r.Hosts {
		if len(h.Serials) <= MaxActive {
			continue
		}
		out = append(out, Finding{Severity: Warning, Code: CodeTooManyActive, Path: r.Source,
			Message: fmt.Sprintf("%d valid certificates name %s (serials %s), but Payrails keeps at most %d "+
				"active at a time, so the older ones are probably revoked: keep the %d newest here and remove "+
				"the others (and revoke them in the dashboard if they are still active)",
				len(h.Serials), h.Name, strings.Join(h.Serials, ", "), MaxActive, MaxActive)})
	}
	return out
}

// hostFindings checks the chosen certificate's names against Payrails'
// hosts and against target.
func hostFindings(r *Inspection, target string) []Finding {
	p := r.ChosenPair()
	if p == nil {
		return nil
	}
	if len(p.Payrails) == 0 {
		return []Finding{{Severity: Warning, Code: CodeNotPayrailsHost, Path: p.CertFile,
			Message: fmt.Sprintf("the certificate in use (serial %s) is for %q, which is not a Payrails API host "+
				"(live api.<company>.payrails.io, staging <company>-api.staging.payrails.io); fine for a test "+
				"server, but Payrails issues certificates for its own hosts", p.Serial, p.CommonName)}}
	}
	th, ok := ParsePayrailsHost(target)
	if !ok || slices.ContainsFunc(p.Payrails, func(h PayrailsHost) bool { return h.Host == th.Host }) {
		return nil
	}
	return []Finding{{Severity: Warning, Code: CodeOtherHost, Path: p.CertFile,
		Message: fmt.Sprintf("the certificate in use (serial %s) is for the %s (%s), but the target %s is the "+
			"%s: each environment has its own certificates; use the domain.pem made for %s",
			p.Serial, p.Payrails[0], p.Payrails[0].Host, th.Host, th, th.Host)}}
}
