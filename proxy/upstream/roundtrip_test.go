package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// TestRoundTripLostRefusal: a tool's request (RoundTrip, no loop running)
// whose fresh connection dies unanswered (in TLS 1.3 a refusal of the
// certificate can reach the client as a broken pipe, its alert unread) is
// explained by the certificate check, as the proxy's requests are: here
// the upstream resets the request's connection and refuses the
// certificate on the check's own.
func TestRoundTripLostRefusal(t *testing.T) {
	p := tlsscript.NewPKI(t, "api.test")
	var conns atomic.Int32
	cfg := &tls.Config{Certificates: []tls.Certificate{p.Server.TLS()}, ClientAuth: tls.RequireAnyClientCert,
		MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			if conns.Load() > 1 {
				return errors.New("the check's connection: refused")
			}
			return nil
		}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) {
		conns.Add(1)
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		c.(*net.TCPConn).SetLinger(0) // the request's connection: reset, nothing answered
	})
	cert := p.Client.TLS()
	cl, err := New(Config{Name: "t", URL: &url.URL{Scheme: "https", Host: "api.test"}, Address: ln.Addr().String(),
		RootCAs: p.CA.Pool(), Certificates: FixedCertificate{&cert}, Retry: config.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.CloseIdleConnections)
	_, err = cl.RoundTrip(newReq(t, "POST", "", nil))
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Kind != failure.KindCertificateRefused {
		t.Fatalf("RoundTrip: %v; want %s, from the certificate check", err, failure.KindCertificateRefused)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: the request's and the check's", n)
	}
}
