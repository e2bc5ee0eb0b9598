package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Which certificate an upstream presents (DESIGN.md § Verification,
// failover and warm connections).
//
// The certificate source offers its valid candidates, best first (certs
// chooses by NotBefore). With verification on, a candidate takes traffic
// only once the upstream has accepted it: a TLS connection presenting it
// and one HEAD verify_path request, whose connection then becomes the new
// generation's first idle connection. Until then the certificate in use
// keeps serving. A refused candidate is verified again with back-off (a
// staging certificate may be accepted minutes after it was issued). The
// certificate in use is replaced without verification only when it stops
// being usable: it left the folder, expires within expiryMargin, or the
// upstream refuses it (failover, which replays the refused requests on the
// next candidate the upstream accepts).
//
// All of it is decided under selector.mu, by the upstream's background loop
// (run) and, for failover, by the request that met the refusal; the hot
// path only loads the published generation.

// VerifyResult is what the upstream said of a certificate.
type VerifyResult string

// Verification results; they are the result label of
// payrails_proxy_certificate_verifications_total.
const (
	VerifyPending  VerifyResult = "pending"  // not asked yet
	VerifyAccepted VerifyResult = "accepted" // an HTTP answer that is not a refusal
	VerifyRefused  VerifyResult = "refused"  // a TLS alert about it, or an edge's refusal page
	VerifyUnknown  VerifyResult = "unknown"  // the upstream could not be asked (unreachable, timeout)
)

// Verification back-off: a refused or unknown candidate is asked again
// after verifyMinBackoff, doubling up to verifyMaxBackoff.
const (
	verifyMinBackoff = 5 * time.Second
	verifyMaxBackoff = 10 * time.Minute
)

// expiryMargin: a certificate in use that expires within it is replaced
// by a valid candidate even before the upstream has accepted that one.
const expiryMargin = 5 * time.Minute

// CertificateStatus is what an upstream knows of one candidate certificate,
// for /certs and the metrics. Plain data.
type CertificateStatus struct {
	Fingerprint string       `json:"fingerprint_sha256"` // of the leaf, AB:CD:... as /certs shows it
	Serial      string       `json:"serial"`
	InUse       bool         `json:"in_use"` // the certificate the upstream presents now
	Result      VerifyResult `json:"verification"`
	Reason      string       `json:"verification_reason,omitempty"` // the upstream's words: alert, page title, error
	At          time.Time    `json:"verified_at,omitzero"`          // of the last verification
	Next        time.Time    `json:"next_verification,omitzero"`    // when it is asked again (refused, unknown)
}

// certState is the selector's record of one candidate.
type certState struct {
	CertificateStatus
	backoff  time.Duration
	logged   string      // the reason last logged, so that each is logged once
	verified *generation // accepted and not yet published: its connection waits there
}

// selector is an upstream's choice of certificate. The zero value is ready.
type selector struct {
	mu     sync.Mutex            // serialises evaluate, verification and failover
	states map[string]*certState // by fingerprint, for the current candidates only
	stuck  string                // why no candidate can serve (all refused); "" otherwise

	// What readers see (Ready, CertificateStatuses) is copied out under
	// viewMu, so that they never wait for a verification in progress.
	viewMu    sync.Mutex
	view      []CertificateStatus
	viewStuck string
}

// fingerprint identifies a certificate across reloads (a reload gives an
// unchanged pair a new *tls.Certificate, so pointers do not): the SHA-256
// of the leaf as `openssl x509 -fingerprint -sha256` prints it, AB:CD:...,
// as /certs shows it.
func fingerprint(c *tls.Certificate) string {
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.Certificate[0])
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(sum)*3)
	for i, v := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[v>>4], hexDigits[v&15])
	}
	return string(b)
}

// track makes the selector's states those of cands, keeping what is known.
func (s *selector) track(cands []*tls.Certificate) {
	next := make(map[string]*certState, len(cands))
	for _, c := range cands {
		fp := fingerprint(c)
		st := s.states[fp]
		if st == nil {
			st = &certState{CertificateStatus: CertificateStatus{Fingerprint: fp, Serial: serialOf(c), Result: VerifyPending}}
		}
		next[fp] = st
	}
	for fp, st := range s.states {
		if next[fp] == nil && st.verified != nil {
			st.verified.retire()
		}
	}
	s.states = next
}

func (st *certState) due(now time.Time) bool {
	return st.Result == VerifyPending || ((st.Result == VerifyRefused || st.Result == VerifyUnknown) && !now.Before(st.Next))
}

// evaluate publishes the generation of the certificate to present, from
// the source's candidates and what the upstream said of them, verifying
// what is due on the way. It runs under s.mu.
func (u *Upstream) evaluate(ctx context.Context) {
	cands := u.certs.Candidates()
	u.sel.track(cands)
	defer u.publishView()
	cur := u.gen.Load()
	now := time.Now()
	if !u.verify || len(cands) == 0 {
		u.present(u.unrefused(cands, now), nil)
		return
	}
	curFP := ""
	if cur != nil {
		curFP = cur.fp
	}
	usable := cur != nil && u.sel.states[curFP] != nil && u.sel.states[curFP].Result != VerifyRefused &&
		now.Add(expiryMargin).Before(cur.notAfter)
	for _, c := range cands {
		st := u.sel.states[fingerprint(c)]
		switch {
		case st.Fingerprint == curFP && usable:
			if st.due(now) { // in use but never asked (the start): ask, it keeps serving meanwhile
				u.verifyInUse(ctx, cur, st)
			}
			if st.Result != VerifyRefused {
				u.sel.stuck = ""
				return
			}
			// Refused: as in failover, another candidate takes over, or
			// readiness says why none can (allRefused), now and not at the
			// next verification.
			usable = false
		case st.Result == VerifyAccepted:
			u.present(c, st)
			return
		case cur == nil && st.Result != VerifyRefused:
			// At start, or after nothing was valid: present at once; the
			// loop asks the upstream next.
			u.present(c, nil)
			return
		case st.due(now):
			if u.verifyCandidate(ctx, c, st) == VerifyAccepted {
				u.present(c, st)
				return
			}
		}
		if !usable && st.Result != VerifyRefused {
			u.present(c, nil) // the one in use cannot serve: an unverified valid one is better
			return
		}
	}
	if !usable {
		u.allRefused(cands, cur)
	}
}

// unrefused is, without verification, the best candidate the upstream
// has not refused lately (a refusal met in use counts until its next
// verification would be due), or the best when it refused them all.
func (u *Upstream) unrefused(cands []*tls.Certificate, now time.Time) *tls.Certificate {
	for _, c := range cands {
		if st := u.sel.states[fingerprint(c)]; st.Result != VerifyRefused || st.due(now) {
			return c
		}
	}
	return first(cands)
}

// present publishes the generation for c (nil: none), reusing the
// generation in use when it presents c already, or the verified one. A
// certificate in use that was refused and has now been accepted moves to
// its verification's generation all the same: that one's connection and
// TLS sessions were made under the upstream's new verdict (the refused
// one's under the old), it clears the stuck state, and it must not be
// left open unused.
func (u *Upstream) present(c *tls.Certificate, st *certState) {
	old := u.gen.Load()
	fp := fingerprint(c)
	if old != nil && old.fp == fp && (st == nil || st.verified == nil) {
		return
	}
	var g *generation
	switch {
	case c == nil:
	case st != nil && st.verified != nil:
		g, st.verified = st.verified, nil
	default:
		g = u.newGeneration(c)
	}
	u.gen.Store(g)
	if old != nil {
		old.retire()
	}
	if old != nil && g != nil && old.fp != g.fp && u.resultOf(old.fp) == VerifyRefused {
		u.m.failover(u.name)
		u.log.Warn("the upstream refused the certificate in use; failed over to another certificate",
			zap.String(fieldUpstream, u.name), zap.String("old_serial", old.serial), zap.String(fieldSerial, g.serial),
			zap.String("reason", u.sel.states[old.fp].Reason))
	}
	if g != nil {
		u.sel.stuck = ""
		u.log.Info("presenting the client certificate", zap.String(fieldUpstream, u.name), zap.String(fieldSerial, g.serial),
			zap.String("fingerprint", g.fp), zap.Time("not_after", g.notAfter), zap.String("verification", string(u.resultOf(fp))))
	}
	u.kick()
}

func (u *Upstream) resultOf(fp string) VerifyResult {
	if st := u.sel.states[fp]; st != nil {
		return st.Result
	}
	return VerifyPending
}

// allRefused: the upstream refuses every candidate. The one in use (or the
// best) stays, so that requests get the refusal explained; readiness
// reports it.
func (u *Upstream) allRefused(cands []*tls.Certificate, cur *generation) {
	if cur == nil || u.sel.states[cur.fp] == nil {
		u.present(cands[0], nil)
		cur = u.gen.Load()
	}
	st := u.sel.states[cur.fp]
	why := fmt.Sprintf("the upstream %s refuses the client certificate in use (serial %s: %s) and accepts no other "+
		"of the %d valid certificates in %s", u.host, cur.serial, st.Reason, len(cands), u.certSource)
	if why != u.sel.stuck {
		u.sel.stuck = why
		u.log.Error("no client certificate the upstream accepts; requests get 502 client_certificate_refused",
			zap.String(fieldUpstream, u.name), zap.String(fieldSerial, cur.serial), zap.String("reason", why))
	}
}

// verifyInUse asks the upstream about the certificate in use, through its
// own generation (its connections stay in the pool).
func (u *Upstream) verifyInUse(ctx context.Context, g *generation, st *certState) {
	res, reason := u.verifyWith(ctx, g)
	u.record(st, res, reason)
}

// verifyCandidate asks the upstream about a candidate through a new
// generation of its own; an accepted one keeps it (with the verification's
// connection) for present.
func (u *Upstream) verifyCandidate(ctx context.Context, c *tls.Certificate, st *certState) VerifyResult {
	g := u.newGeneration(c)
	res, reason := u.verifyWith(ctx, g)
	u.record(st, res, reason)
	if res == VerifyAccepted {
		if st.verified != nil {
			st.verified.retire()
		}
		st.verified = g
	} else {
		g.retire()
	}
	return res
}

// record notes a verification's result, counts it, logs a refusal once
// per reason, and schedules the next verification.
func (u *Upstream) record(st *certState, res VerifyResult, reason string) {
	now := time.Now()
	st.Result, st.Reason, st.At = res, reason, now
	u.m.verification(u.name, res)
	switch res {
	case VerifyAccepted:
		st.backoff, st.Next, st.logged = 0, time.Time{}, ""
		u.log.Info("the upstream accepts the client certificate", zap.String(fieldUpstream, u.name),
			zap.String(fieldSerial, st.Serial), zap.String("fingerprint", st.Fingerprint))
		return
	case VerifyRefused:
		if reason != st.logged {
			st.logged = reason
			u.log.Error("the upstream refuses the client certificate; it takes no traffic",
				zap.String(fieldUpstream, u.name), zap.String(fieldSerial, st.Serial), zap.String("fingerprint", st.Fingerprint),
				zap.String("reason", reason), zap.String("advice", "was this CSR uploaded for this environment "+
					"(live and staging have their own certificates), and is the certificate active in the Payrails "+
					"dashboard? It is asked again with back-off and used once accepted"))
		}
	case VerifyUnknown:
		u.log.Warn("the upstream could not be asked about the client certificate; asking again",
			zap.String(fieldUpstream, u.name), zap.String(fieldSerial, st.Serial), zap.String("reason", reason))
	}
	st.backoff = min(max(2*st.backoff, verifyMinBackoff), verifyMaxBackoff)
	st.Next = now.Add(st.backoff)
}

// failover handles a refusal of g's certificate met by a request: the
// certificate is marked refused and the best other candidate the upstream
// accepts takes over. It returns the generation to replay the request on,
// or nil when there is none.
func (u *Upstream) failover(ctx context.Context, g *generation, reason string) *generation {
	u.sel.mu.Lock()
	defer u.sel.mu.Unlock()
	if cur := u.gen.Load(); cur != g {
		return cur // another request already moved on
	}
	if st := u.sel.states[g.fp]; st != nil && st.Result != VerifyRefused {
		u.record(st, VerifyRefused, reason)
	}
	u.evaluate(ctx)
	if next := u.gen.Load(); next != nil && next != g {
		return next
	}
	return nil
}

// nextVerification is when evaluate has work to do again (zero: none).
func (u *Upstream) nextVerification() time.Time {
	u.sel.mu.Lock()
	defer u.sel.mu.Unlock()
	var next time.Time
	for _, st := range u.sel.states {
		if st.Result == VerifyAccepted || st.Next.IsZero() {
			continue
		}
		if next.IsZero() || st.Next.Before(next) {
			next = st.Next
		}
	}
	return next
}

// publishView copies the states for CertificateStatuses (under s.mu).
func (u *Upstream) publishView() {
	cur := u.gen.Load()
	view := make([]CertificateStatus, 0, len(u.sel.states))
	for _, c := range u.certs.Candidates() {
		if st := u.sel.states[fingerprint(c)]; st != nil {
			s := st.CertificateStatus
			s.InUse = cur != nil && cur.fp == s.Fingerprint
			view = append(view, s)
		}
	}
	u.sel.viewMu.Lock()
	u.sel.view, u.sel.viewStuck = view, u.sel.stuck
	u.sel.viewMu.Unlock()
}

// CertificateStatuses returns what the upstream knows of each candidate
// certificate, best first. Safe for concurrent use.
func (u *Upstream) CertificateStatuses() []CertificateStatus {
	u.sel.viewMu.Lock()
	defer u.sel.viewMu.Unlock()
	return append([]CertificateStatus(nil), u.sel.view...)
}

// Ready returns nil when the upstream has a certificate to present that it
// is not known to refuse, else why not. A certificate not verified yet, or
// an upstream that could not be asked, does not make it unready.
func (u *Upstream) Ready() error {
	u.sel.viewMu.Lock()
	stuck := u.sel.viewStuck
	u.sel.viewMu.Unlock()
	if stuck != "" {
		return fmt.Errorf("%s", stuck)
	}
	if u.gen.Load() == nil {
		return errNoCertificate
	}
	return nil
}

func first(cs []*tls.Certificate) *tls.Certificate {
	if len(cs) == 0 {
		return nil
	}
	return cs[0]
}
