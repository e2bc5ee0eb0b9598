// Package tlsscript runs scripted TLS upstreams on loopback for tests: a
// raw HTTP/1.1-over-mutual-TLS server whose connections are each handled
// by a script, to play what a misbehaving upstream does (answer early,
// close mid-request, send bytes unasked). Like a real Payrails edge it
// requires a client certificate issued by its CA. Each write is one TLS
// record (dynamic record sizing off), so that what a script writes together
// arrives together. The one scripted upstream of the upstream client's,
// the fast path's and the inbound proxy's tests. Test support only: nothing
// in the binary imports it.
package tlsscript

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
)

// PKI is a CA, a server certificate for a host (and localhost,
// 127.0.0.1) and a client certificate, all issued by the CA.
type PKI struct {
	CA     *pki.CA
	Server *pki.Leaf
	Client *pki.Leaf
}

// NewPKI makes a PKI whose server certificate names hosts.
func NewPKI(t testing.TB, hosts ...string) *PKI {
	t.Helper()
	ca, err := pki.NewCA("tlsscript test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: hosts[0], DNSNames: append(hosts, "localhost"),
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(pki.LeafOptions{CommonName: "merchant", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{CA: ca, Server: srv, Client: cli}
}

// Script handles one connection: n is its number (from 1), br reads it.
// The connection is closed when the script returns.
type Script func(n int32, c *tls.Conn, br *bufio.Reader)

// Server is a scripted upstream.
type Server struct {
	Addr   string       // HOST:PORT
	Conns  atomic.Int32 // connections accepted so far
	Closed atomic.Int32 // connections the client closed before the script's server gave up on them
}

// Start runs a scripted upstream on a free loopback port until the test
// ends, presenting p's server certificate and requiring a client
// certificate of p's CA; HTTP/1.1 only.
func Start(t testing.TB, p *PKI, script Script) *Server {
	t.Helper()
	return StartAt(t, p, "127.0.0.1:0", script)
}

// StartAt is Start listening on addr (a restarted upstream's).
func StartAt(t testing.TB, p *PKI, addr string, script Script) *Server {
	t.Helper()
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{p.Server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.CA.Pool(), NextProtos: []string{"http/1.1"},
		DynamicRecordSizingDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String()}
	loopback.Serve(t, ln, func(c net.Conn) {
		n := s.Conns.Add(1)
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		br := bufio.NewReader(tc)
		script(n, tc, br)
		// Whatever the script left, see whether the client closes.
		if _, err := io.Copy(io.Discard, br); err == nil || !isTimeout(err) {
			s.Closed.Add(1)
		}
	})
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// AnswerOK reads requests and answers each with 200 "ok" until the
// connection ends.
func AnswerOK(_ int32, c *tls.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	}
}

// Discard reads whatever comes until the connection ends, answering
// nothing.
func Discard(_ int32, _ *tls.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) }

// ClientConfig is a TLS client configuration that trusts p's CA for host
// and presents p's client certificate, offering protos in ALPN.
func (p *PKI) ClientConfig(host string, protos ...string) *tls.Config {
	cert := p.Client.TLS()
	return &tls.Config{ServerName: host, RootCAs: p.CA.Pool(), Certificates: []tls.Certificate{cert}, NextProtos: protos}
}
