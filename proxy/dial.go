package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// dialTLS opens a connection to the upstream and completes the TLS
// handshake with cfg, within timeouts.dial and timeouts.tls_handshake, so
// that failures can be told apart: TCP (dialError) or TLS
// (handshakeError). Every connection to an upstream is made here.
func (u *Upstream) dialTLS(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	began := time.Now()
	raw, err := u.dialer.DialContext(ctx, "tcp", u.dialAddr)
	if err != nil {
		return nil, &dialError{addr: u.dialAddr, err: err}
	}
	defer func() { u.noteDial(time.Since(began)) }()
	hctx, cancel := context.WithTimeout(ctx, u.timeouts.TLSHandshake)
	defer cancel()
	if u.m != nil {
		u.m.upstreamConn(u.name, 1)
		raw = &closeNotifier{Conn: raw, onClose: func() { u.m.upstreamConn(u.name, -1) }}
	}
	conn := tls.Client(raw, cfg)
	start := time.Now()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = &timeoutError{"TLS handshake timed out"}
		}
		return nil, &handshakeError{addr: u.dialAddr, err: err}
	}
	u.m.handshake(u.name, conn.ConnectionState().DidResume, time.Since(start))
	return conn, nil
}

// contextDialer opens the byte stream the TLS handshake with the upstream
// runs on: *net.Dialer, or an egress.Dialer tunnelling through via.
type contextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// dialError is a failure to open the TCP connection to an upstream.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "connecting to " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// handshakeError is a failure of the TLS handshake with an upstream.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string { return "TLS handshake with " + e.addr + ": " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// closeNotifier calls onClose once, when the connection is first closed.
type closeNotifier struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *closeNotifier) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

// SyscallConn passes the socket on, for the fast path's liveness check;
// a connection without one (an egress tunnel holding bytes) gives none.
func (c *closeNotifier) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// timeoutError marks a deadline of our own as a net.Error timeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)
