package proxy

import (
	"context"
	"crypto/tls"
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
	g := &generation{cert: cert, serial: serialOf(cert)}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: u.host,
		RootCAs:    u.roots, // nil: the system roots
		NextProtos: []string{"h2", "http/1.1"},
		// Always present our certificate, whatever CAs the server says it
		// accepts: a server that refuses it then says so with an alert we can
		// report, instead of a confusing "certificate required".
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		// Per generation: a resumed TLS 1.3 session keeps the identity of the
		// handshake that made it, so tickets must not outlive the certificate.
		ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
	}
	g.probeTLS = cfg.Clone()
	g.probeTLS.NextProtos = []string{"http/1.1"}
	g.probeTLS.ClientSessionCache = nil // a resumed session would not present the certificate
	g.tr = &http.Transport{
		Proxy: nil, // never through the proxy's own HTTP_PROXY environment
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return u.dialTLS(ctx, cfg)
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

func serialOf(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.Leaf.SerialNumber.Bytes())
}
