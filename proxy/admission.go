package proxy

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Admission at accept (DESIGN.md § Request paths, 6): a client outside
// access.allow_cidrs is refused when it connects, before any byte of a
// request is read, and never holds a connection (issue 22: refused
// clients kept their connections open for 120 s, and 3,000 of them took
// the proxy from 20 to 79 MiB). handle checks the source again for the
// requests inside a tunnel, whose connection was admitted here.

// sourceFilter is the proxy listener: it closes the connections of
// clients outside allow_cidrs as it accepts them.
type sourceFilter struct {
	net.Listener
	p *Proxy
}

func (l sourceFilter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.p.allowedAddr(c.RemoteAddr()) {
			return c, nil
		}
		l.p.refuseConn(c)
	}
}

// allowedAddr reports whether a client address is in allow_cidrs.
func (p *Proxy) allowedAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		ap, err := netip.ParseAddrPort(a.String())
		return err == nil && p.allowedIP(ap.Addr())
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ok && p.allowedIP(ip)
}

func (p *Proxy) allowedIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pfx := range p.allow {
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
func (p *Proxy) refuseConn(c net.Conn) {
	addr := c.RemoteAddr().String()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset: no TIME_WAIT kept for a client never served
	}
	c.Close()
	p.m.deniedSource()
	n := p.refused.count.Add(1)
	now := time.Now().UnixNano()
	last := p.refused.logged.Load()
	if now-last >= int64(refuseLogEvery) && p.refused.logged.CompareAndSwap(last, now) {
		p.refused.count.Add(-n)
		p.log.Warn("refused a connection from a client outside access.allow_cidrs; the proxy carries the merchant's "+
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
