package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"go.uber.org/zap"
)

// Admission at accept (DESIGN.md § Request paths, 6): a client outside
// access.allow_cidrs is refused when it connects, before any byte of a
// request is read, and never holds a connection (issue 22: refused
// clients kept their connections open for 120 s, and 3,000 of them took
// the proxy from 20 to 79 MiB). handle checks the source again for the
// requests inside a tunnel, whose connection was admitted here.

// admission decides who may use the proxy and where each request goes:
// the client's address (at accept, and again for each request), its proxy
// credentials (auth.go), the method and the framing (hygiene.go), and the
// route to an upstream (route.go). Immutable after New, apart from its log
// throttle; safe for concurrent use.
type admission struct {
	upstreams    []*upstream.Client // in configuration order
	byHost       map[string]*upstream.Client
	def          *upstream.Client // base-URL requests go here; nil when none
	allowedHosts string           // for messages: "a, b"
	allow        []netip.Prefix
	auth         *AuthFile // nil: no proxy credentials
	mitm         bool      // connect: mitm
	log          *zap.Logger
	m            *Metrics
	refused      refusals // connections refused at accept
}

// admit decides whether and where a request goes: the client's address,
// its proxy credentials (given once, on the CONNECT, for a tunnel), the
// route, then the framing.
func (a *admission) admit(r *http.Request, tn *tunnel) (*upstream.Client, Mode, *failure.Error) {
	if err := a.checkSource(r); err != nil {
		return nil, "", err
	}
	if err := checkMethod(r); err != nil {
		return nil, "", err
	}
	if tn != nil {
		if err := routeTunnelled(r, tn); err != nil {
			return nil, tn.mode(), err
		}
		return tn.up, tn.mode(), checkFraming(r)
	}
	if err := a.checkProxyAuth(r); err != nil {
		return nil, "", err
	}
	up, mode, err := a.route(r)
	if err == nil {
		err = checkFraming(r)
	}
	return up, mode, err
}

// checkSource refuses a request from outside allow_cidrs: the port's
// listener refused such clients already, so this holds for the requests
// inside a tunnel, whose connection it admitted.
func (a *admission) checkSource(r *http.Request) *failure.Error {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return failure.New(failure.KindSourceNotAllowed, err, "cannot tell the client address %q", r.RemoteAddr)
	}
	if a.allowedIP(ap.Addr()) {
		return nil
	}
	return failure.New(failure.KindSourceNotAllowed, nil, "client %s is not in access.allow_cidrs; the proxy carries the "+
		"merchant's Payrails identity and serves only listed addresses", ap.Addr().Unmap())
}

// sourceFilter is the proxy listener: it closes the connections of
// clients outside allow_cidrs as it accepts them.
type sourceFilter struct {
	net.Listener
	a *admission
}

func (l sourceFilter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.a.allowedAddr(c.RemoteAddr()) {
			return c, nil
		}
		l.a.refuseConn(c)
	}
}

// allowedAddr reports whether a client address is in allow_cidrs.
func (a *admission) allowedAddr(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		ap, err := netip.ParseAddrPort(addr.String())
		return err == nil && a.allowedIP(ap.Addr())
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ok && a.allowedIP(ip)
}

func (a *admission) allowedIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pfx := range a.allow {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// refuseLogEvery bounds the log lines of refused connections: a client
// retrying in a loop must not flood the log.
const refuseLogEvery = 10 * time.Second

// refuseConn closes a connection from outside allow_cidrs, counts it,
// and logs it (at most one line per refuseLogEvery, with the number of
// refusals since the last line).
func (a *admission) refuseConn(c net.Conn) {
	addr := c.RemoteAddr().String()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset: no TIME_WAIT kept for a client never served
	}
	c.Close()
	a.m.deniedSource()
	n := a.refused.count.Add(1)
	now := time.Now().UnixNano()
	last := a.refused.logged.Load()
	if now-last >= int64(refuseLogEvery) && a.refused.logged.CompareAndSwap(last, now) {
		a.refused.count.Add(-n)
		a.log.Warn("refused a connection from a client outside access.allow_cidrs; the proxy carries the merchant's "+
			"Payrails identity and serves only listed addresses: add the client's network to access.allow_cidrs if it "+
			"should be served", zap.String(fieldClient, addr), zap.Int64("refused_since_last_line", n))
	}
}

// refusals is the state of refuseConn's log throttle. The zero value is
// ready.
type refusals struct {
	count  atomic.Int64 // refused since the last line
	logged atomic.Int64 // UnixNano of the last line
}
