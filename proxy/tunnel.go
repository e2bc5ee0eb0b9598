package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// connect: mitm. A CONNECT cannot carry the merchant's certificate, so with
// connect: mitm the proxy ends the tunnel's TLS itself, with a leaf for the
// upstream host from a local CA the service trusts, and serves what is
// inside exactly as it serves the proxy port: an http.Server made by the
// same newServer (header cap, header, idle and body idle timeouts, framing
// rules, HTTP/1.0 connections closed after one answer) whose handler is
// the same admission and forwarding path, with the tunnel's upstream as
// the only route. goproxy's own interception loop reads requests with a
// bare http.ReadRequest and none of those limits, so CONNECT never reaches
// goproxy; the requests inside a tunnel do, like every other request.

// ModeTunnel marks requests read inside a CONNECT tunnel (connect: mitm).
const ModeTunnel Mode = "mitm"

// LeafSource issues the certificates the proxy presents to services inside
// CONNECT tunnels, signed by the local CA they trust (certs.Minter).
type LeafSource interface {
	Certificate(host string) (*tls.Certificate, error)
}

// routeConnect allows a CONNECT only to a configured upstream host on port
// 443, by name: never a blind tunnel, never an IP literal or another port.
func (p *Proxy) routeConnect(r *http.Request) (*Upstream, *failure.Error) {
	if p.mitm == nil {
		return nil, failure.New(failure.KindConnectNotSupported, nil, "CONNECT (HTTPS_PROXY) cannot carry the client "+
			"certificate through a tunnel; call http://%s/... through HTTP_PROXY (http_proxy for curl) and the proxy "+
			"adds TLS and the certificate, use the proxy as the base URL (http://%s/...), or enable connect: mitm "+
			"with a local CA the service trusts (payrails-mtls-proxy ca init)", p.exampleHost(), r.Host)
	}
	host, port, err := net.SplitHostPort(r.Host)
	switch {
	case err != nil:
		return nil, failure.New(failure.KindBadRequest, err, "CONNECT target %q is not HOST:PORT", r.Host)
	case port != "443":
		return nil, failure.New(failure.KindHostNotAllowed, nil, "CONNECT to port %s is not allowed: only %s:443 is intercepted "+
			"(and only configured hosts)", port, host)
	}
	if up, ok := p.byHost[canonicalHost(host)]; ok {
		return up, nil
	}
	return nil, failure.New(failure.KindHostNotAllowed, nil, "CONNECT to %q is not allowed: the proxy opens no blind "+
		"tunnels and intercepts only the configured upstreams: %s", host, p.allowedHosts)
}

// routeTunnelled admits a request read inside a tunnel to up: it must name
// up's host (a tunnel to one host never carries requests for another) and
// must not be a CONNECT of its own.
func routeTunnelled(r *http.Request, up *Upstream) *failure.Error {
	if r.Method == http.MethodConnect {
		return failure.New(failure.KindConnectNotSupported, nil, "a CONNECT inside an intercepted tunnel is not supported: "+
			"send the requests for https://%s/ in this tunnel directly", up.host)
	}
	host, port := r.Host, ""
	if r.URL.IsAbs() {
		u := r.URL
		if u.Scheme != "https" || u.User != nil {
			return failure.New(failure.KindHostNotAllowed, nil, "this tunnel was opened for https://%s; a request for %s://%s "+
				"cannot use it", up.host, u.Scheme, u.Host)
		}
		host = u.Host
	} else if len(r.URL.Path) == 0 || r.URL.Path[0] != '/' {
		return failure.New(failure.KindBadRequest, nil, "request target %q is neither an absolute URL nor a path", r.RequestURI)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	if canonicalHost(host) != up.host || (port != "" && port != "443") {
		return failure.New(failure.KindHostNotAllowed, nil, "this tunnel was opened for %s; a request for %q cannot use it",
			up.host, r.Host)
	}
	return nil
}

// tunnelTLS is the server side of the tunnels to host: the leaf for host
// whatever SNI says (a client asking for another name fails verification),
// TLS 1.2 at least, HTTP/1.1 only. Built once per upstream.
func tunnelTLS(leaves LeafSource, host string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return leaves.Certificate(host) },
	}
}

// serveTunnel answers an allowed CONNECT: it takes the connection over,
// confirms the tunnel, completes the TLS handshake within
// timeouts.tls_handshake and hands the decrypted connection to a server of
// its own (see tunnels). A failed handshake is recorded on ex, whose log
// line is the CONNECT's.
func (p *Proxy) serveTunnel(w http.ResponseWriter, r *http.Request, up *Upstream, ex *exchange) {
	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ex.fail(failure.New(failure.KindBadRequest, err, "internal error: the connection cannot be taken over for the tunnel"))
		return
	}
	var conn net.Conn = raw
	if brw.Reader.Buffered() > 0 { // a ClientHello sent along with the CONNECT
		conn = &bufferedConn{Conn: raw, r: brw.Reader}
	}
	if _, err := fmt.Fprintf(raw, "HTTP/%d.%d 200 Connection established\r\n\r\n", r.ProtoMajor, r.ProtoMinor); err != nil {
		raw.Close()
		ex.fail(failure.New(failure.KindClientClosed, err, "the client closed the connection before the tunnel was open"))
		return
	}
	tc := tls.Server(conn, p.tunnelTLS[up])
	ctx, cancel := context.WithTimeout(context.Background(), p.timeouts.TLSHandshake)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		raw.Close()
		ex.fail(tunnelHandshakeError(err, up.host, p.timeouts.TLSHandshake))
		return
	}
	if !p.tunnels.serve(p.newTunnelServer(up), tc) {
		tc.Close() // shutting down
	}
}

func tunnelHandshakeError(err error, host string, limit time.Duration) *failure.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return failure.New(failure.KindClientTimeout, err, "the client sent no TLS handshake inside the tunnel to %s within %s "+
			"(timeouts.tls_handshake)", host, limit)
	}
	return failure.New(failure.KindBadRequest, err, "the TLS handshake inside the tunnel to %s failed (%v); if the service "+
		"does not trust the local CA, install ca.pem as `payrails-mtls-proxy ca init` explains", host, err)
}

// newTunnelServer is the server of one tunnel: newServer's limits, and the
// proxy's handler with up as the only route.
func (p *Proxy) newTunnelServer(up *Upstream) *http.Server {
	return p.newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.handle(w, r, up) }), nil)
}

// tunnels are the open intercepted tunnels, each served by an http.Server
// of its own on a one-connection listener. Shutdown lets the requests in
// progress finish and closes each tunnel between requests, as the proxy
// port's server does with keep-alive connections. The zero value is ready.
type tunnels struct {
	mu      sync.Mutex
	servers map[*http.Server]struct{}
	closing bool
	wg      sync.WaitGroup // one per serve, until its connection is closed
}

// serve serves conn with srv until the connection is closed. It reports
// false, serving nothing, once shutdown has begun.
func (ts *tunnels) serve(srv *http.Server, conn net.Conn) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closing {
		return false
	}
	if ts.servers == nil {
		ts.servers = map[*http.Server]struct{}{}
	}
	ts.servers[srv] = struct{}{}
	ln := newOneConnListener(conn)
	over := make(chan struct{})
	state := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		state(c, st)
		if st == http.StateClosed || st == http.StateHijacked {
			close(over)
			ln.Close() // the tunnel is over: Serve returns
		}
	}
	ts.wg.Go(func() {
		_ = srv.Serve(ln)
		if ln.take() {
			conn.Close() // shutdown came before Serve took the connection
		} else {
			<-over // Serve also returns when shutdown closes the listener
		}
		ts.mu.Lock()
		delete(ts.servers, srv)
		ts.mu.Unlock()
	})
	return true
}

// shutdown ends every tunnel gracefully, as http.Server.Shutdown does,
// until ctx is done; then closes what is left and waits for all of them.
func (ts *tunnels) shutdown(ctx context.Context) {
	ts.mu.Lock()
	ts.closing = true
	servers := make([]*http.Server, 0, len(ts.servers))
	for s := range ts.servers {
		servers = append(servers, s)
	}
	ts.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if s.Shutdown(ctx) != nil {
				s.Close()
			}
		})
	}
	wg.Wait()
	ts.wg.Wait()
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	conn  net.Conn
	addr  net.Addr
	taken atomic.Bool
	once  sync.Once
	done  chan struct{} // closed by Close
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, addr: c.LocalAddr(), done: make(chan struct{})}
}

// take reports whether the connection was still there to take.
func (l *oneConnListener) take() bool { return l.taken.CompareAndSwap(false, true) }

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.take() {
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// bufferedConn reads what the CONNECT's server already buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
