package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"
)

// Pool sizes. Go's default of 2 idle connections per host would make a
// sidecar under load dial (and pay a full mTLS handshake) for most requests.
const (
	maxIdleConns        = 1024
	maxIdleConnsPerHost = 512
	sessionCacheSize    = 256
)

// generation is one certificate's HTTP client, an http.RoundTripper: every
// connection it opens presents that certificate, and its TLS session cache
// is its own (a resumed TLS 1.3 session keeps the identity of the handshake
// that made it, so tickets must not outlive the certificate). It holds two
// clients, and RoundTrip alone chooses between them: the HTTP/1.1 fast
// path (h1client.go) for small requests, net/http's Transport for the rest
// and for everything once the upstream has chosen HTTP/2. The only hand-over
// between them is handOver: a connection the fast path dialled that
// negotiated h2 goes to the Transport.
//
// Immutable after newGeneration apart from its counters, the HTTP/2 flag,
// the handed-over connection and the certificate check.
type generation struct {
	d        *dialer
	cert     *tls.Certificate
	fp       string // the leaf's SHA-256, hex: the certificate's identity across reloads
	serial   string
	notAfter time.Time   // of the leaf
	tls      *tls.Config // presents cert; shared by h1 and tr
	h1       *h1.Client
	tr       *http.Transport
	h2       atomic.Bool              // the upstream chose HTTP/2: every request goes to tr
	handover atomic.Pointer[tls.Conn] // for tr's next dial
	inflight atomic.Int64
	retired  atomic.Bool
	check    certCheck // whether the upstream refuses cert (check.go)
}

// genHooks connect a generation to its client's warm connections.
type genHooks struct {
	// maxAge is how long an idle fast-path connection may wait, by whether
	// it has carried a request (the learnt server idle timeouts, warm.go).
	maxAge func(used bool) time.Duration
	// onDead is told of each idle connection the server closed.
	onDead func(idle time.Duration, used bool)
}

// newGeneration builds the client that presents exactly cert. Its
// tls.Config is built here once and never modified afterwards.
func newGeneration(d *dialer, cert *tls.Certificate, t Timeouts, hooks genHooks) *generation {
	g := &generation{d: d, cert: cert, fp: fingerprint(cert), serial: serialOf(cert), notAfter: notAfter(cert),
		tls: clientTLS(d.host, d.currentRoots(), cert, tls.NewLRUClientSessionCache(sessionCacheSize), nil, "h2", "http/1.1")}
	pool := h1.NewPool(t.IdleConn, maxIdleConnsPerHost)
	if hooks.maxAge != nil {
		pool.SetMaxAge(false, hooks.maxAge(false))
		pool.SetMaxAge(true, hooks.maxAge(true))
	}
	pool.OnDead = hooks.onDead
	g.h1 = &h1.Client{Dial: g.dialFastPath, Pool: pool, HeaderTimeout: t.ResponseHeader, Done: g.release}
	g.tr = &http.Transport{
		Proxy:                  nil, // never through the proxy's own HTTP_PROXY environment
		DialTLSContext:         g.dialTransport,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           maxIdleConns,
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		IdleConnTimeout:        t.IdleConn,
		ResponseHeaderTimeout:  t.ResponseHeader,
		MaxResponseHeaderBytes: h1.MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		// Accept-Encoding and compressed bodies pass through untouched.
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			// Detect a dead HTTP/2 connection instead of queueing requests on it.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	return g
}

// RoundTrip sends req with the generation's certificate, over the fast path
// when it takes req and the upstream speaks HTTP/1.1, else over the
// Transport. Closing the response body (or reading it to its end) releases
// the generation; so does a failed RoundTrip.
func (g *generation) RoundTrip(req *http.Request) (*http.Response, error) {
	g.inflight.Add(1)
	if !g.h2.Load() && h1.Takes(req) {
		resp, err := g.h1.RoundTrip(req)
		if err != h1.ErrNegotiatedH2 {
			if err != nil {
				g.release()
			}
			return resp, err
		}
	}
	req = nonReplayable(req, g.h2.Load())
	seen := newSighting()
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &seen.trace))
	resp, err := g.tr.RoundTrip(req)
	switch {
	case err != nil:
		g.release()
		if ac := seen.conn.Load(); ac != nil {
			err = ac.explain(err)
		}
		if !seen.began.Load() && deadConnection(err) {
			// As the fast path says it: no answer began, so the request
			// may be sent again (policy.go). A connection that broke in the
			// middle of the headers is not one of these (issue 17).
			err = &h1.NoResponseError{Err: err, Fresh: !seen.reused.Load()}
		}
		return nil, err
	case resp.StatusCode == http.StatusSwitchingProtocols && req.Header.Get("Upgrade") == "":
		// Never a raw pipe over the merchant's connection for a request that
		// did not ask for one (issue 22): closing the body closes it. (The
		// inbound side forwards Upgrade for a websocket only.)
		resp.Body.Close()
		g.release()
		return nil, h1.ErrUnaskedUpgrade
	case resp.StatusCode == http.StatusSwitchingProtocols:
		g.release() // the connection now belongs to the caller, not the pool
		return resp, nil
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, g: g}
	return resp, nil
}

// sighting is what the Transport lets one request see of its send, in one
// allocation with its trace (the hooks run on the Transport's goroutines).
type sighting struct {
	began  atomic.Bool // a byte of the answer came
	reused atomic.Bool // the connection was not new
	conn   atomic.Pointer[alertConn]
	trace  httptrace.ClientTrace
}

func newSighting() *sighting {
	s := &sighting{}
	s.trace.GotFirstResponseByte = func() { s.began.Store(true) }
	s.trace.GotConn = func(ci httptrace.GotConnInfo) {
		s.reused.Store(ci.Reused)
		if ac, ok := ci.Conn.(*alertConn); ok {
			s.conn.Store(ac)
		}
	}
	return s
}

// nonReplayable returns req as net/http's Transport must see it: a request
// it never sends again on its own. Over HTTP/1.1 the Transport resends a
// request whose reused connection died after the request was written
// (the server may have processed it) when it looks replayable
// (net/http's Request.isReplayable): no body or a GetBody, and a method of
// GET, HEAD, OPTIONS or TRACE or the mere presence of an Idempotency-Key or
// X-Idempotency-Key header, even empty. That would bypass retry.attempts,
// the retry budget, the attempts header and the log line, and send an
// un-keyed request twice (issue 22). The proxy never sets GetBody
// (keepBody); a request without a body that the Transport would take for
// replayable gets an empty body of unknown length instead, which the
// Transport probes and sends as no body at all (net/http's
// probeRequestBody, for the methods that usually lack one) and never
// replays. Over HTTP/2 (h2) the Transport resends only a request the
// server declared unprocessed (REFUSED_STREAM, above a GOAWAY's last
// stream, RFC 9113 §8.7), and an empty body would cost a DATA frame per
// request: req is left as it is.
func nonReplayable(req *http.Request, h2 bool) *http.Request {
	if h2 || (req.Body != nil && req.Body != http.NoBody) {
		return req
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		if req.Header["Idempotency-Key"] == nil && req.Header["X-Idempotency-Key"] == nil {
			return req
		}
		// A body-carrying method without a body: an empty body of unknown
		// length would be sent chunked, so the fast path takes it instead
		// (h1Client.takes); only an upgrade comes here.
	}
	out := *req
	out.Body, out.ContentLength = emptyBody{}, 0
	return &out
}

// emptyBody is a request body with nothing in it that net/http cannot
// recognise as http.NoBody (see nonReplayable).
type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

// dialFastPath opens a connection for the fast path; one that negotiated
// HTTP/2 is handed over to the Transport instead (h1.ErrNegotiatedH2).
func (g *generation) dialFastPath(ctx context.Context) (*h1.Conn, error) {
	c, err := g.d.dialTLS(ctx, g.tls)
	if err != nil {
		return nil, err
	}
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		g.handOver(c)
		return nil, h1.ErrNegotiatedH2
	}
	return h1.NewConn(c, &g.h1.Open), nil
}

// handOver gives a connection that negotiated HTTP/2 to the Transport's
// next dial, and sends every later request of the generation to the
// Transport. A connection already waiting there is closed.
func (g *generation) handOver(c *tls.Conn) {
	g.h2.Store(true)
	if old := g.handover.Swap(c); old != nil {
		old.Close()
	}
	if g.retired.Load() {
		g.closeHandover()
	}
}

// dialTransport is the Transport's dial: the handed-over connection, or a
// new one, each kept an eye on by an alertConn.
func (g *generation) dialTransport(ctx context.Context, _, _ string) (net.Conn, error) {
	if c := g.handover.Swap(nil); c != nil {
		return &alertConn{Conn: c}, nil
	}
	c, err := g.d.dialTLS(ctx, g.tls)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		g.h2.Store(true)
	}
	return &alertConn{Conn: c}, nil
}

// alertConn is a connection of the Transport that keeps the first TLS
// alert the server sent on it. In TLS 1.3 a server refuses the client
// certificate after the client's handshake has finished, with an alert on
// the connection's first read. Over HTTP/2 that read is the Transport's
// connection reader's, not the request's: when it fails before the
// request was taken onto the connection, the request only learns that the
// "client conn could not be established" (issue 22). explain puts the
// alert back into the request's error, so that the refusal is classified
// as such, failed over and replayed, as over HTTP/1.1. The Transport sees
// the connection through its ConnectionState and HandshakeContext
// methods, promoted from *tls.Conn.
type alertConn struct {
	*tls.Conn
	alert atomic.Pointer[error]
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.note(err)
	}
	return n, err
}

// note keeps err when it is the server's alert. Apart from Read, so that
// Read's own err never escapes: it would cost an allocation per read
// (two per request over HTTP/2).
func (c *alertConn) note(err error) {
	if c.alert.Load() != nil {
		return
	}
	if _, _, ok := answer.ServerAlert(err); ok {
		c.alert.CompareAndSwap(nil, &err)
	}
}

// explain returns err, joined with the server's alert when the server sent
// one on this connection and err does not carry it already. The Transport
// reports the alert's read only after making it, so the alert is there
// when err is.
func (c *alertConn) explain(err error) error {
	a := c.alert.Load()
	if a == nil {
		return err
	}
	if _, _, ok := answer.ServerAlert(err); ok {
		return err
	}
	return &alertedError{alert: *a, err: err}
}

// alertedError is a request's failure on a connection the server ended
// with a TLS alert.
type alertedError struct{ alert, err error }

func (e *alertedError) Error() string   { return e.err.Error() + " (" + e.alert.Error() + ")" }
func (e *alertedError) Unwrap() []error { return []error{e.alert, e.err} }

func (g *generation) closeHandover() {
	if c := g.handover.Swap(nil); c != nil {
		c.Close()
	}
}

// release ends one request's use of the generation; the last one out of a
// retired generation closes what the Transport still holds.
func (g *generation) release() {
	if g.inflight.Add(-1) == 0 && g.retired.Load() {
		g.tr.CloseIdleConnections()
	}
}

// retire stops the generation from taking new requests' connections: its
// idle connections close at once, busy ones when their response is done.
func (g *generation) retire() {
	g.retired.Store(true)
	g.h1.Pool.CloseIdle(true)
	g.closeHandover()
	g.tr.CloseIdleConnections()
}

// closeIdle shuts the generation's idle connections (on proxy shutdown).
func (g *generation) closeIdle() {
	g.h1.Pool.CloseIdle(false)
	g.closeHandover()
	g.tr.CloseIdleConnections()
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

// notAfter is the end of the leaf's validity; far in the future when the
// leaf is not parsed (a certificate of a tool's own making).
func notAfter(c *tls.Certificate) time.Time {
	if c == nil || c.Leaf == nil {
		return time.Unix(1<<62, 0)
	}
	return c.Leaf.NotAfter
}

func serialOf(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.Leaf.SerialNumber.Bytes())
}
