package proxy_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
)

// leafSource is the local CA of connect: mitm for tests: it issues a
// server certificate for the requested host from the test CA.
type leafSource struct {
	ca    *pki.CA
	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

func (s *leafSource) Certificate(host string) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cache[host]; c != nil {
		return c, nil
	}
	l, err := s.ca.Issue(pki.LeafOptions{CommonName: host, DNSNames: []string{host}, Server: true})
	if err != nil {
		return nil, err
	}
	c := l.TLS()
	if s.cache == nil {
		s.cache = map[string]*tls.Certificate{}
	}
	s.cache[host] = &c
	return &c, nil
}

// tunnelEnv is a proxy with connect: mitm in front of a recording upstream
// for hostileHost, with short client limits so that each can be seen.
func tunnelEnv(t *testing.T, limits proxy.ClientLimits) (*env, *pkiSet, *recordingUpstream) {
	t.Helper()
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	e := startProxy(t, testConfig{
		Client:    limits,
		Timeouts:  proxy.Timeouts{TLSHandshake: time.Second},
		MITM:      &leafSource{ca: ps.ca},
		Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))},
	})
	return e, ps, up
}

// connectRaw opens a CONNECT tunnel to host:443 and returns the raw
// connection after the proxy's 200, before any TLS.
func connectRaw(t testing.TB, e *env, host string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c.SetDeadline(time.Time{})
	return c, br
}

// openTunnel returns a TLS connection inside an intercepted tunnel,
// verified against the test CA for host.
func openTunnel(t testing.TB, e *env, ps *pkiSet, host string) *tls.Conn {
	t.Helper()
	c, br := connectRaw(t, e, host)
	if br.Buffered() > 0 {
		t.Fatalf("the proxy sent %d bytes after its 200", br.Buffered())
	}
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: ps.ca.Pool(), NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS inside the tunnel: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// tunnelKinds are the two tunnels a CONNECT opens: intercepted (connect:
// mitm, CONNECT HOST:443) and plain HTTP (CONNECT HOST:80, as undici
// sends for http:// URLs). The limits hold in both alike.
var tunnelKinds = []struct {
	name string
	open func(t testing.TB, e *env, ps *pkiSet, host string) net.Conn
}{
	{"mitm", func(t testing.TB, e *env, ps *pkiSet, host string) net.Conn { return openTunnel(t, e, ps, host) }},
	{"plain", openPlainTunnel},
}

// closedWithin waits up to limit for the peer to close c (a read returns
// EOF or a reset) and returns how long that took; it fails the test when
// c is still open by then.
func closedWithin(t testing.TB, c net.Conn, r io.Reader, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	n, err := io.Copy(io.Discard, r)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the connection is still open after %s (read %d bytes)", limit, n)
	}
	return took
}

// TestTunnelHandshakeTimeout: a CONNECT followed by no ClientHello is
// closed after timeouts.tls_handshake, instead of staying open for ever.
func TestTunnelHandshakeTimeout(t *testing.T) {
	e, _, _ := tunnelEnv(t, proxy.ClientLimits{})
	c, br := connectRaw(t, e, hostileHost)
	took := closedWithin(t, c, br, 8*time.Second)
	t.Logf("a tunnel without a ClientHello was closed after %s (timeouts.tls_handshake 1s)", took.Round(time.Millisecond))
	if took < 900*time.Millisecond {
		t.Errorf("closed after %s, before the handshake timeout", took)
	}
}

// Inside an intercepted tunnel the proxy port's limits hold: header cap,
// header timeout, idle timeout, body idle timeout and the framing rules
// (DESIGN.md, Request paths point 6). tunnelLimits shortens them to be seen.
var tunnelLimits = proxy.ClientLimits{HeaderTimeout: time.Second, IdleTimeout: time.Second, BodyIdle: time.Second}

// TestTunnelHeaderLimits: the header cap and the header timeout.
func TestTunnelHeaderLimits(t *testing.T) {
	e, ps, _ := tunnelEnv(t, tunnelLimits)
	const h = "Host: " + hostileHost + "\r\n"
	for _, kind := range tunnelKinds {
		t.Run(kind.name, func(t *testing.T) {

			t.Run("header block too large", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				io.WriteString(tc, "GET /v1/x HTTP/1.1\r\n"+h+"X-Big: "+strings.Repeat("a", 70000)+"\r\n\r\n")
				resp := readResponse(t, tc)
				if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("status %d, want 431", resp.StatusCode)
				}
			})
			t.Run("endless header line", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				chunk := []byte(strings.Repeat("a", 64<<10))
				io.WriteString(tc, "GET /v1/x HTTP/1.1\r\n"+h+"X-Big: ")
				tc.SetWriteDeadline(time.Now().Add(20 * time.Second))
				const limit = 64 << 20
				sent := 0
				var werr error
				for sent < limit && werr == nil {
					var n int
					n, werr = tc.Write(chunk)
					sent += n
				}
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				growth := int64(after.HeapInuse) - int64(before.HeapInuse)
				t.Logf("the proxy stopped reading after %d KiB of a header line; heap in use grew by %d KiB", sent>>10, growth>>10)
				if werr == nil {
					t.Fatalf("the proxy read all %d MiB of one header line", limit>>20)
				}
				if sent > 16<<20 {
					t.Errorf("the proxy read %d MiB of one header line before refusing it", sent>>20)
				}
			})
			t.Run("headers never finished", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				io.WriteString(tc, "GET /v1/x HTTP/1.1\r\n"+h)
				took := closedWithin(t, tc, tc, 8*time.Second)
				t.Logf("unfinished headers inside a tunnel: closed after %s (header timeout 1s)", took.Round(time.Millisecond))
			})
		})
	}
}

// TestTunnelIdleLimits: the idle timeout between requests and the body
// idle timeout.
func TestTunnelIdleLimits(t *testing.T) {
	e, ps, up := tunnelEnv(t, tunnelLimits)
	const h = "Host: " + hostileHost + "\r\n"
	for _, kind := range tunnelKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Run("idle between requests", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				br := bufio.NewReader(tc)
				io.WriteString(tc, "GET /v1/x HTTP/1.1\r\n"+h+"\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("first request: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				took := closedWithin(t, tc, br, 8*time.Second)
				t.Logf("an idle keep-alive tunnel: closed after %s (idle timeout 1s)", took.Round(time.Millisecond))
			})
			t.Run("body stalls", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				before := len(up.completed())
				io.WriteString(tc, "POST /v1/payments HTTP/1.1\r\n"+h+"Content-Length: 100\r\n\r\n0123456789")
				tc.SetReadDeadline(time.Now().Add(8 * time.Second))
				resp := readResponse(t, tc)
				if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(failure.HeaderError) != string(failure.KindClientTimeout) {
					t.Errorf("status %d %s, want 408 %s", resp.StatusCode, resp.Header.Get(failure.HeaderError), failure.KindClientTimeout)
				}
				if n := len(up.completed()) - before; n != 0 {
					t.Errorf("the upstream received %d complete requests", n)
				}
			})
		})
	}
}

// TestTunnelFraming: the framing rules, and no CONNECT inside a tunnel.
func TestTunnelFraming(t *testing.T) {
	e, ps, up := tunnelEnv(t, tunnelLimits)
	const h = "Host: " + hostileHost + "\r\n"
	for _, kind := range tunnelKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Run("HTTP/1.0 body without Content-Length", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				before := len(up.completed())
				io.WriteString(tc, "POST /v1/payments HTTP/1.0\r\n"+h+"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"GET /v1/smuggled HTTP/1.1\r\n"+h+"\r\n")
				br := bufio.NewReader(tc)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("response %v %v, want 400", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				closedWithin(t, tc, br, 5*time.Second)
				if got := up.completed()[before:]; len(got) != 0 {
					t.Errorf("the upstream received %q", got[0].line)
				}
			})
			t.Run("HTTP/1.0 chunked DELETE", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				before := len(up.completed())
				io.WriteString(tc, "DELETE /v1/x HTTP/1.0\r\n"+h+"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"GET /v1/smuggled HTTP/1.1\r\n"+h+"\r\n")
				br := bufio.NewReader(tc)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				closedWithin(t, tc, br, 5*time.Second)
				for _, r := range up.completed()[before:] {
					if strings.Contains(r.line, "smuggled") {
						t.Errorf("a request body became a request: the upstream received %q", r.line)
					}
				}
			})
			t.Run("CONNECT inside the tunnel", func(t *testing.T) {
				tc := kind.open(t, e, ps, hostileHost)
				before := len(up.reqs)
				io.WriteString(tc, "CONNECT "+hostileHost+":443 HTTP/1.1\r\n"+h+"\r\n")
				resp := readResponse(t, tc)
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get(failure.HeaderError) != string(failure.KindConnectNotSupported) {
					t.Errorf("status %d %s, want 405 %s", resp.StatusCode, resp.Header.Get(failure.HeaderError), failure.KindConnectNotSupported)
				}
				up.mu.Lock()
				defer up.mu.Unlock()
				if got := up.reqs[before:]; len(got) != 0 {
					t.Errorf("the upstream received %q", got[0].line)
				}
			})
		})
	}
}

// TestHTTP10ConnectionsClose: on the proxy port every HTTP/1.0 exchange and
// every framing refusal ends the connection, so that no body byte is ever
// read as a next request (RFC 9112 §6.1, §9.3; Go drops Transfer-Encoding
// on HTTP/1.0 requests, golang/go#12785).
func TestHTTP10ConnectionsClose(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}})
	addr := strings.TrimPrefix(e.url, "http://")
	const h = "Host: " + hostileHost + "\r\n"
	smuggled := "GET http://" + hostileHost + "/v1/smuggled HTTP/1.1\r\n" + h + "\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"chunked DELETE", "DELETE http://" + hostileHost + "/v1/x HTTP/1.0\r\n" + h + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled, 200},
		{"chunked POST refused", "POST http://" + hostileHost + "/v1/x HTTP/1.0\r\n" + h + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled, 400},
		{"keep-alive GET", "GET http://" + hostileHost + "/v1/x HTTP/1.0\r\n" + h + "Connection: keep-alive\r\n\r\n" + smuggled, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := len(up.completed())
			io.WriteString(c, tt.raw)
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			closedWithin(t, c, br, 5*time.Second)
			for _, r := range up.completed()[before:] {
				if strings.Contains(r.line, "smuggled") {
					t.Errorf("a request body became a request: the upstream received %q", r.line)
				}
			}
		})
	}
}

// readResponse reads one response and its body from c.
func readResponse(t testing.TB, c net.Conn) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
