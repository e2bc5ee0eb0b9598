package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// ModeTunnel marks requests read inside a CONNECT tunnel (connect: mitm).
const ModeTunnel Mode = "mitm"

// LeafSource issues the certificates the proxy presents to services inside
// CONNECT tunnels, signed by the local CA they trust (certs.Minter).
type LeafSource interface {
	Certificate(host string) (*tls.Certificate, error)
}

// routeConnect allows a CONNECT only to a configured upstream host on port
// 443, by name: never a blind tunnel, never an IP literal or another port.
func (p *Proxy) routeConnect(r *http.Request) (*Upstream, *Error) {
	if p.mitm == nil {
		return nil, newError(KindConnectNotSupported, nil, "CONNECT (HTTPS_PROXY) cannot carry the client "+
			"certificate through a tunnel; call http://%s/... through HTTP_PROXY (http_proxy for curl) and the proxy "+
			"adds TLS and the certificate, use the proxy as the base URL (http://%s/...), or enable connect: mitm "+
			"with a local CA the service trusts (payrails-mtls-proxy ca init)", p.exampleHost(), r.Host)
	}
	host, port, err := net.SplitHostPort(r.Host)
	switch {
	case err != nil:
		return nil, newError(KindBadRequest, err, "CONNECT target %q is not HOST:PORT", r.Host)
	case port != "443":
		return nil, newError(KindHostNotAllowed, nil, "CONNECT to port %s is not allowed: only %s:443 is intercepted "+
			"(and only configured hosts)", port, host)
	}
	if up, ok := p.byHost[canonicalHost(host)]; ok {
		return up, nil
	}
	return nil, newError(KindHostNotAllowed, nil, "CONNECT to %q is not allowed: the proxy opens no blind "+
		"tunnels and intercepts only the configured upstreams: %s", host, p.allowedHosts)
}

// tunnel is one intercepted CONNECT: its upstream, its client connection
// and how many of its requests are in progress, so that a shutdown lets
// them finish and then ends the tunnel between requests.
type tunnel struct {
	up *Upstream

	mu       sync.Mutex
	conn     net.Conn // set when goproxy hijacks the connection
	active   int
	draining bool
	closed   chan struct{}
}

// handleConnect is goproxy's CONNECT hook; ServeHTTP has already allowed
// the target. It always intercepts, presenting a leaf for the upstream
// host from the local CA.
func (p *Proxy) handleConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	ex := exchangeFrom(ctx.Req.Context())
	t := ex.tunnel
	ctx.UserData = t
	cfg := func(string, *goproxy.ProxyCtx) (*tls.Config, error) {
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			// The leaf is for the host the CONNECT was allowed for, whatever
			// SNI says: a client asking for another name fails verification.
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.mitm.Certificate(t.up.host) },
		}, nil
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: cfg}, host
}

// tunnelled is the state of one request read inside a tunnel.
type tunnelled struct {
	t  *tunnel
	ex *exchange
}

// prepareTunnelled handles a request read inside a tunnel: same routing
// rules, transport, headers, errors, metrics and log line as forward mode.
// The request must name the tunnel's host: a tunnel to one host never
// carries requests for another.
func (p *Proxy) prepareTunnelled(in *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	t, _ := ctx.UserData.(*tunnel)
	ex := p.newExchange()
	ex.mode = ModeTunnel
	if t == nil {
		perr := newError(KindBadRequest, nil, "internal error: a tunnelled request without its tunnel")
		ex.fail(perr)
		return in, perr.response(in, ex.id)
	}
	t.begin()
	ex.up = t.up
	ctx.UserData = &tunnelled{t: t, ex: ex}
	u := in.URL
	if u.Scheme != "https" || u.User != nil || (u.Port() != "" && u.Port() != "443") || canonicalHost(u.Hostname()) != t.up.host {
		perr := newError(KindHostNotAllowed, nil, "this tunnel was opened for %s; a request for %q cannot use it",
			t.up.host, u.Host)
		ex.fail(perr)
		return in, perr.response(in, ex.id)
	}
	p.sendTo(ctx, ex, t.up, nil)
	return outbound(in, t.up, in.Context()), nil
}

// finishTunnelled makes the response body log the request when goproxy
// has written it to the client and closes it.
func (p *Proxy) finishTunnelled(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	st, ok := ctx.UserData.(*tunnelled)
	if !ok {
		return resp
	}
	body := resp.Body
	if body == nil {
		body = http.NoBody
	}
	resp.Body = &loggedBody{ReadCloser: body, done: func(n int64, err error) {
		if err != nil {
			st.ex.upstreamErr = err
		}
		p.logExchange(st.ex, ctx.Req, resp.StatusCode, n, err != nil)
		st.t.end()
	}}
	return resp
}

// loggedBody counts what goproxy copies to the client and reports once,
// when closed.
type loggedBody struct {
	io.ReadCloser
	n    int64
	err  error
	once sync.Once
	done func(n int64, err error)
}

func (b *loggedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *loggedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.done(b.n, b.err) })
	return err
}

// trackTunnel is the hijack hook of an allowed CONNECT: it keeps the
// client connection so that Shutdown can end the tunnel gracefully.
func (p *Proxy) trackTunnel(t *tunnel, c net.Conn) net.Conn {
	tc := &closeNotifier{Conn: c}
	t.mu.Lock()
	t.conn = tc
	t.closed = make(chan struct{})
	t.mu.Unlock()
	p.tunnelsMu.Lock()
	p.tunnels[t] = struct{}{}
	p.tunnelsMu.Unlock()
	tc.onClose = func() {
		p.tunnelsMu.Lock()
		delete(p.tunnels, t)
		p.tunnelsMu.Unlock()
		close(t.closed)
	}
	return tc
}

func (t *tunnel) begin() {
	t.mu.Lock()
	t.active++
	t.mu.Unlock()
}

// end marks a request done; a draining tunnel with none left stops reading.
func (t *tunnel) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.draining && t.active == 0 && t.conn != nil {
		_ = t.conn.SetReadDeadline(time.Now())
	}
}

// drain ends the tunnel once its requests in progress are done: a read
// deadline in the past makes goproxy's request loop stop between requests.
func (t *tunnel) drain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	if t.active == 0 && t.conn != nil {
		_ = t.conn.SetReadDeadline(time.Now())
	}
}

// drainTunnels ends every tunnel gracefully and waits for them, up to
// timeout; what is left is closed.
func (p *Proxy) drainTunnels(timeout time.Duration) {
	p.tunnelsMu.Lock()
	ts := make([]*tunnel, 0, len(p.tunnels))
	for t := range p.tunnels {
		ts = append(ts, t)
	}
	p.tunnelsMu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, t := range ts {
		t.drain()
	}
	for _, t := range ts {
		select {
		case <-t.closed:
		case <-deadline.C:
			for _, t := range ts {
				t.mu.Lock()
				if t.conn != nil {
					_ = t.conn.Close()
				}
				t.mu.Unlock()
			}
			return
		}
	}
}
