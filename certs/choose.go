package certs

import (
	"fmt"
	"sort"
	"time"
)

// choose orders the pairs best first, picks the one to present, and sets
// the severity of validity findings according to whether a valid pair
// exists. The rule (DESIGN.md § Certificates): among valid pairs the latest
// NotBefore wins, because Payrails allows two active certificates and the
// newer one is the rotation target; an expired or not-yet-valid certificate
// is never chosen.
func choose(snap *Snapshot, now time.Time) {
	sort.SliceStable(snap.Pairs, func(i, j int) bool { return better(snap.Pairs[i], snap.Pairs[j]) })
	valid := 0
	for _, p := range snap.Pairs {
		if p.Validity == Valid {
			valid++
		}
	}
	if valid > 0 {
		snap.Chosen = snap.Pairs[0]
		snap.digest = chainDigest(snap.Chosen.Certificate.Certificate)
		snap.Reason = reason(valid, len(snap.Pairs)-valid)
	}
	for _, p := range snap.Pairs {
		if f, ok := validityFinding(p, valid > 0); ok {
			snap.Findings = append(snap.Findings, f)
		}
	}
	if snap.Chosen == nil {
		promoteCSRs(snap.Findings)
		return
	}
	if left := snap.Chosen.NotAfter().Sub(now); left < ExpiryWarning {
		snap.Findings = append(snap.Findings, Finding{Severity: Warning, Code: CodeExpiresSoon, Path: snap.Chosen.CertFile,
			Message: fmt.Sprintf("the certificate in use (serial %s) expires in %d days, on %s: make a new CSR, "+
				"upload it in the Payrails dashboard and drop the new domain.pem and domain.key here",
				snap.Chosen.Serial, int(left.Hours()/24), snap.Chosen.NotAfter().UTC().Format(time.RFC3339))})
	}
}

// better orders valid before invalid, then latest NotBefore, then latest
// NotAfter, then file name, so that the choice is deterministic.
func better(a, b *Pair) bool {
	if (a.Validity == Valid) != (b.Validity == Valid) {
		return a.Validity == Valid
	}
	if !a.NotBefore().Equal(b.NotBefore()) {
		return a.NotBefore().After(b.NotBefore())
	}
	if !a.NotAfter().Equal(b.NotAfter()) {
		return a.NotAfter().After(b.NotAfter())
	}
	return a.CertFile < b.CertFile
}

func reason(valid, invalid int) string {
	r := "the only valid certificate"
	if valid > 1 {
		r = fmt.Sprintf("the newest (latest NotBefore) of %d valid certificates", valid)
	}
	if invalid > 0 {
		r += fmt.Sprintf("; %d expired or not yet valid ignored", invalid)
	}
	return r
}

func validityFinding(p *Pair, anyValid bool) (Finding, bool) {
	sev := Error
	if anyValid {
		sev = Info // an old certificate left after a rotation: harmless
	}
	switch p.Validity {
	case Expired:
		return Finding{Severity: sev, Code: CodeExpired, Path: p.CertFile,
			Message: fmt.Sprintf("certificate (serial %s) expired on %s; it is never used: download the current "+
				"certificate from the Payrails dashboard, or remove this one", p.Serial, p.NotAfter().UTC().Format(time.RFC3339))}, true
	case NotYetValid:
		return Finding{Severity: sev, Code: CodeNotYetValid, Path: p.CertFile,
			Message: fmt.Sprintf("certificate (serial %s) is not valid before %s; it is used from then on "+
				"(if it should be valid already, check this machine's clock)", p.Serial, p.NotBefore().UTC().Format(time.RFC3339))}, true
	}
	return Finding{}, false
}

// promoteCSRs turns a CSR lying in the folder into the explanation of why
// nothing works when no certificate could be used: it is then almost always
// the CSR dropped where the certificate belongs.
func promoteCSRs(fs []Finding) {
	for i := range fs {
		if fs[i].Code == CodeCSR {
			fs[i].Severity = Error
			fs[i].Message = csrMessage(fs[i].Path, true)
		}
	}
}
