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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// Tunnels. A CONNECT to a configured upstream host opens one of two:
//
//   - port 80, always: a plain-HTTP tunnel. Node's undici (EnvHttpProxyAgent,
//     Node's own env-proxy support) tunnels even http:// URLs through
//     HTTP_PROXY; what it sends inside is plain HTTP for that host, which
//     takes the forward path like any HTTP_PROXY request. No CA, no
//     connect setting.
//   - port 443, with connect: mitm: an intercepted tunnel. A CONNECT
//     cannot carry the merchant's certificate, so the proxy ends the
//     tunnel's TLS itself, with a leaf for the upstream host from a local
//     CA the service trusts.
//
// Either way what is inside is served exactly as the proxy port is: an
// http.Server made by the same newServer (header cap, header, idle and
// body idle timeouts, framing rules, HTTP/1.0 connections closed after
// one answer) whose handler is the same admission and forwarding path,
// with the tunnel's upstream as the only route. Proxy credentials are
// checked once, on the CONNECT. goproxy's own interception loop reads
// requests with a bare http.ReadRequest and none of those limits, so
// CONNECT never reaches goproxy; the requests inside a tunnel do, like
// every other request.

// ModeTunnel marks requests read inside an intercepted CONNECT tunnel
// (connect: mitm).
const ModeTunnel Mode = "mitm"

// ModePlainTunnel marks requests read inside a plain-HTTP tunnel (CONNECT
// HOST:80, as undici sends for an http:// URL).
const ModePlainTunnel Mode = "http-tunnel"

// LeafSource issues the certificates the proxy presents to services inside
// CONNECT tunnels, signed by the local CA they trust (certs.Minter).
type LeafSource interface {
	Certificate(host string) (*tls.Certificate, error)
}

// tunnel is what an allowed CONNECT opened: the upstream its requests go
// to, and whether they arrive in plain text (port 80) or in TLS (mitm).
type tunnel struct {
	up    *upstream.Client
	plain bool
}

func (tn *tunnel) mode() Mode {
	if tn.plain {
		return ModePlainTunnel
	}
	return ModeTunnel
}

// scheme and port are what the tunnel's requests may name.
func (tn *tunnel) scheme() (string, string) {
	if tn.plain {
		return "http", "80"
	}
	return "https", "443"
}

// plainConnect reports whether a CONNECT asks for port 80: a plain-HTTP
// tunnel.
func plainConnect(r *http.Request) bool {
	_, port, err := net.SplitHostPort(r.Host)
	return err == nil && port == "80"
}

// routeTunnelled admits a request read inside tn: it must name tn's host
// and port (a tunnel to one host never carries requests for another), in
// origin-form or in absolute form with tn's scheme, and must not be a
// CONNECT of its own.
func routeTunnelled(r *http.Request, tn *tunnel) *failure.Error {
	up := tn.up
	scheme, tport := tn.scheme()
	if r.Method == http.MethodConnect {
		return failure.New(failure.KindConnectNotSupported, nil, "a CONNECT inside a tunnel is not supported: "+
			"send the requests for %s://%s/ in this tunnel directly", scheme, up.Host())
	}
	host, port := r.Host, ""
	if r.URL.IsAbs() {
		u := r.URL
		if u.Scheme != scheme {
			return failure.New(failure.KindHostNotAllowed, nil, "this tunnel was opened for %s://%s; a request for %s://%s "+
				"cannot use it", scheme, up.Host(), u.Scheme, u.Host)
		}
		if u.User != nil {
			return failure.New(failure.KindBadRequest, nil, "user information in the request URL is not allowed")
		}
		host = u.Host
	} else if len(r.URL.Path) == 0 || r.URL.Path[0] != '/' {
		return failure.New(failure.KindBadRequest, nil, "request target %q is neither an absolute URL nor a path", r.RequestURI)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	if canonicalHost(host) != up.Host() || (port != "" && port != tport) {
		return failure.New(failure.KindHostNotAllowed, nil, "this tunnel was opened for %s:%s; a request for %q cannot use it",
			up.Host(), tport, host)
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
// confirms the tunnel and hands the connection to a server of its own
// (see tunnels); for an intercepted tunnel after completing the TLS
// handshake within timeouts.tls_handshake. A failed handshake is recorded
// on ex, whose log line is the CONNECT's.
func (p *Proxy) serveTunnel(w http.ResponseWriter, r *http.Request, tn *tunnel, ex *exchange) {
	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ex.fail(failure.New(failure.KindBadRequest, err, "internal error: the connection cannot be taken over for the tunnel"))
		return
	}
	var conn net.Conn = raw
	if brw.Reader.Buffered() > 0 { // a ClientHello, or a request, sent along with the CONNECT
		conn = &bufferedConn{Conn: raw, r: brw.Reader}
	}
	if _, err := fmt.Fprintf(raw, "HTTP/%d.%d 200 Connection established\r\n\r\n", r.ProtoMajor, r.ProtoMinor); err != nil {
		raw.Close()
		ex.fail(failure.New(failure.KindClientClosed, err, "the client closed the connection before the tunnel was open"))
		return
	}
	if !tn.plain {
		tc := tls.Server(conn, p.tunnelTLS[tn.up])
		ctx, cancel := context.WithTimeout(context.Background(), p.timeouts.TLSHandshake)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			raw.Close()
			ex.fail(tunnelHandshakeError(err, tn.up.Host(), p.timeouts.TLSHandshake))
			return
		}
		conn = tc
	}
	if !p.tunnels.serve(p.newTunnelServer(tn), conn) {
		conn.Close() // shutting down
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
// proxy's handler with the tunnel's upstream as the only route.
func (p *Proxy) newTunnelServer(tn *tunnel) *http.Server {
	return p.newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.handle(w, r, tn) }), nil)
}

// tunnels are the open tunnels, each served by an http.Server
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
