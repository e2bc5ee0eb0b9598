package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
	"go.uber.org/zap"
)

// CertificateSource is what the proxy needs from a certificate store.
// Every method must be cheap and safe for concurrent use; the returned
// certificates are never modified.
type CertificateSource interface {
	// Certificate returns the store's choice, or nil when no valid
	// certificate is loaded. It is read on every request: a different
	// pointer means the choice changed.
	Certificate() *tls.Certificate
	// Candidates returns the certificates that may be presented now (valid
	// at this moment), best first, the choice first; empty when none.
	// Compare them by content: a reload may give the same pair a new pointer.
	Candidates() []*tls.Certificate
	// Changed returns a channel closed when Certificate or Candidates may
	// answer differently; nil when they never change.
	Changed() <-chan struct{}
}

// FixedCertificate is a CertificateSource that always offers c (nil: none),
// for tools that call an upstream once with a certificate already chosen.
type FixedCertificate struct{ C *tls.Certificate }

// Certificate implements CertificateSource.
func (f FixedCertificate) Certificate() *tls.Certificate { return f.C }

// Candidates implements CertificateSource.
func (f FixedCertificate) Candidates() []*tls.Certificate {
	if f.C == nil {
		return nil
	}
	return []*tls.Certificate{f.C}
}

// Changed implements CertificateSource: a fixed certificate never changes.
func (f FixedCertificate) Changed() <-chan struct{} { return nil }

// UpstreamConfig describes one Payrails API endpoint.
type UpstreamConfig struct {
	Name         string
	URL          *url.URL          // https://HOST[:PORT]; required
	Address      string            // dial this HOST:PORT instead of resolving HOST; "" to resolve
	Default      bool              // origin-form (base-URL) requests go here
	RootCAs      *x509.CertPool    // roots that verify the server; nil means the system roots
	Certificates CertificateSource // required
	CertSource   string            // where the certificates come from, for messages
	Token        *TokenConfig      // managed access tokens; nil means none
	// Verify makes a newly chosen certificate take traffic only once the
	// upstream accepted it (a HEAD VerifyPath request; selection.go).
	// false presents the source's choice at once.
	Verify bool
	// VerifyPath is the path of the verification request; "" means "/".
	VerifyPath string
	// WarmConnections is how many idle connections with the certificate in
	// use are kept open and ready (warm.go); 0 means none.
	WarmConnections int
	// Via, when not nil, is an egress proxy that every connection to the
	// upstream goes through, a CONNECT tunnel to the dial address with TLS
	// end to end (proxy/upstream/egress). nil dials directly.
	Via *egress.Proxy
}

// Timeouts is the configuration's timeouts block: one type for both. The
// proxy ignores Shutdown (Serve takes it). Wherever the proxy takes
// Timeouts, a zero field means config.DefaultTimeouts' value (withDefaults).
type Timeouts = config.Timeouts

// withDefaults is the proxy's one zero-means-default rule for Timeouts.
func withDefaults(t Timeouts) Timeouts {
	d := config.DefaultTimeouts()
	if t.Dial > 0 {
		d.Dial = t.Dial
	}
	if t.TLSHandshake > 0 {
		d.TLSHandshake = t.TLSHandshake
	}
	if t.ResponseHeader > 0 {
		d.ResponseHeader = t.ResponseHeader
	}
	if t.IdleConn > 0 {
		d.IdleConn = t.IdleConn
	}
	if t.Shutdown > 0 {
		d.Shutdown = t.Shutdown
	}
	return d
}

// Upstream sends requests to one Payrails host with the certificate its
// source currently offers.
//
// Connections are grouped in generations, one per certificate
// (generation.go). When the source offers a new certificate the next
// request builds a new generation and retires the old one; the old one's
// idle connections are closed at once and its busy ones when their last
// response is done, so that no new request reuses a connection (or a
// session ticket, which in TLS 1.3 carries the client identity) made with
// the old certificate.
type Upstream struct {
	name       string
	host       string // lower-case host name, no port: what forward-mode requests match
	authority  string // URL.Host: what the Host header becomes
	dialAddr   string
	isDefault  bool
	roots      *x509.CertPool
	certs      CertificateSource
	certSource string
	timeouts   Timeouts
	retry      config.Retry
	m          *Metrics
	log        *zap.Logger
	tokens     *tokens // nil without managed tokens (tokens.go)
	verify     bool
	verifyPath string
	warmTarget int
	via        *egress.Proxy // nil: dial directly
	dialer     contextDialer // a net.Dialer, or an egress.Dialer through via

	gen    atomic.Pointer[generation]      // the certificate presented now; nil when none
	seen   atomic.Pointer[tls.Certificate] // the source's choice when gen was last evaluated
	sel    selector                        // which certificate to present (selection.go)
	warm   warmth                          // warm connections (warm.go)
	budget retryBudget                     // retries allowed (retry.go)
	kickCh chan struct{}                   // wakes run

	// Background work (run, certificate checks) runs under ctx and is
	// waited for by Close.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

func newUpstream(c UpstreamConfig, t Timeouts, rt config.Retry, m *Metrics, log *zap.Logger) (*Upstream, error) {
	if c.URL == nil || c.URL.Scheme != "https" || c.URL.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: URL must be https://HOST, got %v", c.Name, c.URL)
	}
	if c.Certificates == nil {
		return nil, fmt.Errorf("upstream %q: no certificate source", c.Name)
	}
	if err := c.Via.Check(); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", c.Name, err)
	}
	dial := c.Address
	if dial == "" {
		port := c.URL.Port()
		if port == "" {
			port = "443"
		}
		dial = net.JoinHostPort(c.URL.Hostname(), port)
	}
	u := &Upstream{
		name: c.Name, host: canonicalHost(c.URL.Hostname()), authority: c.URL.Host, dialAddr: dial,
		isDefault: c.Default, roots: c.RootCAs, certs: c.Certificates, certSource: c.CertSource, timeouts: t, m: m,
		retry: withRetryDefaults(rt), log: log, verify: c.Verify, verifyPath: c.VerifyPath,
		warmTarget: max(c.WarmConnections, 0), kickCh: make(chan struct{}, 1),
	}
	if u.verifyPath == "" {
		u.verifyPath = "/"
	}
	if u.log == nil {
		u.log = zap.NewNop()
	}
	u.via = c.Via
	nd := &net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}
	u.dialer = nd
	if c.Via != nil {
		u.dialer = egress.Dialer{Proxy: c.Via, Forward: nd}
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	if c.Token != nil {
		u.tokens = u.newTokens(c.Token, m)
	}
	return u, nil
}

// NewUpstream returns an Upstream on its own, for tools that talk to the
// Payrails API exactly as the proxy does (the `token` command): same TLS
// settings, clients and error classification. Zero timeouts take
// config.DefaultTimeouts' values. Close it when done.
func NewUpstream(c UpstreamConfig, t Timeouts) (*Upstream, error) {
	return newUpstream(c, withDefaults(t), config.Retry{Attempts: 1}, nil, nil)
}

// baseURL is https://HOST[:PORT] of the upstream.
func (u *Upstream) baseURL() *url.URL { return &url.URL{Scheme: "https", Host: u.authority} }

// Name is the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// Host is the host name requests are matched against.
func (u *Upstream) Host() string { return u.host }

// current returns the generation of the certificate presented now. The
// hot path is two atomic loads and a clock read; a new choice of the
// source, an expired certificate or none at all take the slow path.
func (u *Upstream) current() (*generation, error) {
	choice := u.certs.Certificate()
	g := u.gen.Load()
	if g != nil && choice == u.seen.Load() && time.Now().Before(g.notAfter) {
		return g, nil
	}
	return u.reselect(choice, g)
}

// reselect handles what current cannot. With verification on, a new
// choice is verified by the background loop while the certificate in use
// keeps serving; otherwise (and when nothing valid is presented) the
// choice is evaluated here.
func (u *Upstream) reselect(choice *tls.Certificate, g *generation) (*generation, error) {
	if u.verify && g != nil && time.Now().Before(g.notAfter) {
		if old := u.seen.Load(); old != choice && u.seen.CompareAndSwap(old, choice) {
			u.kick()
		}
		return g, nil
	}
	u.sel.mu.Lock()
	u.seen.Store(choice)
	u.evaluate(u.ctx)
	u.sel.mu.Unlock()
	if g = u.gen.Load(); g == nil {
		return nil, errNoCertificate
	}
	return g, nil
}

// kick wakes the background loop.
func (u *Upstream) kick() {
	select {
	case u.kickCh <- struct{}{}:
	default:
	}
}

// run is the upstream's background work until ctx is done: it follows the
// certificate source (evaluate), verifies candidates when they are due,
// and tends the warm connections. Proxy.Serve runs it.
func (u *Upstream) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	eval := true
	for {
		changed := u.certs.Changed()
		if eval {
			u.sel.mu.Lock()
			u.seen.Store(u.certs.Certificate())
			u.evaluate(ctx)
			u.sel.mu.Unlock()
		}
		wait := u.tendWarm(ctx)
		due := u.nextVerification()
		if !due.IsZero() && (wait == 0 || time.Until(due) < wait) {
			wait = max(time.Until(due), time.Millisecond)
		}
		if wait == 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-changed:
			eval = true
		case <-u.kickCh:
			eval = true
		case <-timer.C:
			eval = !due.IsZero() && !time.Now().Before(due)
		}
	}
}

// deadConnection reports a connection that broke under a request, as
// opposed to failing to connect or timing out.
func deadConnection(err error) bool {
	var de *dialError
	var he *handshakeError
	if errors.As(err, &de) || errors.As(err, &he) {
		return false
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isIdempotent: RFC 9110 §9.2.2.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// RoundTrip implements http.RoundTripper for tools (NewUpstream) and the
// token manager: one send with the certificate in use, no retries.
// Failures are *failure.Error values that say what happened and what to do, as the
// proxy's JSON errors do.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	g, err := u.current()
	if err == nil {
		var resp *http.Response
		if resp, err = g.RoundTrip(req); err == nil {
			return resp, nil
		}
	}
	return nil, u.classify(req.Context(), err, g)
}

// CloseIdleConnections closes the upstream's idle connections.
func (u *Upstream) CloseIdleConnections() {
	if g := u.gen.Load(); g != nil {
		g.closeIdle()
	}
}

// Close closes the idle connections and stops and waits for the
// upstream's background work. Requests in flight are not touched.
func (u *Upstream) Close() {
	u.cancel()
	u.bg.Wait()
	u.CloseIdleConnections()
}
