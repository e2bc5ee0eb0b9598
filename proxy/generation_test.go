package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"
)

// White-box tests of generation.RoundTrip's choice between the HTTP/1.1
// fast path (proxy/upstream/h1, tested there) and the Transport. The
// black-box ones through the proxy are in h1_test.go and
// upstreamconn_test.go.

// rawTLS is a TLS server on loopback whose connections are handled by
// serve, one goroutine each. Like a real upstream it requires a client
// certificate issued by roots; generationFor presents client.
type rawTLS struct {
	addr   string
	roots  *pki.CA
	client *pki.Leaf
}

// testPKI is a CA with a server certificate for api.test and a client one.
func testPKI(t *testing.T) (ca *pki.CA, srv, cli *pki.Leaf) {
	t.Helper()
	ca, err := pki.NewCA("h1 test CA")
	if err != nil {
		t.Fatal(err)
	}
	if srv, err = ca.Issue(pki.LeafOptions{CommonName: "api.test", DNSNames: []string{"api.test"}, Server: true}); err != nil {
		t.Fatal(err)
	}
	if cli, err = ca.Issue(pki.LeafOptions{CommonName: "merchant", Client: true}); err != nil {
		t.Fatal(err)
	}
	return ca, srv, cli
}

func startRawTLS(t *testing.T, serve func(c *tls.Conn, br *bufio.Reader)) *rawTLS {
	t.Helper()
	ca, srv, cli := testPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		NextProtos: []string{"http/1.1"}, DynamicRecordSizingDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := c.(*tls.Conn)
		if tc.Handshake() == nil {
			serve(tc, bufio.NewReader(c))
		}
	})
	return &rawTLS{addr: ln.Addr().String(), roots: ca, client: cli}
}

// generationFor builds a generation of an upstream at s.
func generationFor(t *testing.T, s *rawTLS, timeouts Timeouts) *generation {
	t.Helper()
	cert := s.client.TLS()
	u, err := newUpstream(UpstreamConfig{Name: "t", URL: &url.URL{Scheme: "https", Host: "api.test"}, Address: s.addr,
		RootCAs: s.roots.Pool(), Certificates: FixedCertificate{&cert}}, withDefaults(timeouts), config.Retry{Attempts: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	g, err := u.current()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.closeIdle)
	return g
}

// echoOK answers every request with 200 "ok" after reading its body.
func echoOK(c *tls.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func newReq(t *testing.T, method, body string, mod func(*http.Request)) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://api.test/v1/x", r)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	return req
}

// TestGenerationPaths pins, for each kind of request, which client of the
// generation serves it: the Transport's bodies are *releasingBody, the
// fast path's its own.
func TestGenerationPaths(t *testing.T) {
	fast, transport := "fast path", "Transport"
	tests := []struct {
		name string
		h2   bool
		req  func(t *testing.T) *http.Request
		want string
	}{
		{"GET", false, func(t *testing.T) *http.Request { return newReq(t, "GET", "", nil) }, fast},
		{"small POST", false, func(t *testing.T) *http.Request { return newReq(t, "POST", `{"amount":1}`, nil) }, fast},
		{"large POST", false, func(t *testing.T) *http.Request { return newReq(t, "POST", strings.Repeat("a", 100<<10), nil) }, transport},
		{"chunked POST", false, func(t *testing.T) *http.Request {
			return newReq(t, "POST", "abc", func(r *http.Request) { r.ContentLength = -1 })
		}, transport},
		{"Expect", false, func(t *testing.T) *http.Request {
			return newReq(t, "POST", "abc", func(r *http.Request) { r.Header.Set("Expect", "100-continue") })
		}, transport},
		{"GET to an HTTP/2 upstream", true, func(t *testing.T) *http.Request { return newReq(t, "GET", "", nil) }, transport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s *rawTLS
			if tt.h2 {
				s = startH2(t)
			} else {
				s = startRawTLS(t, echoOK)
			}
			g := generationFor(t, s, Timeouts{})
			for i := range 2 { // the first request dials; the second shows where the generation stays
				resp, err := g.RoundTrip(tt.req(t))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if tt.h2 && resp.ProtoMajor != 2 {
					t.Errorf("request %d: the upstream answered %s, want HTTP/2.0", i, resp.Proto)
				}
				got := transport
				if _, ok := resp.Body.(*releasingBody); !ok {
					got = fast
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if got != tt.want {
					t.Errorf("request %d went through the %s, want the %s", i, got, tt.want)
				}
			}
			if n := g.inflight.Load(); n != 0 {
				t.Errorf("%d requests still counted in flight", n)
			}
			if g.tr.MaxResponseHeaderBytes != h1.MaxResponseHeaderBytes {
				t.Errorf("Transport's MaxResponseHeaderBytes %d, fast path's cap %d", g.tr.MaxResponseHeaderBytes, h1.MaxResponseHeaderBytes)
			}
		})
	}
}

// startH2 is net/http's server offering HTTP/2, requiring a client
// certificate as startRawTLS does.
func startH2(t *testing.T) *rawTLS {
	t.Helper()
	ca, srv, client := testPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &rawTLS{addr: ln.Addr().String(), roots: ca, client: client}
}
