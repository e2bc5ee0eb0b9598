package upstream

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
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
// being usable: it left the folder, expires within expiryMargin with no
// accepted successor, or the upstream refuses it (failover, which replays
// the refused requests on the next candidate the upstream accepts).
//
// Selection runs off the request path (issue 23): requests only load the
// published generation. decide is the rule, a pure function; evaluate
// applies it in the client's loop (Run), verifying what decide asks for;
// a request that meets a refusal records it and waits for the loop's next
// evaluation (failover).

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
// by an accepted candidate, checked at the time (scheduled, not waiting
// for a request).
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

func (st *certState) due(now time.Time) bool {
	return st.Result == VerifyPending || ((st.Result == VerifyRefused || st.Result == VerifyUnknown) && !now.Before(st.Next))
}

// verifier asks the upstream whether it accepts a generation's
// certificate (verify.go; a fake in tests).
type verifier interface {
	verify(ctx context.Context, g *generation) (VerifyResult, string)
}

// selector is a client's choice of certificate.
type selector struct {
	name, host, certSource string
	verify                 bool // reload.verify
	src                    CertificateSource
	newGen                 func(*tls.Certificate) *generation
	v                      verifier
	log                    *zap.Logger
	m                      *Metrics

	gen     atomic.Pointer[generation] // the certificate presented now; nil when none
	kick    chan struct{}              // wakes the loop
	looping atomic.Bool                // the loop (Run) is running

	mu       sync.Mutex            // serialises evaluate, record and failover's bookkeeping
	states   map[string]*certState // by fingerprint, for the current candidates only
	stuck    string                // why no candidate can serve (all refused); "" otherwise
	news     chan struct{}         // closed, and replaced, at each publication and at the end of each evaluation
	started  uint64                // evaluations begun
	finished uint64                // evaluations ended: started, once the one running has ended

	// What readers see (Ready, statuses) is copied out under viewMu, so
	// that they never wait for a verification in progress.
	viewMu    sync.Mutex
	view      []CertificateStatus
	viewStuck string
}

// action is what decide asks for: verify a candidate (then decide again),
// present one, keep the one in use, or report that none can serve.
type action struct {
	verify   *tls.Certificate // ask the upstream about it, then decide again
	inUse    bool             // verify is the certificate in use (its own generation asks)
	present  *tls.Certificate // publish it (nil with keep false and stuck false: none)
	verified bool             // present was accepted (its verification's generation is used)
	keep     bool             // the one in use stays
	stuck    bool             // every candidate is refused: present (or keep) and report it
}

// decide is the selection rule, pure: from the candidates (best first),
// their states, the one in use and the time, what to do next. mayVerify is
// false where no network is allowed (New): nothing is verified then.
func decide(now time.Time, cands []*tls.Certificate, states map[string]*certState, cur *generation, verify, mayVerify bool) action {
	if len(cands) == 0 {
		return action{}
	}
	if !verify {
		return action{present: unrefused(cands, states, now)}
	}
	var curSt *certState
	if cur != nil {
		curSt = states[cur.fp]
	}
	none := cur == nil || curSt == nil || !now.Before(cur.notAfter) // nothing valid is presented
	refused := !none && curSt.Result == VerifyRefused
	usable := !none && !refused && now.Add(expiryMargin).Before(cur.notAfter)
	for _, c := range cands {
		st := states[fingerprint(c)]
		switch {
		case !none && st == curSt && mayVerify && st.due(now):
			if refused {
				return action{verify: c} // refused in use: asked again, through a generation of its own
			}
			return action{verify: c, inUse: true} // in use but never asked (the start): it keeps serving meanwhile
		case !none && st == curSt && usable && st.verified != nil:
			// Refused in use, then accepted by a re-verification: move to
			// that verification's generation, made under the new verdict.
			return action{present: c, verified: true}
		case !none && st == curSt && usable:
			return action{keep: true}
		case !none && st == curSt:
			continue // refused, or about to expire: another takes over if one can
		case st.Result == VerifyAccepted:
			return action{present: c, verified: true}
		case none && st.Result != VerifyRefused:
			// At start, or after nothing was valid: present at once; the
			// loop asks the upstream next.
			return action{present: c}
		case mayVerify && st.due(now):
			return action{verify: c}
		case refused && st.Result != VerifyRefused:
			return action{present: c} // the one in use is refused: an unverified valid one is better
		}
	}
	if none || refused {
		if none {
			return action{present: cands[0], stuck: true}
		}
		return action{keep: true, stuck: true}
	}
	return action{keep: true} // about to expire, no other accepted yet: it serves until it expires
}

// unrefused is, without verification, the best candidate the upstream
// has not refused lately (a refusal met in use counts until its next
// verification would be due), or the best when it refused them all.
func unrefused(cands []*tls.Certificate, states map[string]*certState, now time.Time) *tls.Certificate {
	for _, c := range cands {
		if st := states[fingerprint(c)]; st == nil || st.Result != VerifyRefused || st.due(now) {
			return c
		}
	}
	return cands[0]
}

// evaluate follows the source and applies decide until it settles,
// verifying on the way when mayVerify (the loop; never New). It publishes
// the generation to present. The lock is not held while the upstream is
// asked, so that a request's failover can record a refusal meanwhile.
func (s *selector) evaluate(ctx context.Context, mayVerify bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started++
	defer s.endEvaluation()
	cands := s.src.Candidates()
	s.track(cands)
	for range len(cands) + 2 { // each candidate is verified at most once a pass
		a := decide(time.Now(), cands, s.states, s.gen.Load(), s.verify, mayVerify && ctx.Err() == nil)
		if a.verify == nil {
			s.apply(a, cands)
			if a.present != nil && !a.verified && s.verify && mayVerify {
				continue // presented unverified: ask about it now
			}
			return
		}
		st := s.states[fingerprint(a.verify)]
		g := s.gen.Load()
		if !a.inUse {
			g = s.newGen(a.verify)
		}
		s.mu.Unlock()
		res, reason := s.v.verify(ctx, g)
		s.mu.Lock()
		s.record(st, res, reason)
		switch {
		case a.inUse:
		case res == VerifyAccepted:
			if st.verified != nil {
				st.verified.retire()
			}
			st.verified = g
		default:
			g.retire()
		}
	}
}

// apply carries out a settled action.
func (s *selector) apply(a action, cands []*tls.Certificate) {
	switch {
	case a.keep && !a.stuck:
		s.stuck = ""
	case a.keep || a.present != nil:
		if a.present != nil {
			s.present(a.present)
		}
		if a.stuck {
			s.allRefused(cands)
		}
	default:
		s.present(nil)
	}
}

// track makes the states those of cands, keeping what is known.
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
