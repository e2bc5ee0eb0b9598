package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// White-box tests of the HTTP/1.1 fast path (h1client.go, h1conn.go,
// h1pool.go) and of generation.RoundTrip's choice between it and the
// Transport. The black-box ones through the proxy are in h1_test.go and
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

// TestFastPathTakes: which requests the fast path takes.
func TestFastPathTakes(t *testing.T) {
	h := &h1Client{}
	unknownLength := func(r *http.Request) { r.ContentLength = -1 }
	tests := []struct {
		name string
		req  *http.Request
		want bool
	}{
		{"GET", newReq(t, "GET", "", nil), true},
		{"HEAD", newReq(t, "HEAD", "", nil), true},
		{"POST without a body", newReq(t, "POST", "", nil), true},
		{"small POST", newReq(t, "POST", `{"amount":1}`, nil), true},
		{"64 KiB body", newReq(t, "POST", strings.Repeat("a", maxFastBody), nil), true},
		{"64 KiB + 1 body", newReq(t, "POST", strings.Repeat("a", maxFastBody+1), nil), false},
		{"unknown length", newReq(t, "POST", "abc", unknownLength), false},
		{"Expect: 100-continue", newReq(t, "POST", "abc", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }), false},
		{"Expect: 100-continue without a body", newReq(t, "POST", "", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }), true},
		{"request trailers", newReq(t, "POST", "abc", func(r *http.Request) { r.Trailer = http.Header{"X-Sum": nil} }), false},
		{"upgrade", newReq(t, "GET", "", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }), false},
	}
	for _, tt := range tests {
		if got := h.takes(tt.req); got != tt.want {
			t.Errorf("%s: takes = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestGenerationPaths pins, for each kind of request, which client of the
// generation serves it: the fast path's bodies are *h1Body, the Transport's
// *releasingBody.
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
				if _, ok := resp.Body.(*h1Body); ok {
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

// dialConns opens n fast-path connections to s.
func dialConns(t *testing.T, g *generation, n int) []*h1Conn {
	t.Helper()
	var out []*h1Conn
	for range n {
		c, err := g.dialFastPath(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// TestPoolOrderAndSweep: the pool hands out its most recently used
// connection first, closes those idle past the idle timeout, closes what
// comes back when full or retired.
func TestPoolOrderAndSweep(t *testing.T) {
	s := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	g := generationFor(t, s, Timeouts{})
	cs := dialConns(t, g, 3)
	p := newH1Pool(time.Hour, 2)
	p.put(cs[0])
	p.put(cs[1])
	p.put(cs[2]) // full: closed
	if got := p.get(); got != cs[1] {
		t.Errorf("get returned the older connection, want the most recently used")
	}
	if got := p.get(); got != cs[0] {
		t.Errorf("second get did not return the remaining connection")
	}
	if p.get() != nil {
		t.Error("empty pool returned a connection")
	}
	if _, err := cs[2].conn.Write([]byte("x")); err == nil {
		t.Error("the connection put into a full pool was not closed")
	}
	cs[0].close()
	cs[1].close()

	sweeping := newH1Pool(50*time.Millisecond, 4)
	fresh := dialConns(t, g, 1)[0]
	sweeping.put(fresh)
	poll.Until(t, "the sweep to close a connection idle past the idle timeout", 5*time.Second, func() bool {
		sweeping.mu.Lock()
		defer sweeping.mu.Unlock()
		return len(sweeping.idle) == 0
	})
	if _, err := fresh.conn.Write([]byte("x")); err == nil {
		t.Error("the swept connection is still open")
	}

	retired := newH1Pool(time.Hour, 4)
	retired.closeIdle(true)
	late := dialConns(t, g, 1)[0]
	retired.put(late)
	if _, err := late.conn.Write([]byte("x")); err == nil {
		t.Error("a connection coming back to a retired pool was not closed")
	}
}

// TestDeadConnections: a pooled connection the server closed, or on which
// it sent bytes unasked (in the socket or already decrypted by crypto/tls),
// is never handed out.
func TestDeadConnections(t *testing.T) {
	script := make(chan string, 3)
	s := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) {
		switch <-script {
		case "close":
		case "unsolicited":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			io.Copy(io.Discard, br)
		case "quiet":
			io.Copy(io.Discard, br)
		}
	})
	g := generationFor(t, s, Timeouts{})
	for _, tt := range []struct {
		script string
		alive  bool
	}{{"quiet", true}, {"close", false}, {"unsolicited", false}} {
		script <- tt.script
		c := dialConns(t, g, 1)[0]
		if tt.alive {
			if !c.alive() {
				t.Errorf("%s: alive = false, want true", tt.script)
			}
		} else { // dead once the bytes or the FIN have arrived
			poll.Until(t, tt.script+": alive to report the connection dead", 5*time.Second, func() bool { return !c.alive() })
		}
		c.close()
	}

	// Decrypted but unread: what is left of a record once a response ended.
	s2 := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("a", 10000)+"EXTRA")
			io.Copy(io.Discard, br)
		}
	})
	g2 := generationFor(t, s2, Timeouts{})
	resp, err := g2.RoundTrip(newReq(t, "GET", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if c := g2.h1.pool.get(); c != nil {
		t.Error("a connection with decrypted bytes left over was handed out")
	}
}

// TestResponseHeaderCap: the fast path stops reading response headers at
// the same cap as the Transport's MaxResponseHeaderBytes.
func TestResponseHeaderCap(t *testing.T) {
	s := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Filler: ")
			chunk := strings.Repeat("a", 64<<10)
			for range 40 {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}
	})
	g := generationFor(t, s, Timeouts{})
	if g.tr.MaxResponseHeaderBytes != maxResponseHeaderBytes {
		t.Errorf("Transport's MaxResponseHeaderBytes %d, fast path's cap %d", g.tr.MaxResponseHeaderBytes, maxResponseHeaderBytes)
	}
	_, err := g.RoundTrip(newReq(t, "GET", "", nil))
	if !errors.Is(err, errResponseHeaderTooLarge) {
		t.Errorf("error %v, want %v", err, errResponseHeaderTooLarge)
	}
}

// TestEarlyAnswer: a server that answers and closes before reading the
// body has its answer returned, and the connection is not pooled.
func TestEarlyAnswer(t *testing.T) {
	s := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}
	})
	g := generationFor(t, s, Timeouts{})
	resp, err := g.RoundTrip(newReq(t, "POST", strings.Repeat("a", 60<<10), nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want the server's 413", resp.StatusCode)
	}
	if c := g.h1.pool.get(); c != nil {
		t.Error("the connection that carried the early answer was pooled")
	}
}

// TestCancellation: the request context ending breaks a waiting exchange
// off at once, and its connection is closed, not reused. The cancel comes
// once the server has read the request, so that there is a connection to
// leave out of the pool.
func TestCancellation(t *testing.T) {
	read := make(chan struct{})  // closed once the server has read the request
	ended := make(chan error, 1) // the server's read after the request: nil at EOF
	var once sync.Once
	s := startRawTLS(t, func(c *tls.Conn, br *bufio.Reader) { // never answers
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		once.Do(func() {
			close(read)
			_, err := io.Copy(io.Discard, br)
			ended <- err
		})
	})
	g := generationFor(t, s, Timeouts{ResponseHeader: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newReq(t, "GET", "", nil).WithContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := g.RoundTrip(req)
		done <- err
	}()
	select {
	case <-read:
	case err := <-done:
		t.Fatalf("the exchange ended before the server read the request: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not get the request")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the exchange did not stop when its context was cancelled")
	}
	// Counted, not got: get would drop (and close) a connection left with
	// the cancel's past deadline, which then reads as dead.
	g.h1.pool.mu.Lock()
	pooled := len(g.h1.pool.idle)
	g.h1.pool.mu.Unlock()
	if pooled != 0 {
		t.Errorf("%d connections pooled after the cancelled exchange, want 0", pooled)
	}
	// The server seeing the connection end shows the exchange closed it
	// (the server's own deadline, 10 s, would end the read with a timeout).
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the server's connection ended with %v, want EOF: the cancelled exchange did not close it", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the cancelled exchange's connection is still open")
	}
}
