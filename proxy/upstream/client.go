package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
	"go.uber.org/zap"
)

// CertificateSource is what a client needs from a certificate store.
// Every method must be cheap and safe for concurrent use; the returned
// certificates are never modified.
type CertificateSource interface {
	// Certificate returns the store's choice, or nil when no valid
	// certificate is loaded.
	Certificate() *tls.Certificate
	// Candidates returns the certificates that may be presented now (valid
	// at this moment), best first, the choice first; empty when none.
	// Compare them by content: a reload may give the same pair a new pointer.
	Candidates() []*tls.Certificate
	// Changed returns a channel closed when Certificate or Candidates may
	// answer differently; nil when they never change.
	Changed() <-chan struct{}
}

// RootSource gives the roots that verify the server, for roots that are
// reloaded (certs' RootStore for ca_file). Both methods must be cheap and
// safe for concurrent use; the pool returned is never modified.
type RootSource interface {
	// Pool returns the roots now. Never nil.
	Pool() *x509.CertPool
	// Changed returns a channel closed when Pool may answer differently.
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

// Timeouts is the configuration's timeouts block. The client ignores
// Shutdown. A zero field means config.DefaultTimeouts' value.
type Timeouts = config.Timeouts

// Config describes one Payrails API endpoint and how to reach it.
type Config struct {
	Name    string
	URL     *url.URL       // https://HOST[:PORT]; required
	Address string         // dial this HOST:PORT instead of resolving HOST; "" to resolve
	RootCAs *x509.CertPool // roots that verify the server; nil means the system roots
	// Roots, when not nil, supersedes RootCAs: the roots are read from it
	// for each new generation, and a change (ca_file reloaded) makes the
	// client present its certificate through a new generation, so that
	// every new connection verifies the server with the new roots.
	Roots        RootSource
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
	Via      *egress.Proxy
	Timeouts Timeouts     // zero fields take config.DefaultTimeouts' values
	Retry    config.Retry // a zero Attempts means config.DefaultRetry
	Metrics  *Metrics     // nil means no metrics
	Logger   *zap.Logger  // nil means no logging
}

// Client sends requests to one Payrails host over mutual TLS, with the
// certificate its source offers as the selection rules allow: the
// inbound proxy's request path calls Send, tools and the token manager
// RoundTrip. Run is its one lifecycle: the selection and warm-connection
// loop, the token manager and the certificate checks run under it.
// Without Run the client still sends, with the certificate chosen by New
// and no verification, failover, tokens or warm connections.
//
// Connections are grouped in generations, one per certificate
// (generation.go). When another certificate is presented, the old
// generation is retired: its idle connections are closed at once and its
// busy ones when their last response is done, so that no new request
// reuses a connection (or a session ticket, which in TLS 1.3 carries the
// client identity) made with the old certificate.
type Client struct {
	name      string
	host      string // lower-case host name, no port
	authority string // URL.Host: what the Host header becomes
	about     about
	t         Timeouts
	retry     config.Retry
	m         *Metrics
	log       *zap.Logger
	d         *dialer
	sel       *selector
	warm      *warmer
	tokens    *tokens // nil without managed tokens
	budget    retryBudget
	bg        background // certificate checks, owned by Run
}

// field names of the client's log lines, as the request log line's
const (
	fieldUpstream = "upstream"
	fieldSerial   = "serial"
)

// New builds a client and presents the best candidate of its source at
// once (verified later, by Run). It fails only on a configuration the
// config package would have refused.
func New(c Config) (*Client, error) {
	if c.URL == nil || c.URL.Scheme != "https" || c.URL.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: URL must be https://HOST, got %v", c.Name, c.URL)
	}
	if c.Certificates == nil {
		return nil, fmt.Errorf("upstream %q: no certificate source", c.Name)
	}
	if err := c.Via.Check(); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", c.Name, err)
	}
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	t := c.Timeouts.WithDefaults()
	cl := &Client{name: c.Name, host: strings.ToLower(c.URL.Hostname()), authority: c.URL.Host, t: t,
		retry: withRetryDefaults(c.Retry), m: c.Metrics, log: log}
	cl.about = about{name: c.Name, host: cl.host, certSource: c.CertSource, timeouts: t}
	cl.d = newDialer(c.Name, c.URL, c.Address, c.RootCAs, c.Via, t, c.Metrics)
	cl.d.rootSrc = c.Roots
	cl.d.keys.name, cl.d.keys.log = c.Name, log
	cl.warm = &warmer{name: c.Name, target: max(c.WarmConnections, 0), idleConn: t.IdleConn, log: log, m: c.Metrics}
	cl.d.onDialed = cl.warm.noteDial
	path := c.VerifyPath
	if path == "" {
		path = "/"
	}
	cl.sel = &selector{name: c.Name, host: cl.host, certSource: c.CertSource, verify: c.Verify, src: c.Certificates,
		v: verification{base: "https://" + cl.authority, path: path, t: t}, log: log, m: c.Metrics,
		kick: make(chan struct{}, 1), news: make(chan struct{})}
	hooks := genHooks{maxAge: cl.warm.maxAge, onDead: cl.warm.observeClose}
	cl.sel.newGen = func(cert *tls.Certificate) *generation { return newGeneration(cl.d, cert, t, hooks) }
	cl.warm.current = cl.sel.gen.Load
	cl.d.keys.kick = cl.sel.poke
	if c.Token != nil {
		cl.tokens = newTokens(c.Token, cl, &url.URL{Scheme: "https", Host: cl.authority}, c.Name, c.Metrics)
	}
	c.Metrics.upstream(c.Name)
	cl.sel.evaluate(context.Background(), false)
	return cl, nil
}

// Name is the upstream's configured name.
func (c *Client) Name() string { return c.name }

// Host is the upstream's host name, lower case, without a port: what
// forward-mode requests are matched against.
func (c *Client) Host() string { return c.host }

// Authority is the upstream's HOST[:PORT]: what the Host header of the
// requests sent to it is.
func (c *Client) Authority() string { return c.authority }

// Run is the client's background work until ctx is done: it follows the
// certificate source, verifies candidates when they are due, switches
// certificates at the expiry margin, tends the warm connections, runs the
// token manager and the certificate checks. When ctx is done it stops them
// all, waits for them, closes the idle connections and returns nil.
// Requests in flight are not touched. Call it once.
func (c *Client) Run(ctx context.Context) error {
	c.sel.looping.Store(true)
	defer c.sel.looping.Store(false)
	c.bg.start(ctx)
	defer func() {
		c.bg.stop()
		c.CloseIdleConnections()
	}()
	if c.tokens != nil {
		done := make(chan struct{})
		go func() { defer close(done); c.tokens.run(ctx) }()
		defer func() { <-done }()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	eval := true
	for {
		changed := c.sel.src.Changed()
		var rootsChanged <-chan struct{}
		if c.d.rootSrc != nil {
			rootsChanged = c.d.rootSrc.Changed()
		}
		if eval {
			c.sel.evaluate(ctx, true)
		}
		wait := c.warm.tend(ctx)
		for _, due := range []time.Time{c.sel.nextWake(), c.probeKey(ctx)} {
			if !due.IsZero() && (wait == 0 || time.Until(due) < wait) {
				wait = max(time.Until(due), time.Millisecond)
			}
		}
		if wait == 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			eval = true
		case <-rootsChanged:
			c.sel.renew()
			eval = false
		case <-c.sel.kick:
			eval = true
		case <-timer.C:
			due := c.sel.nextWake()
			eval = !due.IsZero() && !time.Now().Before(due)
		}
	}
}

// current returns the generation of the certificate presented now: one
// atomic load and a clock read. Choosing another is the loop's work: when
// no valid certificate is presented (a request between a certificate's
// drop and the loop's next evaluation, or as the one in use expires) the
// request waits for the loop's choice (selector.await), at most as long as
// a failover would, rather than being refused while a valid one is there.
func (c *Client) current(ctx context.Context) (*generation, error) {
	if g := valid(c.sel.gen.Load()); g != nil {
		return g, nil
	}
	if g := c.sel.await(ctx, c.selectionWait()); g != nil {
		return g, nil
	}
	return nil, errNoCertificate
}

// selectionWait bounds how long a request waits for the loop to choose a
// certificate (a failover, or none presented): a verification's handshake
// and answer.
func (c *Client) selectionWait() time.Duration { return 2*c.t.TLSHandshake + time.Second }

// RoundTrip implements http.RoundTripper for tools and the token manager:
// one send with the certificate presented now, no retries. Failures are
// *failure.Error values that say what happened and what to do, as the
// proxy's JSON errors do.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	g, err := c.current(req.Context())
	serial := ""
	if err == nil {
		serial = g.serial
		var resp *http.Response
		if resp, err = g.RoundTrip(req); err == nil {
			return resp, nil
		}
	}
	var v verdict
	if g != nil {
		v, err = c.verdictOf(req.Context(), g, err)
	} else {
		v = judge(err, req.Context().Err() != nil)
	}
	return nil, c.about.explain(v, err, serial)
}

// CloseIdleConnections closes the idle connections of the certificate in
// use.
func (c *Client) CloseIdleConnections() {
	if g := c.sel.gen.Load(); g != nil {
		g.closeIdle()
	}
}

// Ready returns nil when the client has a certificate to present that the
// upstream is not known to refuse and whose key signed the last full
// handshake, else why not. A certificate not verified yet, or an upstream
// that could not be asked, does not make it unready. Safe for concurrent
// use.
func (c *Client) Ready() error {
	if err := c.sel.ready(); err != nil {
		return err
	}
	return c.d.keys.ready()
}

// CertificateStatuses returns what the client knows of each candidate
// certificate, best first. Safe for concurrent use.
func (c *Client) CertificateStatuses() []CertificateStatus { return c.sel.statuses() }

// verdictOf judges err, a failed send through g. A failure the verdict
// leaves ambiguous (a fresh connection that died unanswered: in TLS 1.3 a
// refusal of the certificate can arrive as a broken pipe, its alert
// unread) is explained by the certificate check: whether the server
// refuses g's certificate, learnt on a connection of the check's own (a
// check Run owns; a tool's, without Run, makes it in place), waited for
// at most timeouts.tls_handshake.
func (c *Client) verdictOf(ctx context.Context, g *generation, err error) (verdict, error) {
	v := judge(err, ctx.Err() != nil)
	if !v.ambiguous {
		return v, err
	}
	if cr := g.check.refusal(ctx, g, &c.bg, c.authority, c.t.TLSHandshake); cr != nil {
		return v.refusedBy(cr), &checkedRefusal{err: err, refusal: cr.err}
	}
	return v, err
}
