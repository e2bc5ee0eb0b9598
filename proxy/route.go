package proxy

import (
	"net"
	"net/http"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// Mode is how a request reached the proxy.
type Mode string

// Request modes (DESIGN.md § Request paths).
const (
	ModeForward Mode = "forward" // absolute-form, as HTTP_PROXY clients send
	ModeGateway Mode = "gateway" // origin-form, as base-URL clients send
	ModeConnect Mode = "connect" // CONNECT, as HTTPS_PROXY clients send
	// ModeForwardHTTPS is absolute-form https:// sent in plain text to the
	// proxy port, as axios 0.x sends to an HTTPS_PROXY: served like its
	// http:// twin, and logged apart.
	ModeForwardHTTPS Mode = "forward-https"
)

func canonicalHost(h string) string { return strings.ToLower(h) }

// route decides which upstream a request goes to, or why it goes nowhere.
// Host matching is exact and case-insensitive: no suffix, wildcard or
// trailing-dot leniency, so that a look-alike host is never served with
// the merchant's certificate.
func (a *admission) route(r *http.Request) (*upstream.Client, Mode, *failure.Error) {
	if r.Method == http.MethodConnect {
		up, err := a.routeConnect(r)
		return up, ModeConnect, err
	}
	if r.URL.IsAbs() {
		mode := ModeForward
		if r.URL.Scheme == "https" {
			mode = ModeForwardHTTPS
		}
		up, err := a.routeForward(r)
		return up, mode, err
	}
	up, err := a.routeGateway(r)
	return up, ModeGateway, err
}

// routeForward routes an absolute-form request: http://, or https:// sent
// in plain text (axios 0.x and some Java and .NET stacks do so to an
// HTTPS_PROXY instead of tunnelling). The leg to the proxy is plaintext by
// the client's own choice either way, so serving https:// like its http://
// twin weakens nothing (DESIGN.md, Request paths point 3).
func (a *admission) routeForward(r *http.Request) (*upstream.Client, *failure.Error) {
	u := r.URL
	defaultPort := "80"
	if u.Scheme == "https" {
		defaultPort = "443"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, failure.New(failure.KindHostNotAllowed, nil, "the proxy takes http:// URLs and adds TLS itself; send "+
			"http://%s%s instead of %s://...", a.exampleHost(), u.EscapedPath(), u.Scheme)
	case u.User != nil:
		return nil, failure.New(failure.KindBadRequest, nil, "user information in the request URL is not allowed; "+
			"for proxy credentials use Proxy-Authorization")
	case u.Port() != "" && u.Port() != defaultPort:
		return nil, failure.New(failure.KindHostNotAllowed, nil, "port %s is not allowed: send http://%s/... (port 80); "+
			"the proxy dials the configured upstream port itself", u.Port(), u.Hostname())
	}
	if up, ok := a.byHost[canonicalHost(u.Hostname())]; ok {
		return up, nil
	}
	return nil, failure.New(failure.KindHostNotAllowed, nil, "host %q is not a configured upstream; allowed: %s",
		u.Hostname(), a.allowedHosts)
}

// routeGateway sends an origin-form request to the upstream its Host header
// names, or else to the default upstream.
func (a *admission) routeGateway(r *http.Request) (*upstream.Client, *failure.Error) {
	if !strings.HasPrefix(r.URL.Path, "/") {
		return nil, failure.New(failure.KindBadRequest, nil, "request target %q is neither an absolute URL nor a path", r.RequestURI)
	}
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if up, ok := a.byHost[canonicalHost(host)]; ok {
		return up, nil
	}
	if a.def == nil {
		return nil, failure.New(failure.KindNoDefaultUpstream, nil, "no upstream has default: true, so a plain path "+
			"cannot be routed; send an absolute URL through HTTP_PROXY (one of %s) or mark one upstream default",
			a.allowedHosts)
	}
	return a.def, nil
}

// proxyAddress is the proxy's own address as the client reached it (the
// listener's address on the connection), for messages that tell a client
// what to set HTTP_PROXY or its base URL to. Never r.Host: in forward mode
// that is the API host, on a CONNECT the tunnel's target.
func proxyAddress(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return "HOST:PORT"
}

func (a *admission) exampleHost() string {
	if a.def != nil {
		return a.def.Host()
	}
	return a.upstreams[0].Host()
}

// routeConnect allows a CONNECT only to a configured upstream host, by
// name, on port 80 (a plain-HTTP tunnel) or, with connect: mitm, 443:
// never a blind tunnel, never an IP literal or another port.
func (a *admission) routeConnect(r *http.Request) (*upstream.Client, *failure.Error) {
	plain := plainConnect(r)
	if !a.mitm && !plain {
		addr := proxyAddress(r)
		return nil, failure.New(failure.KindConnectNotSupported, nil, "CONNECT (HTTPS_PROXY) cannot carry the client "+
			"certificate through a tunnel; call http://%s/... with HTTP_PROXY=http://%s (http_proxy for curl) and the "+
			"proxy adds TLS and the certificate, use the proxy as the base URL (http://%s/...), or enable connect: mitm "+
			"with a local CA the service trusts (payrails-mtls-proxy ca init)", a.exampleHost(), addr, addr)
	}
	host, port, err := net.SplitHostPort(r.Host)
	switch {
	case err != nil:
		return nil, failure.New(failure.KindBadRequest, err, "CONNECT target %q is not HOST:PORT", r.Host)
	case port != "443" && !plain:
		return nil, failure.New(failure.KindHostNotAllowed, nil, "CONNECT to port %s is not allowed: only %s:443 is intercepted "+
			"and %s:80 tunnelled as plain HTTP (and only configured hosts)", port, host, host)
	}
	if up, ok := a.byHost[canonicalHost(host)]; ok {
		return up, nil
	}
	return nil, failure.New(failure.KindHostNotAllowed, nil, "CONNECT to %q is not allowed: the proxy opens no blind "+
		"tunnels and serves only the configured upstreams: %s", host, a.allowedHosts)
}
