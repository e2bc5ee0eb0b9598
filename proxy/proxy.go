package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sort"
	"strings"

	"github.com/elazarl/goproxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/growstack"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Config is everything New needs.
type Config struct {
	// Upstreams are the clients of the Payrails hosts the proxy serves: at
	// least one, hosts unique. The caller owns their lifecycle (Run).
	Upstreams []*upstream.Client
	// Default names the upstream origin-form (base-URL) requests go to; a
	// lone upstream is the default whatever it says; "" means none.
	Default  string
	Timeouts Timeouts // zero fields take config.DefaultTimeouts' values
	// AllowCIDRs are the client addresses allowed to use the proxy. Empty
	// means config.DefaultAllowCIDRs (loopback): the proxy carries the
	// merchant's identity.
	AllowCIDRs []netip.Prefix
	// Client bounds what clients may make the proxy hold; zero fields take
	// DefaultClientLimits' values.
	Client ClientLimits
	// ProxyAuth, when not nil, requires Proxy-Authorization: Basic from
	// every client, in forward and base-URL modes.
	ProxyAuth *AuthFile
	// MITM, when not nil, enables connect: mitm: CONNECT to a configured
	// upstream host on port 443 is intercepted with leaves from this source
	// (the local CA) and its requests go the way of forward mode. nil means
	// such a CONNECT gets 405. (CONNECT to a configured host on port 80 is
	// a plain-HTTP tunnel either way.)
	MITM    LeafSource
	Logger  *zap.Logger // nil means no logging
	Metrics *Metrics    // nil means no metrics
	// TracerProvider makes each request's server span (internal/tracing),
	// whose children the upstream client adds; nil means no tracing.
	TracerProvider trace.TracerProvider
}

// Proxy is the http.Handler of the proxy listener. It routes each request to
// an upstream (or refuses it), sends it with that upstream's client
// certificate, and writes one log line per request. Safe for concurrent
// use; its configuration never changes after New.
type Proxy struct {
	adm       *admission // who may use the proxy, and where each request goes
	journal   journal    // the one log line of each request, and the metrics
	gp        *goproxy.ProxyHttpServer
	limits    ClientLimits
	tunnelTLS map[*upstream.Client]*tls.Config // connect: mitm: the server side of each upstream's tunnels
	tunnels   tunnels                          // tunnels being served
	timeouts  Timeouts
	log       *zap.Logger
	m         *Metrics
	tracer    *tracing.Server // nil: no tracing
}

// New builds a Proxy. It fails only on a configuration the config package
// would have refused (no upstream, duplicate host, an unknown default).
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("no upstream configured")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	a := &admission{byHost: map[string]*upstream.Client{}, allow: cfg.AllowCIDRs, auth: cfg.ProxyAuth,
		mitm: cfg.MITM != nil, log: log, m: cfg.Metrics}
	if len(a.allow) == 0 {
		a.allow = config.DefaultAllowCIDRs()
	}
	p := &Proxy{adm: a, journal: journal{log: log, m: cfg.Metrics, ids: newRequestIDs()}, log: log, m: cfg.Metrics,
		tunnelTLS: map[*upstream.Client]*tls.Config{}, limits: withClientDefaults(cfg.Client),
		timeouts: cfg.Timeouts.WithDefaults(), tracer: tracing.NewServer(cfg.TracerProvider)}
	var hosts []string
	for _, up := range cfg.Upstreams {
		if _, dup := a.byHost[up.Host()]; dup {
			return nil, fmt.Errorf("upstream %q: host %s is already used by another upstream", up.Name(), up.Host())
		}
		if up.Name() == cfg.Default || len(cfg.Upstreams) == 1 {
			a.def = up
		}
		a.byHost[up.Host()] = up
		a.upstreams = append(a.upstreams, up)
		if cfg.MITM != nil {
			p.tunnelTLS[up] = tunnelTLS(cfg.MITM, up.Host())
		}
		hosts = append(hosts, up.Host())
	}
	if cfg.Default != "" && a.def == nil {
		return nil, fmt.Errorf("the default upstream %q is not one of the upstreams", cfg.Default)
	}
	sort.Strings(hosts)
	a.allowedHosts = strings.Join(hosts, ", ")
	p.gp = p.newGoproxy()
	return p, nil
}

// Upstreams returns the configured upstreams in configuration order.
func (p *Proxy) Upstreams() []*upstream.Client { return p.adm.upstreams }

// ServeHTTP handles one request on the proxy port.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handle(w, r, nil) }

// handle is the one path of every request, on the proxy port and inside
// tunnels (tn is then the tunnel, else nil): admission, then a CONNECT's
// tunnel or goproxy with our hooks. The inbound request is never
// modified; one log line is written when it ends.
func (p *Proxy) handle(w http.ResponseWriter, r *http.Request, tn *tunnel) {
	// The path below outgrows the stack a new connection's goroutine starts
	// with; grown here, the runtime's copy moves three frames, not 25.
	growstack.Grow()
	ex := p.journal.start()
	ctx, span := p.tracer.Start(r)
	ex.span = span
	rw := &responseWriter{ResponseWriter: w, ex: ex, closeAfter: framingEndsConnection(r)}
	defer p.journal.finish(ex, rw, r)

	up, mode, err := p.adm.admit(r, tn)
	ex.mode, ex.up = mode, up
	if err != nil {
		ex.fail(err)
		err.Write(rw, ex.id)
		return
	}
	if mode == ModeConnect {
		p.serveTunnel(rw, r, &tunnel{up: up, plain: plainConnect(r)}, ex)
		return
	}
	p.gp.ServeHTTP(rw, p.outboundFor(ctx, rw, r, up, ex))
}

// outboundFor builds the request to send upstream and hands it to goproxy
// as is (absolute-form, so goproxy takes it as a proxy request), carrying
// the exchange in its context (ctx: r's, with the request's server span
// when it is traced). The inbound request is never modified. A request
// body is read with an idle timeout (see clientBody).
func (p *Proxy) outboundFor(ctx context.Context, w http.ResponseWriter, r *http.Request, up *upstream.Client, ex *exchange) *http.Request {
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, exchangeKey{}, ex), &httptrace.ClientTrace{GotConn: ex.gotConn})
	out := outbound(r, up, ctx)
	if ex.droppedHeaders = dropUnderscoreNames(out.Header); ex.droppedHeaders > 0 {
		p.m.droppedHeaders(ex.droppedHeaders)
	}
	if out.Body != nil && out.Body != http.NoBody {
		out.Body = &clientBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: p.limits.BodyIdle, ex: ex}
	}
	return out
}

// refuseDial backs goproxy's own transport and CONNECT dialer: every request
// is routed through an Upstream, so anything reaching these is a bug, and
// must not leave the host without the certificate rules.
func refuseDial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("internal error: request not routed to an upstream")
}
