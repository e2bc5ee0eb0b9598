package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Pool sizes. Go's default of 2 idle connections per host would make a
// sidecar under load dial (and pay a full mTLS handshake) for most requests.
const (
	maxIdleConns        = 1024
	maxIdleConnsPerHost = 512
	sessionCacheSize    = 256
)

// newGeneration builds the transport that presents exactly cert. Its
// tls.Config is built here once and never modified afterwards.
func (u *Upstream) newGeneration(cert *tls.Certificate) *generation {
	// Per generation: a resumed TLS 1.3 session keeps the identity of the
	// handshake that made it, so tickets must not outlive the certificate.
	cfg := clientTLS(u.host, u.roots, cert, tls.NewLRUClientSessionCache(sessionCacheSize), nil, "h2", "http/1.1")
	g := &generation{cert: cert, serial: serialOf(cert), tls: cfg, h1: newH1Pool(u.timeouts.IdleConn, maxIdleConnsPerHost)}
	g.tr = &http.Transport{
		Proxy: nil, // never through the proxy's own HTTP_PROXY environment
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			// A connection the fast path dialled and found speaking HTTP/2,
			// or an idle HTTP/1.1 one of the fast path's pool, saves a
			// handshake.
			if c := g.takeSpare(); c != nil {
				return c, nil
			}
			if c := g.h1.get(); c != nil {
				return c.conn, nil
			}
			conn, err := u.dialTLS(ctx, cfg)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			if conn.ConnectionState().NegotiatedProtocol == "h2" {
				g.h2.Store(true)
			}
			return conn, nil
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       u.timeouts.IdleConn,
		ResponseHeaderTimeout: u.timeouts.ResponseHeader,
		ExpectContinueTimeout: time.Second,
		// Accept-Encoding and compressed bodies pass through untouched.
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			// Detect a dead HTTP/2 connection instead of queueing requests on it.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	return g
}

// clientTLS is the one place where the proxy's client TLS settings are
// made: TLS 1.2 at least, the server verified against roots (nil: the
// system roots) for host, and cert always presented when the server asks,
// whatever CAs it says it accepts, so that a server refusing it says so
// with an alert instead of a confusing "certificate required". requested,
// when not nil, is called when the server asks for a client certificate.
func clientTLS(host string, roots *x509.CertPool, cert *tls.Certificate, sessions tls.ClientSessionCache,
	requested func(), protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		RootCAs:            roots,
		NextProtos:         protos,
		ClientSessionCache: sessions,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if requested != nil {
				requested()
			}
			if cert == nil {
				return &tls.Certificate{}, nil // none to present
			}
			return cert, nil
		},
	}
}

func serialOf(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.Leaf.SerialNumber.Bytes())
}
