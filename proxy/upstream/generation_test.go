package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/h1"
)

// White-box tests of generation.RoundTrip's choice between the HTTP/1.1
// fast path (proxy/upstream/h1, tested there) and the Transport.

// testUpstream is a scripted upstream (internal/tlsscript) and the PKI
// a client of it needs.
type testUpstream struct {
	addr string
	pki  *tlsscript.PKI
}

func startScripted(t *testing.T, script tlsscript.Script) *testUpstream {
	t.Helper()
	p := tlsscript.NewPKI(t, "api.test")
	return &testUpstream{addr: tlsscript.Start(t, p, script).Addr, pki: p}
}

// clientFor is a client of s (not running: no loop), presenting s's
// client certificate.
func clientFor(t *testing.T, s *testUpstream, timeouts Timeouts) *Client {
	t.Helper()
	cert := s.pki.Client.TLS()
	c, err := New(Config{Name: "t", URL: &url.URL{Scheme: "https", Host: "api.test"}, Address: s.addr,
		RootCAs: s.pki.CA.Pool(), Certificates: FixedCertificate{&cert}, Timeouts: timeouts, Retry: config.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// generationFor is the generation of a client of s.
func generationFor(t *testing.T, s *testUpstream, timeouts Timeouts) *generation {
	t.Helper()
	g, err := clientFor(t, s, timeouts).current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.closeIdle)
	return g
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
			var s *testUpstream
			if tt.h2 {
				s = startH2(t)
			} else {
				s = startScripted(t, tlsscript.AnswerOK)
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
// certificate as the scripted upstreams do.
func startH2(t *testing.T) *testUpstream {
	t.Helper()
	p := tlsscript.NewPKI(t, "api.test")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.Server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.CA.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &testUpstream{addr: ln.Addr().String(), pki: p}
}
