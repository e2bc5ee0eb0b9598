package upstream

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// Why the proxy checks its certificates: in TLS 1.3 the client completes
// its handshake before the server has judged the client certificate, so a
// refusal arrives as an alert on the connection's first read. Over
// HTTP/1.1 that alert becomes the request's error and is classified
// directly. Over HTTP/2 the connection's reader receives it and the
// request only learns that the connection "could not be established", or
// a write fails with a broken pipe; the cause is lost (generation.go's
// alertConn recovers it when the Transport read it). For the unexplained
// failures left, the verdict asks the generation's certCheck, which learns
// the answer from a connection of its own, off the request path.

// checkTTL bounds how long a check's verdict is reused.
const checkTTL = 10 * time.Second

// certCheck is what a generation knows of whether the upstream refuses its
// certificate. At most one check runs at a time. The zero value is ready.
type certCheck struct {
	mu      sync.Mutex
	running chan struct{} // closed when the check in progress ends; nil when none
	last    *refusalVerdict
}

// refusalVerdict is one check's finding.
type refusalVerdict struct {
	at     time.Time
	err    error  // the server's refusal, or nil when it did not refuse
	reason string // the alert's name
	advice string
}

// refusal returns the upstream's refusal of g's certificate, or nil when
// it accepts it or cannot be reached. A recent verdict is returned as it
// is; otherwise a check is started as the client's background work (bg,
// which Run owns) and waited for, at most wait and as long as the
// request's context allows: a proxied request's goroutine never dials.
// Without Run (a tool's RoundTrip) the caller makes the check itself.
func (c *certCheck) refusal(ctx context.Context, g *generation, bg *background, authority string, wait time.Duration) *refusalVerdict {
	c.mu.Lock()
	if v := c.last; v != nil && time.Since(v.at) < checkTTL {
		c.mu.Unlock()
		return refusedVerdict(v)
	}
	done := c.running
	if done == nil {
		done = make(chan struct{})
		c.running = done
		if !bg.run(func(bctx context.Context) { c.run(bctx, g, authority, wait, done) }) {
			c.mu.Unlock()
			c.run(ctx, g, authority, wait, done) // no loop: a tool, whose own goroutine may dial
			c.mu.Lock()
			defer c.mu.Unlock()
			return refusedVerdict(c.last)
		}
	}
	c.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return nil
	case <-t.C:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return refusedVerdict(c.last)
}

func refusedVerdict(v *refusalVerdict) *refusalVerdict {
	if v == nil || v.err == nil {
		return nil
	}
	return v
}

// run asks the upstream, with one connection presenting g's certificate
// and one HEAD request, whether it refuses the certificate.
func (c *certCheck) run(ctx context.Context, g *generation, authority string, wait time.Duration, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	res := probe(ctx, g.d, authority, g.cert, http.MethodHead, "/")
	cancel()
	v := &refusalVerdict{at: time.Now()}
	if res.Outcome == OutcomeCertificateRefused {
		a, _ := answer.LookupCertificateAlert(res.AlertCode)
		v.err, v.reason, v.advice = res.Err, a.Name, a.Advice
	}
	c.mu.Lock()
	c.last, c.running = v, nil
	c.mu.Unlock()
	close(done)
}

// background runs a client's work off the request path (certificate
// checks, verifications); Run owns it: work starts only while Run runs,
// under Run's context, and Run waits for all of it before it returns.
// The zero value is not running.
type background struct {
	mu  sync.Mutex
	ctx context.Context // Run's; nil when not running
	wg  sync.WaitGroup
}

// start lets work start under ctx.
func (b *background) start(ctx context.Context) {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
}

// stop refuses new work and waits for what runs (whose context, Run's,
// has ended).
func (b *background) stop() {
	b.mu.Lock()
	b.ctx = nil
	b.mu.Unlock()
	b.wg.Wait()
}

// run starts f as background work; false when not running (f does not run).
func (b *background) run(f func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == nil {
		return false
	}
	ctx := b.ctx
	b.wg.Go(func() { f(ctx) })
	return true
}
