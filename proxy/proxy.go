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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/elazarl/goproxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"go.uber.org/zap"
)

// Config is everything New needs.
type Config struct {
	Upstreams []UpstreamConfig // at least one; hosts unique; at most one Default
	Timeouts  Timeouts         // zero fields take config.DefaultTimeouts' values
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
	// CONNECT gets 405.
	MITM LeafSource
	// Retry says when a request is sent again; a zero Attempts means
	// config.DefaultRetry.
	Retry   config.Retry
	Logger  *zap.Logger // nil means no logging
	Metrics *Metrics    // nil means no metrics
}

// Proxy is the http.Handler of the proxy listener. It routes each request to
// an upstream (or refuses it), sends it with that upstream's client
// certificate, and writes one log line per request. Safe for concurrent
// use; its configuration never changes after New.
type Proxy struct {
	upstreams    []*Upstream
	byHost       map[string]*Upstream
	def          *Upstream
	allowedHosts string // for messages: "a, b"
	allow        []netip.Prefix
	gp           *goproxy.ProxyHttpServer
	auth         *AuthFile
	limits       ClientLimits
	mitm         LeafSource
	tunnelTLS    map[*Upstream]*tls.Config // connect: mitm: the server side of each upstream's tunnels
	tunnels      tunnels                   // intercepted CONNECTs being served
	timeouts     Timeouts
	log          *zap.Logger
	m            *Metrics
	ids          *requestIDs
	refused      refusals // connections refused at accept (admission.go)
}

// New builds a Proxy. It fails only on a configuration the config package
// would have refused (no upstream, duplicate host, two defaults).
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("no upstream configured")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	p := &Proxy{byHost: map[string]*Upstream{}, allow: cfg.AllowCIDRs, log: log, m: cfg.Metrics, auth: cfg.ProxyAuth, ids: newRequestIDs(),
		mitm: cfg.MITM, tunnelTLS: map[*Upstream]*tls.Config{}}
	p.limits = withClientDefaults(cfg.Client)
	if len(p.allow) == 0 {
		p.allow = config.DefaultAllowCIDRs()
	}
	t := withDefaults(cfg.Timeouts)
	p.timeouts = t
	var hosts []string
	for _, c := range cfg.Upstreams {
		up, err := newUpstream(c, t, cfg.Retry, cfg.Metrics, log)
		if err != nil {
			return nil, err
		}
		if _, dup := p.byHost[up.host]; dup {
			return nil, fmt.Errorf("upstream %q: host %s is already used by another upstream", c.Name, up.host)
		}
		if up.isDefault || len(cfg.Upstreams) == 1 {
			if p.def != nil {
				return nil, fmt.Errorf("upstreams %q and %q are both default", p.def.name, up.name)
			}
			p.def = up
		}
		p.byHost[up.host] = up
		p.upstreams = append(p.upstreams, up)
		cfg.Metrics.upstream(up.name)
		if p.mitm != nil {
			p.tunnelTLS[up] = tunnelTLS(p.mitm, up.host)
		}
		hosts = append(hosts, up.host)
	}
	sort.Strings(hosts)
	p.allowedHosts = strings.Join(hosts, ", ")
	p.gp = p.newGoproxy()
	return p, nil
}

// Upstreams returns the configured upstreams in configuration order.
func (p *Proxy) Upstreams() []*Upstream { return p.upstreams }

// ServeHTTP handles one request on the proxy port.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handle(w, r, nil) }

// handle is the one path of every request, on the proxy port and inside
// intercepted tunnels (tunnel is then the tunnel's upstream, else nil):
// admission, then an intercepted CONNECT or goproxy with our hooks. The
// inbound request is never modified; one log line is written when it ends.
func (p *Proxy) handle(w http.ResponseWriter, r *http.Request, tunnel *Upstream) {
	ex := p.newExchange()
	rw := &responseWriter{ResponseWriter: w, ex: ex, closeAfter: framingEndsConnection(r)}
	defer p.finishExchange(ex, rw, r)

	up, mode, err := p.admit(r, tunnel)
	ex.mode, ex.up = mode, up
	if err != nil {
		ex.fail(err)
		err.Write(rw, ex.id)
		return
	}
	if mode == ModeConnect {
		p.serveTunnel(rw, r, up, ex)
		return
	}
	p.gp.ServeHTTP(rw, p.outboundFor(rw, r, up, ex))
}

// admit decides whether and where a request goes: the client's address,
// its proxy credentials (given once, on the CONNECT, for a tunnel), the
// route, then the framing.
func (p *Proxy) admit(r *http.Request, tunnel *Upstream) (*Upstream, Mode, *failure.Error) {
	if err := p.checkSource(r); err != nil {
		return nil, "", err
	}
	if err := checkMethod(r); err != nil {
		return nil, "", err
	}
	if tunnel != nil {
		if err := routeTunnelled(r, tunnel); err != nil {
			return nil, ModeTunnel, err
		}
		return tunnel, ModeTunnel, checkFraming(r)
	}
	if err := p.checkProxyAuth(r); err != nil {
		return nil, "", err
	}
	up, mode, err := p.route(r)
	if err == nil {
		err = checkFraming(r)
	}
	return up, mode, err
}

// outboundFor builds the request to send upstream and hands it to goproxy
// as is (absolute-form, so goproxy takes it as a proxy request), carrying
// the exchange in its context. The inbound request is never modified. A
// request body is read with an idle timeout (see clientBody).
func (p *Proxy) outboundFor(w http.ResponseWriter, r *http.Request, up *Upstream, ex *exchange) *http.Request {
	ctx := httptrace.WithClientTrace(context.WithValue(r.Context(), exchangeKey{}, ex), &httptrace.ClientTrace{GotConn: ex.gotConn})
	out := outbound(r, up, ctx)
	if ex.droppedHeaders = dropUnderscoreNames(out.Header); ex.droppedHeaders > 0 {
		p.m.droppedHeaders(ex.droppedHeaders)
	}
	if out.Body != nil && out.Body != http.NoBody {
		out.Body = &clientBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: p.limits.BodyIdle, ex: ex}
	}
	return out
}

func (p *Proxy) checkSource(r *http.Request) *failure.Error {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return failure.New(failure.KindSourceNotAllowed, err, "cannot tell the client address %q", r.RemoteAddr)
	}
	if p.allowedIP(ap.Addr()) {
		return nil
	}
	return failure.New(failure.KindSourceNotAllowed, nil, "client %s is not in access.allow_cidrs; the proxy carries the "+
		"merchant's Payrails identity and serves only listed addresses", ap.Addr().Unmap())
}

// Close closes idle upstream connections and stops the upstreams'
// background work. In-flight requests are not touched.
func (p *Proxy) Close() {
	for _, up := range p.upstreams {
		up.Close()
	}
}

// refuseDial backs goproxy's own transport and CONNECT dialer: every request
// is routed through an Upstream, so anything reaching these is a bug, and
// must not leave the host without the certificate rules.
func refuseDial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("internal error: request not routed to an upstream")
}
