package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// The selector's state changes: publishing a generation, recording what
// the upstream said, failover, readiness and what /certs shows.

// present publishes the generation for c (nil: none), reusing the
// generation in use when it presents c already, or the verified one. A
// certificate in use that was refused and has now been accepted moves to
// its verification's generation all the same: that one's connection and
// TLS sessions were made under the upstream's new verdict (the refused
// one's under the old), and it must not be left open unused. Under s.mu.
func (s *selector) present(c *tls.Certificate) {
	old := s.gen.Load()
	fp := fingerprint(c)
	st := s.states[fp]
	if old != nil && old.fp == fp && (st == nil || st.verified == nil) {
		return
	}
	var g *generation
	switch {
	case c == nil:
	case st != nil && st.verified != nil:
		g, st.verified = st.verified, nil
	default:
		g = s.newGen(c)
	}
	s.gen.Store(g)
	s.signal()
	if old != nil {
		old.retire()
	}
	if old != nil && g != nil && old.fp != g.fp && s.resultOf(old.fp) == VerifyRefused {
		s.m.failover(s.name)
		s.log.Warn("the upstream refused the certificate in use; failed over to another certificate",
			zap.String(fieldUpstream, s.name), zap.String("old_serial", old.serial), zap.String(fieldSerial, g.serial),
			zap.String("reason", s.states[old.fp].Reason))
	}
	if g != nil && tls12Only(g.cert) {
		s.log.Warn("the client certificate's key is in a PKCS#11 token that offers no RSA-PSS, which TLS 1.3 requires "+
			"for RSA keys: connections to this upstream are held at TLS 1.2", zap.String(fieldUpstream, s.name),
			zap.String(fieldSerial, g.serial))
	}
	if g != nil {
		s.stuck = ""
		s.log.Info("presenting the client certificate", zap.String(fieldUpstream, s.name), zap.String(fieldSerial, g.serial),
			zap.String("fingerprint", g.fp), zap.Time("not_after", g.notAfter), zap.String("verification", string(s.resultOf(fp))))
	}
}

// renew presents the certificate in use through a new generation, made
// with the roots of now (ca_file reloaded): the old generation is retired
// (its idle connections close, busy ones when done), accepted
// verifications waiting to be presented are dropped, and every new
// connection verifies the server with the new roots.
func (s *selector) renew() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.states {
		if st.verified != nil {
			st.verified.retire()
			st.verified = nil
		}
	}
	old := s.gen.Load()
	if old == nil {
		return
	}
	s.gen.Store(s.newGen(old.cert))
	old.retire()
	s.log.Info("the roots that verify the server changed (ca_file): new connections verify it with them",
		zap.String(fieldUpstream, s.name), zap.String(fieldSerial, old.serial))
}

func (s *selector) resultOf(fp string) VerifyResult {
	if st := s.states[fp]; st != nil {
		return st.Result
	}
	return VerifyPending
}

// allRefused: the upstream refuses every candidate. The one presented
// stays, so that requests get the refusal explained; readiness reports it.
// Under s.mu.
func (s *selector) allRefused(cands []*tls.Certificate) {
	cur := s.gen.Load()
	if cur == nil {
		return
	}
	reason := ""
	if st := s.states[cur.fp]; st != nil {
		reason = st.Reason
	}
	why := fmt.Sprintf("the upstream %s refuses the client certificate in use (serial %s: %s) and accepts no other "+
		"of the %d valid certificates in %s", s.host, cur.serial, reason, len(cands), s.certSource)
	if why != s.stuck {
		s.stuck = why
		s.log.Error("no client certificate the upstream accepts; requests get 502 client_certificate_refused",
			zap.String(fieldUpstream, s.name), zap.String(fieldSerial, cur.serial), zap.String("reason", why))
	}
}

// record notes a verification's result, counts it, logs a refusal once
// per reason, and schedules the next verification. Under s.mu.
func (s *selector) record(st *certState, res VerifyResult, reason string) {
	now := time.Now()
	st.Result, st.Reason, st.At = res, reason, now
	s.m.verification(s.name, res)
	switch res {
	case VerifyAccepted:
		st.backoff, st.Next, st.logged = 0, time.Time{}, ""
		s.log.Info("the upstream accepts the client certificate", zap.String(fieldUpstream, s.name),
			zap.String(fieldSerial, st.Serial), zap.String("fingerprint", st.Fingerprint))
		return
	case VerifyRefused:
		if reason != st.logged {
			st.logged = reason
			s.log.Error("the upstream refuses the client certificate; it takes no traffic",
				zap.String(fieldUpstream, s.name), zap.String(fieldSerial, st.Serial), zap.String("fingerprint", st.Fingerprint),
				zap.String("reason", reason), zap.String("advice", "was this CSR uploaded for this environment "+
					"(live and staging have their own certificates), and is the certificate active in the Payrails "+
					"dashboard? It is asked again with back-off and used once accepted"))
		}
	case VerifyUnknown:
		s.log.Warn("the upstream could not be asked about the client certificate; asking again",
			zap.String(fieldUpstream, s.name), zap.String(fieldSerial, st.Serial), zap.String("reason", reason))
	}
	st.backoff = min(max(2*st.backoff, verifyMinBackoff), verifyMaxBackoff)
	st.Next = now.Add(st.backoff)
}

// failover handles a refusal of g's certificate met by a request: the
// certificate is marked refused, the loop is woken to choose another, and
// the request waits (at most wait, and while ctx lasts) for an evaluation
// that began after the refusal was recorded. It returns the generation to
// replay the request on, or nil when there is none. The request itself
// never dials.
func (s *selector) failover(ctx context.Context, g *generation, reason string, wait time.Duration) *generation {
	s.mu.Lock()
	if cur := s.gen.Load(); cur != g {
		s.mu.Unlock()
		return cur // the loop already moved on
	}
	if st := s.states[g.fp]; st != nil && st.Result != VerifyRefused {
		s.record(st, VerifyRefused, reason)
	}
	want := s.started + 1
	s.mu.Unlock()
	s.poke()
	s.waitUntil(ctx, wait, func() bool { return s.finished >= want })
	if next := s.gen.Load(); next != nil && next != g {
		return next
	}
	return nil
}

// poke wakes the loop.
func (s *selector) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// nextWake is when evaluate has work to do again (zero: none): a
// verification due, or the certificate in use entering expiryMargin or
// expiring.
func (s *selector) nextWake() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	earliest := func(at time.Time) {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	for _, st := range s.states {
		if st.Result != VerifyAccepted && !st.Next.IsZero() {
			earliest(st.Next)
		}
	}
	if g := s.gen.Load(); g != nil {
		now := time.Now()
		for _, at := range []time.Time{g.notAfter.Add(-expiryMargin), g.notAfter} {
			if at.After(now) {
				earliest(at)
				break
			}
		}
	}
	return next
}

// endEvaluation publishes what readers see and tells the requests waiting
// in failover that an evaluation ended. Under s.mu.
func (s *selector) endEvaluation() {
	cur := s.gen.Load()
	view := make([]CertificateStatus, 0, len(s.states))
	for _, c := range s.src.Candidates() {
		if st := s.states[fingerprint(c)]; st != nil {
			v := st.CertificateStatus
			v.InUse = cur != nil && cur.fp == v.Fingerprint
			view = append(view, v)
		}
	}
	s.viewMu.Lock()
	s.view, s.viewStuck = view, s.stuck
	s.viewMu.Unlock()
	s.finished = s.started
	s.signal()
}

// signal wakes the requests waiting for the selector's news (waitUntil).
// Under s.mu.
func (s *selector) signal() {
	close(s.news)
	s.news = make(chan struct{})
}

// waitUntil waits, at most wait and while ctx lasts, until done (called
// under s.mu) holds, checking it again at each of the selector's news.
func (s *selector) waitUntil(ctx context.Context, wait time.Duration, done func() bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		ok, news := done(), s.news
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-news:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

// await is for a request that found no valid certificate presented (none
// yet, or the one in use just expired): it wakes the loop and waits, at
// most wait and while ctx lasts, until one is presented or an evaluation
// that began after the call has ended. Without a loop (Run not running:
// the tools) it evaluates in place, without the network, as New does. It
// returns the valid generation presented, or nil.
func (s *selector) await(ctx context.Context, wait time.Duration) *generation {
	if !s.looping.Load() {
		s.evaluate(ctx, false)
		return valid(s.gen.Load())
	}
	s.mu.Lock()
	want := s.started + 1
	s.mu.Unlock()
	s.poke()
	s.waitUntil(ctx, wait, func() bool { return s.finished >= want || valid(s.gen.Load()) != nil })
	return valid(s.gen.Load())
}

// valid is g when it is a generation whose certificate has not expired,
// else nil.
func valid(g *generation) *generation {
	if g == nil || !time.Now().Before(g.notAfter) {
		return nil
	}
	return g
}

// statuses returns what the selector knows of each candidate, best first.
func (s *selector) statuses() []CertificateStatus {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	return append([]CertificateStatus(nil), s.view...)
}

// ready returns nil when there is a certificate to present that the
// upstream is not known to refuse, else why not. A certificate not
// verified yet, or an upstream that could not be asked, does not make it
// unready.
func (s *selector) ready() error {
	s.viewMu.Lock()
	stuck := s.viewStuck
	s.viewMu.Unlock()
	if stuck != "" {
		return fmt.Errorf("%s", stuck)
	}
	if valid(s.gen.Load()) == nil {
		return errNoCertificate
	}
	return nil
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
