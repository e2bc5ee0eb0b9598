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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/token"
)

// CertificateSource is what the proxy needs from a certificate store.
type CertificateSource interface {
	// Certificate returns the certificate to present now, or nil when no
	// valid one is loaded. It is called on every request and must be cheap
	// and safe for concurrent use. The returned value is never modified; a
	// different pointer means a different certificate.
	Certificate() *tls.Certificate
}

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

// Timeouts bound each step of an upstream exchange. Zero values are
// replaced by DefaultTimeouts' values.
type Timeouts struct {
	Dial           time.Duration // TCP connect
	TLSHandshake   time.Duration
	ResponseHeader time.Duration // from the request fully sent to the response headers
	IdleConn       time.Duration // how long a pooled connection may sit idle
}

// DefaultTimeouts are DESIGN.md's defaults.
var DefaultTimeouts = Timeouts{Dial: 5 * time.Second, TLSHandshake: 10 * time.Second,
	ResponseHeader: 60 * time.Second, IdleConn: 90 * time.Second}

// Upstream sends requests to one Payrails host with the certificate its
// source currently offers.
//
// Connections are grouped in generations, one per certificate: a
// generation's transport, connection pool and TLS session cache only ever
// present that certificate. When the source offers a new certificate the
// next request builds a new generation and retires the old one; the old
// one's idle connections are closed at once and its busy ones when their
// last response is done, so that no new request reuses a connection (or a
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
	tokens     TokenSource    // nil without managed tokens
	manager    *token.Manager // the manager behind tokens, run by Proxy.Serve
	// tokenSecretSource names where the client secret comes from, for messages.
	tokenSecretSource string

	mu  sync.Mutex // serialises building a generation
	gen atomic.Pointer[generation]
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
	return &Upstream{
		name: c.Name, host: canonicalHost(c.URL.Hostname()), authority: c.URL.Host, dialAddr: dial,
		isDefault: c.Default, roots: c.RootCAs, certs: c.Certificates, certSource: c.CertSource, timeouts: t, m: m,
	}, nil
}

// baseURL is https://HOST[:PORT] of the upstream.
func (u *Upstream) baseURL() *url.URL { return &url.URL{Scheme: "https", Host: u.authority} }

// Name is the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// Host is the host name requests are matched against.
func (u *Upstream) Host() string { return u.host }

// generation is one certificate's connections: the fast path's HTTP/1.1
// pool and the Transport, which share one tls.Config and session cache.
// Immutable apart from its counters, the HTTP/2 flag, the spare connection
// and the cached probe verdict.
type generation struct {
	cert     *tls.Certificate
	serial   string
	tls      *tls.Config              // presents cert; shared by tr and h1
	tr       *http.Transport          // HTTP/2, large or unknown-length bodies, upgrades (see fastPath)
	h1       *h1Pool                  // the HTTP/1.1 fast path (see h1.go)
	h2       atomic.Bool              // the upstream chose HTTP/2: everything goes through tr
	spare    atomic.Pointer[tls.Conn] // an HTTP/2 connection the fast path dialled, for tr's next dial
	inflight atomic.Int64
	retired  atomic.Bool

	probeMu sync.Mutex // one probe at a time
	verdict atomic.Pointer[verdict]
}

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

// roundTrip sends out with the current certificate. The returned response
// body must be closed; closing it releases the generation.
func (u *Upstream) roundTrip(out *http.Request) (*http.Response, *generation, error) {
	g, err := u.current()
	if err != nil {
		return nil, nil, err
	}
	g.inflight.Add(1)
	if g.fastPath(out) {
		resp, err := u.roundTripH1(g, out)
		if err != errUseTransport {
			if err != nil {
				g.release()
			}
			return resp, g, err
		}
	}
	resp, err := g.tr.RoundTrip(out)
	if err != nil {
		g.release()
		return nil, g, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		g.release() // the connection now belongs to the caller, not the pool
		return resp, g, nil
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, g: g}
	return resp, g, nil
}

// roundTripRetry is roundTrip with one more attempt when a pooled
// connection turns out dead under an idempotent request without a body:
// the upstream restarted, and neither the HTTP/2 client nor the HTTP/1.1
// fast path retries such a request itself (the fast path's liveness check
// catches most dead connections before a request is written, not one that
// dies in between). Anything else, and a POST in particular, is never sent
// twice.
func (u *Upstream) roundTripRetry(out *http.Request) (*http.Response, *generation, error) {
	resp, g, err := u.roundTrip(out)
	if err != nil && out.Context().Err() == nil && isIdempotent(out.Method) &&
		(out.Body == nil || out.Body == http.NoBody) && deadConnection(err) {
		resp, g, err = u.roundTrip(out)
	}
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

func (g *generation) release() {
	if g.inflight.Add(-1) == 0 && g.retired.Load() {
		g.tr.CloseIdleConnections()
	}
}

func (g *generation) retire() {
	g.retired.Store(true)
	g.h1.closeIdle(true)
	g.closeSpare()
	g.tr.CloseIdleConnections()
}

// close shuts the generation's idle connections (on proxy shutdown).
func (g *generation) close() {
	g.h1.closeIdle(false)
	g.closeSpare()
	g.tr.CloseIdleConnections()
}

// offerSpare keeps a connection that negotiated HTTP/2 for the Transport's
// next dial, and sends the generation's requests to the Transport from now
// on. A connection already waiting there is closed.
func (g *generation) offerSpare(c *tls.Conn) {
	g.h2.Store(true)
	if old := g.spare.Swap(c); old != nil {
		old.Close()
	}
	if g.retired.Load() {
		g.closeSpare()
	}
}

func (g *generation) takeSpare() *tls.Conn { return g.spare.Swap(nil) }

func (g *generation) closeSpare() {
	if c := g.spare.Swap(nil); c != nil {
		c.Close()
	}
}

// releasingBody releases its generation once, when closed.
type releasingBody struct {
	io.ReadCloser
	g    *generation
	once sync.Once
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.g.release)
	return err
}

// close releases idle connections of the current generation.
func (u *Upstream) close() {
	if g := u.gen.Load(); g != nil {
		g.close()
	}
}

// dialTLS opens a connection to the upstream and completes the TLS
// handshake, so that failures can be told apart: TCP (dialError) or TLS
// (handshakeError).
func (u *Upstream) dialTLS(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{Timeout: u.timeouts.Dial, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", u.dialAddr)
	if err != nil {
		return nil, &dialError{addr: u.dialAddr, err: err}
	}
	hctx, cancel := context.WithTimeout(ctx, u.timeouts.TLSHandshake)
	defer cancel()
	if u.m != nil {
		u.m.upstreamConn(u.name, 1)
		raw = &closeNotifier{Conn: raw, onClose: func() { u.m.upstreamConn(u.name, -1) }}
	}
	conn := tls.Client(raw, cfg)
	start := time.Now()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = &timeoutError{"TLS handshake timed out"}
		}
		return nil, &handshakeError{addr: u.dialAddr, err: err}
	}
	u.m.handshake(u.name, conn.ConnectionState().DidResume, time.Since(start))
	return conn, nil
}

// closeNotifier calls onClose once, when the connection is first closed.
type closeNotifier struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *closeNotifier) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

// timeoutError marks a deadline of our own as a net.Error timeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// NewUpstream returns an Upstream on its own, for tools that talk to the
// Payrails API exactly as the proxy does (the `token` command): same TLS
// settings, transport and error classification. Zero timeouts take
// DefaultTimeouts' values.
func NewUpstream(c UpstreamConfig, t Timeouts) (*Upstream, error) {
	return newUpstream(c, withDefaults(t), nil)
}

// RoundTrip implements http.RoundTripper. Failures are *Error values that
// say what happened and what to do, as the proxy's JSON errors do.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, g, err := u.roundTrip(req)
	if err != nil {
		return nil, u.classify(req.Context(), err, g)
	}
	return resp, nil
}

// CloseIdleConnections closes the upstream's idle connections.
func (u *Upstream) CloseIdleConnections() { u.close() }
