package proxy_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
)

// TestRefusalAfterProcessingIsNotReplayed: a payment without a key goes out
// on a connection the upstream accepted before it revoked the certificate;
// the upstream processes it and the answer breaks off in its headers. The
// certificate is refused by then (the proxy's check says so, and another
// certificate is accepted), but the request was processed: it is never
// replayed on the other certificate, which would make the payment twice.
// Only a request that met the refusal itself (a TLS alert, or a fresh
// connection dying unanswered) never reached the API.
func TestRefusalAfterProcessingIsNotReplayed(t *testing.T) {
	ps := newPKI(t)
	revoked := newClientCert(t, ps.ca, "revoked")
	other := newClientCert(t, ps.ca, "other")
	var refusing atomic.Bool // the revocation: from now on, revoked is refused
	var payments atomic.Int32
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ps.server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ps.ca.Pool(), NextProtos: []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if refusing.Load() && cs.PeerCertificates[0].SerialNumber.Cmp(revoked.Cert.SerialNumber) == 0 {
				return errors.New("revoked")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method != http.MethodPost {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			payments.Add(1)      // processed
			refusing.Store(true) // and revoked meanwhile
			io.WriteString(c, "HTTP/1.1 201 Created\r\nContent-Ty")
			return // the answer breaks off
		}
	})
	uc := upstreamConfig("live", hostA, ln.Addr().String(), ps, newCandidates(revoked, other))
	uc.WarmConnections = 0
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	c := e.forwardClient(t)

	if resp, body := get(t, c, "http://"+hostA+"/v1/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", strings.NewReader(`{"amount":100}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, c, req)
	if got := payments.Load(); got != 1 {
		t.Fatalf("the payment arrived %d times, want once (answered %d %s)", got, resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answered %d %s, want 502: the answer broke off", resp.StatusCode, body)
	}
}
