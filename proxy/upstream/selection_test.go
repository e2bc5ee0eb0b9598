package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"go.uber.org/zap"
)

// leaves makes n client certificates valid for a year, best first.
func leaves(t *testing.T, n int) []*tls.Certificate {
	t.Helper()
	ca, err := pki.NewCA("selection test CA")
	if err != nil {
		t.Fatal(err)
	}
	var out []*tls.Certificate
	for i := range n {
		l, err := ca.Issue(pki.LeafOptions{CommonName: fmt.Sprint("c", i), KeyType: pki.KeyECDSA, Client: true,
			NotBefore: time.Now().Add(-time.Duration(i+1) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c := l.TLS()
		out = append(out, &c)
	}
	return out
}

// TestDecide is the selection rule's table: from the candidates' states
// and the one in use, what decide asks for.
func TestDecide(t *testing.T) {
	cs := leaves(t, 3)
	now := time.Now()
	gen := func(i int, notAfter time.Time) *generation {
		return &generation{cert: cs[i], fp: fingerprint(cs[i]), notAfter: notAfter}
	}
	year := now.Add(365 * 24 * time.Hour)
	soon := now.Add(time.Minute) // within expiryMargin
	st := func(r VerifyResult, next time.Time) *certState {
		return &certState{CertificateStatus: CertificateStatus{Result: r, Next: next}}
	}
	later := now.Add(time.Hour)
	tests := []struct {
		name      string
		states    []*certState // of cs, best first
		cur       *generation
		verify    bool
		mayVerify bool
		want      action
	}{
		{"no candidates", nil, nil, true, true, action{}},
		{"verification off: the best", []*certState{st(VerifyPending, time.Time{}), st(VerifyPending, time.Time{})}, gen(1, year), false, true, action{present: cs[0]}},
		{"verification off: the best not refused", []*certState{st(VerifyRefused, later), st(VerifyPending, time.Time{})}, gen(0, year), false, true, action{present: cs[1]}},
		{"start: the best at once, unverified", []*certState{st(VerifyPending, time.Time{}), st(VerifyPending, time.Time{})}, nil, true, true, action{present: cs[0]}},
		{"start without the network: the same", []*certState{st(VerifyPending, time.Time{})}, nil, true, false, action{present: cs[0]}},
		{"in use, never asked: ask in place", []*certState{st(VerifyPending, time.Time{})}, gen(0, year), true, true, action{verify: cs[0], inUse: true}},
		{"in use, accepted: keep", []*certState{st(VerifyAccepted, time.Time{})}, gen(0, year), true, true, action{keep: true}},
		{"a better candidate never asked: ask it", []*certState{st(VerifyPending, time.Time{}), st(VerifyAccepted, time.Time{})}, gen(1, year), true, true, action{verify: cs[0]}},
		{"a better candidate accepted: take it", []*certState{st(VerifyAccepted, time.Time{}), st(VerifyAccepted, time.Time{})}, gen(1, year), true, true, action{present: cs[0], verified: true}},
		{"a better candidate refused, not due: keep", []*certState{st(VerifyRefused, later), st(VerifyAccepted, time.Time{})}, gen(1, year), true, true, action{keep: true}},
		{"a better candidate refused, due: ask again", []*certState{st(VerifyRefused, now.Add(-time.Second)), st(VerifyAccepted, time.Time{})}, gen(1, year), true, true, action{verify: cs[0]}},
		{"in use refused, another accepted: fail over", []*certState{st(VerifyRefused, later), st(VerifyAccepted, time.Time{})}, gen(0, year), true, true, action{present: cs[1], verified: true}},
		{"in use refused, another never asked: ask it", []*certState{st(VerifyRefused, later), st(VerifyPending, time.Time{})}, gen(0, year), true, true, action{verify: cs[1]}},
		{"in use refused, another unknown: present it unverified", []*certState{st(VerifyRefused, later), st(VerifyUnknown, later)}, gen(0, year), true, true, action{present: cs[1]}},
		{"in use refused, no other: stuck", []*certState{st(VerifyRefused, later)}, gen(0, year), true, true, action{keep: true, stuck: true}},
		{"in use refused, due: asked again through its own generation", []*certState{st(VerifyRefused, now.Add(-time.Second))}, gen(0, year), true, true, action{verify: cs[0]}},
		{"all refused, none presented: the best, stuck", []*certState{st(VerifyRefused, later), st(VerifyRefused, later)}, nil, true, true, action{present: cs[0], stuck: true}},
		{"about to expire, another accepted: it takes over", []*certState{st(VerifyAccepted, time.Time{}), st(VerifyAccepted, time.Time{})}, gen(0, soon), true, true, action{present: cs[1], verified: true}},
		{"about to expire, none other accepted: keep until it expires", []*certState{st(VerifyAccepted, time.Time{}), st(VerifyRefused, later)}, gen(0, soon), true, true, action{keep: true}},
		{"expired: the best not refused, at once", []*certState{st(VerifyAccepted, time.Time{}), st(VerifyPending, time.Time{})}, gen(0, now.Add(-time.Second)), true, true, action{present: cs[0], verified: true}},
		{"no network: never asks", []*certState{st(VerifyPending, time.Time{}), st(VerifyAccepted, time.Time{})}, gen(1, year), true, false, action{keep: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			states := map[string]*certState{}
			cands := cs[:len(tt.states)]
			for i, s := range tt.states {
				states[fingerprint(cs[i])] = s
			}
			got := decide(now, cands, states, tt.cur, tt.verify, tt.mayVerify)
			if got != tt.want {
				t.Errorf("decide = %s, want %s", describeAction(got, cs), describeAction(tt.want, cs))
			}
		})
	}
}

func describeAction(a action, cs []*tls.Certificate) string {
	idx := func(c *tls.Certificate) string {
		for i, x := range cs {
			if x == c {
				return fmt.Sprint("c", i)
			}
		}
		return "-"
	}
	return fmt.Sprintf("{verify %s inUse %v present %s verified %v keep %v stuck %v}", idx(a.verify), a.inUse, idx(a.present),
		a.verified, a.keep, a.stuck)
}

// fakeVerifier answers verifications from a table, by certificate, and
// records what it was asked.
type fakeVerifier struct {
	mu     sync.Mutex
	answer map[*tls.Certificate]VerifyResult
	asked  []*tls.Certificate
}

func (f *fakeVerifier) verify(_ context.Context, g *generation) (VerifyResult, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, g.cert)
	if r, ok := f.answer[g.cert]; ok {
		return r, "fake"
	}
	return VerifyUnknown, "fake: no answer"
}

// TestEvaluate: the loop's evaluation verifies what decide asks for, with
// a fake verifier, and publishes the result: a rotation whose new
// certificate is refused keeps the old one; accepted, the new one takes
// over through its verification's generation.
func TestEvaluate(t *testing.T) {
	cs := leaves(t, 2)
	src := &fakeSource{}
	src.set(cs[1])
	fv := &fakeVerifier{answer: map[*tls.Certificate]VerifyResult{cs[0]: VerifyRefused, cs[1]: VerifyAccepted}}
	d := &dialer{}
	s := &selector{name: "t", verify: true, src: src, v: fv, log: zap.NewNop(), kick: make(chan struct{}, 1),
		news: make(chan struct{}), newGen: func(c *tls.Certificate) *generation {
			return newGeneration(d, c, Timeouts{}.WithDefaults(), genHooks{})
		}}
	ctx := context.Background()
	s.evaluate(ctx, false) // New: presents the only one, asks nothing
	if g := s.gen.Load(); g == nil || g.cert != cs[1] || len(fv.asked) != 0 {
		t.Fatalf("after New: presenting %v, asked %d; want c1 and nothing asked", g, len(fv.asked))
	}
	s.evaluate(ctx, true) // the loop: asks about c1 in place
	if len(fv.asked) != 1 || fv.asked[0] != cs[1] || s.statuses()[0].Result != VerifyAccepted {
		t.Fatalf("the loop asked %d times, status %+v; want c1 accepted", len(fv.asked), s.statuses())
	}
	src.set(cs[0], cs[1]) // a newer certificate, refused
	s.evaluate(ctx, true)
	if g := s.gen.Load(); g.cert != cs[1] {
		t.Errorf("a refused newer certificate took over")
	}
	fv.mu.Lock()
	fv.answer[cs[0]] = VerifyAccepted // accepted at its re-verification
	fv.mu.Unlock()
	s.mu.Lock()
	s.states[fingerprint(cs[0])].Next = time.Now().Add(-time.Second)
	s.mu.Unlock()
	s.evaluate(ctx, true)
	if g := s.gen.Load(); g.cert != cs[0] {
		t.Errorf("the accepted newer certificate did not take over")
	}
	if err := s.ready(); err != nil {
		t.Errorf("ready() = %v", err)
	}
	if g := s.gen.Load(); g != nil {
		g.retire()
	}
}

// fakeSource is a CertificateSource of a list a test sets.
type fakeSource struct {
	mu      sync.Mutex
	list    []*tls.Certificate
	changed chan struct{}
}

func (f *fakeSource) set(cs ...*tls.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = cs
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
}

func (f *fakeSource) Certificate() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.list) == 0 {
		return nil
	}
	return f.list[0]
}

func (f *fakeSource) Candidates() []*tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tls.Certificate(nil), f.list...)
}

func (f *fakeSource) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}
