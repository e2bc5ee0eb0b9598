package proxy

import (
	"net/http"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// Mode is how a request reached the proxy.
type Mode string

// Request modes (DESIGN.md § Request paths).
const (
	ModeForward Mode = "forward" // absolute-form, as HTTP_PROXY clients send
	ModeGateway Mode = "gateway" // origin-form, as base-URL clients send
	ModeConnect Mode = "connect" // CONNECT, as HTTPS_PROXY clients send
)

func canonicalHost(h string) string { return strings.ToLower(h) }

// route decides which upstream a request goes to, or why it goes nowhere.
// Host matching is exact and case-insensitive: no suffix, wildcard or
// trailing-dot leniency, so that a look-alike host is never served with
// the merchant's certificate.
func (p *Proxy) route(r *http.Request) (*Upstream, Mode, *failure.Error) {
	if r.Method == http.MethodConnect {
		up, err := p.routeConnect(r)
		return up, ModeConnect, err
	}
	if r.URL.IsAbs() {
		up, err := p.routeForward(r)
		return up, ModeForward, err
	}
	up, err := p.routeGateway(r)
	return up, ModeGateway, err
}

func (p *Proxy) routeForward(r *http.Request) (*Upstream, *failure.Error) {
	u := r.URL
	switch {
	case u.Scheme != "http":
		return nil, failure.New(failure.KindHostNotAllowed, nil, "the proxy takes http:// URLs and adds TLS itself; send "+
			"http://%s%s instead of %s://...", p.exampleHost(), u.EscapedPath(), u.Scheme)
	case u.User != nil:
		return nil, failure.New(failure.KindBadRequest, nil, "user information in the request URL is not allowed; "+
			"for proxy credentials use Proxy-Authorization")
	case u.Port() != "" && u.Port() != "80":
		return nil, failure.New(failure.KindHostNotAllowed, nil, "port %s is not allowed: send http://%s/... (port 80); "+
			"the proxy dials the configured upstream port itself", u.Port(), u.Hostname())
	}
	if up, ok := p.byHost[canonicalHost(u.Hostname())]; ok {
		return up, nil
	}
	return nil, failure.New(failure.KindHostNotAllowed, nil, "host %q is not a configured upstream; allowed: %s",
		u.Hostname(), p.allowedHosts)
}

// routeGateway sends an origin-form request to the upstream its Host header
// names, or else to the default upstream.
func (p *Proxy) routeGateway(r *http.Request) (*Upstream, *failure.Error) {
	if !strings.HasPrefix(r.URL.Path, "/") {
		return nil, failure.New(failure.KindBadRequest, nil, "request target %q is neither an absolute URL nor a path", r.RequestURI)
	}
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if up, ok := p.byHost[canonicalHost(host)]; ok {
		return up, nil
	}
	if p.def == nil {
		return nil, failure.New(failure.KindNoDefaultUpstream, nil, "no upstream has default: true, so a plain path "+
			"cannot be routed; send an absolute URL through HTTP_PROXY (one of %s) or mark one upstream default",
			p.allowedHosts)
	}
	return p.def, nil
}

func (p *Proxy) exampleHost() string {
	if p.def != nil {
		return p.def.host
	}
	return p.upstreams[0].host
}
