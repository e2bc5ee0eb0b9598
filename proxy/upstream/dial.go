package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
)

// contextDialer opens the byte stream the TLS handshake with the upstream
// runs on: *net.Dialer, or an egress.Dialer tunnelling through via (as
// ghostunnel's certloader dials over any dialer).
type contextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// dialer opens every connection to one upstream, and tells apart the ways
// it can fail: TCP or the egress proxy (dialError), TLS (handshakeError).
// Immutable after New, apart from what onDial feeds.
type dialer struct {
	name     string         // the upstream's, for metrics
	host     string         // the TLS server name
	addr     string         // what is dialled: address, or the URL's HOST:PORT
	roots    *x509.CertPool // verify the server; nil means the system roots
	tcp      contextDialer
	timeout  time.Duration // timeouts.tls_handshake
	m        *Metrics
	onDialed func(time.Duration) // how long a dial took (warm connections learn it); may be nil
	keys     *keyHealth          // whether the client key's last signature failed (signer.go); nil: not tracked
	// rootSrc, when not nil, gives the roots at each generation's making
	// (ca_file reloaded); roots is used otherwise.
	rootSrc RootSource
}

// currentRoots are the roots a new generation verifies the server with.
func (d *dialer) currentRoots() *x509.CertPool {
	if d.rootSrc != nil {
		return d.rootSrc.Pool()
	}
	return d.roots
}

// dialTLS opens a connection to the upstream and completes the TLS
// handshake with cfg, within timeouts.dial (the tcp dialer's) and
// timeouts.tls_handshake.
func (d *dialer) dialTLS(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	began := time.Now()
	raw, err := d.tcp.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, &dialError{addr: d.addr, err: err}
	}
	if d.onDialed != nil {
		defer func() { d.onDialed(time.Since(began)) }()
	}
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	sig := &signing{upstream: d.name, m: d.m, keys: d.keys}
	hctx = context.WithValue(hctx, signingKey{}, sig) // the certificate callback's info.Context()
	if d.m != nil {
		d.m.upstreamConn(d.name, 1)
		raw = &closeNotifier{Conn: raw, onClose: func() { d.m.upstreamConn(d.name, -1) }}
	}
	conn := tls.Client(raw, cfg)
	start := time.Now()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = &timeoutError{"TLS handshake timed out"}
		}
		if kerr := sig.failed(); kerr != nil {
			// crypto/tls reports a signer's failure as a string: the
			// signing record says it was the key, for this handshake.
			return nil, &keyError{addr: d.addr, err: kerr}
		}
		return nil, &handshakeError{addr: d.addr, err: err}
	}
	d.m.handshake(d.name, conn.ConnectionState().DidResume, time.Since(start))
	return conn, nil
}

// clientTLS is the one place where the client's TLS settings are made:
// TLS 1.2 at least, the server verified against roots (nil: the system
// roots) for host, and cert always presented when the server asks,
// whatever CAs it says it accepts, so that a server refusing it says so
// with an alert instead of a confusing "certificate required". requested,
// when not nil, is called when the server asks for a client certificate.
// A key that cannot sign TLS 1.3 (an RSA key in a token without RSA-PSS,
// tls12Only) holds the connection at TLS 1.2. Each handshake gets the
// certificate with a signer that reports to its dial (withSigner).
func clientTLS(host string, roots *x509.CertPool, cert *tls.Certificate, sessions tls.ClientSessionCache,
	requested func(), protos ...string) *tls.Config {
	maxVersion := uint16(0) // crypto/tls's default, TLS 1.3
	if tls12Only(cert) {
		maxVersion = tls.VersionTLS12
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         maxVersion,
		ServerName:         host,
		RootCAs:            roots,
		NextProtos:         protos,
		ClientSessionCache: sessions,
		GetClientCertificate: func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if requested != nil {
				requested()
			}
			if cert == nil {
				return &tls.Certificate{}, nil // none to present
			}
			return withSigner(info.Context(), cert), nil
		},
	}
}

// dialError is a failure to open the TCP connection to an upstream (or,
// with via, the tunnel through the egress proxy).
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

// timeoutError marks a deadline of our own as a net.Error timeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// isVerifyError reports a server certificate that did not verify.
func isVerifyError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
	)
	return errors.As(err, &verr) || errors.As(err, &uae) || errors.As(err, &he)
}

// newDialer is the dialer of the upstream at u (https://HOST[:PORT]),
// dialling address instead of u's host when it is set, through via when
// it is not nil.
func newDialer(name string, u *url.URL, address string, roots *x509.CertPool, via *egress.Proxy, t Timeouts, m *Metrics) *dialer {
	addr := address
	if addr == "" {
		port := u.Port()
		if port == "" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	nd := &net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}
	var tcp contextDialer = nd
	if via != nil {
		tcp = egress.Dialer{Proxy: via, Forward: nd}
	}
	return &dialer{name: name, host: strings.ToLower(u.Hostname()), addr: addr, roots: roots, tcp: tcp,
		timeout: t.TLSHandshake, m: m, keys: &keyHealth{}}
}
