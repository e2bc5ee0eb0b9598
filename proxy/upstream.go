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

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// CertificateSource is what the proxy needs from a certificate store.
type CertificateSource interface {
	// Certificate returns the certificate to present now, or nil when no
	// valid one is loaded. It is called on every request and must be cheap
	// and safe for concurrent use. The returned value is never modified; a
	// different pointer means a different certificate.
	Certificate() *tls.Certificate
}

// FixedCertificate is a CertificateSource that always offers c (nil: none),
// for tools that call an upstream once with a certificate already chosen.
type FixedCertificate struct{ C *tls.Certificate }

// Certificate implements CertificateSource.
func (f FixedCertificate) Certificate() *tls.Certificate { return f.C }

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
	m          *Metrics
	tokens     *tokens // nil without managed tokens (tokens.go)

	mu  sync.Mutex // serialises building a generation
	gen atomic.Pointer[generation]

	// Background work (certificate checks, probe.go) runs under ctx and is
	// waited for by close.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

func newUpstream(c UpstreamConfig, t Timeouts, m *Metrics) (*Upstream, error) {
	if c.URL == nil || c.URL.Scheme != "https" || c.URL.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: URL must be https://HOST, got %v", c.Name, c.URL)
	}
	if c.Certificates == nil {
		return nil, fmt.Errorf("upstream %q: no certificate source", c.Name)
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
	return newUpstream(c, withDefaults(t), nil)
}

// baseURL is https://HOST[:PORT] of the upstream.
func (u *Upstream) baseURL() *url.URL { return &url.URL{Scheme: "https", Host: u.authority} }

// Name is the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// Host is the host name requests are matched against.
func (u *Upstream) Host() string { return u.host }

// current returns the generation for the certificate the source offers now.
func (u *Upstream) current() (*generation, error) {
	cert := u.certs.Certificate()
	if cert == nil {
		return nil, errNoCertificate
	}
	if g := u.gen.Load(); g != nil && g.cert == cert {
		return g, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.gen.Load()
	if old != nil && old.cert == cert {
		return old, nil
	}
	g := u.newGeneration(cert)
	u.gen.Store(g)
	if old != nil {
		old.retire()
	}
	return g, nil
}

// send is the way of every proxied request to the upstream: the access
// token first when the proxy manages tokens (sendWithToken), then
// sendOnce. The generation it used comes back even on failure, for the
// error's classification and the log line.
func (u *Upstream) send(ex *exchange, out *http.Request) (*http.Response, *generation, error) {
	if u.tokens != nil && u.tokens.wants(out) {
		return u.sendWithToken(ex, out)
	}
	return u.sendOnce(out)
}

// sendOnce sends out with the current certificate, once more when a pooled
// connection turns out dead under an idempotent request without a body: the
// upstream restarted, and neither the HTTP/2 client nor the fast path
// retries such a request itself (the fast path's liveness check catches
// most dead connections before a request is written, not one that dies in
// between). Anything else, and a POST in particular, is sent once.
func (u *Upstream) sendOnce(out *http.Request) (*http.Response, *generation, error) {
	resp, g, err := u.roundTrip(out)
	if err != nil && out.Context().Err() == nil && isIdempotent(out.Method) &&
		(out.Body == nil || out.Body == http.NoBody) && deadConnection(err) {
		resp, g, err = u.roundTrip(out)
	}
	return resp, g, err
}

// roundTrip sends out once with the current generation.
func (u *Upstream) roundTrip(out *http.Request) (*http.Response, *generation, error) {
	g, err := u.current()
	if err != nil {
		return nil, nil, err
	}
	resp, err := g.RoundTrip(out)
	return resp, g, err
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

// RoundTrip implements http.RoundTripper for tools (NewUpstream). Failures
// are *Error values that say what happened and what to do, as the proxy's
// JSON errors do.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, g, err := u.roundTrip(req)
	if err != nil {
		return nil, u.classify(req.Context(), err, g)
	}
	return resp, nil
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
