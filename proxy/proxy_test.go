package proxy_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

func TestForwardMode(t *testing.T) {
	e, ps, _ := simpleEnv(t)
	resp, body := get(t, e.forwardClient(t), "http://"+hostA+"/v1/payments?limit=2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	echo := decodeEcho(t, body)
	if echo.Path != "/v1/payments" || echo.Query != "limit=2" || echo.Host != hostA {
		t.Errorf("upstream saw path %q query %q host %q", echo.Path, echo.Query, echo.Host)
	}
	if got, want := echo.Client.Serial, fmt.Sprintf("%X", ps.client.Cert.SerialNumber.Bytes()); got != want {
		t.Errorf("upstream saw client certificate %s, want %s", got, want)
	}
}

func TestGatewayMode(t *testing.T) {
	e, ps, _ := simpleEnv(t)
	resp, body := get(t, plainClient(t), e.url+"/v1/payments?limit=2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	echo := decodeEcho(t, body)
	if echo.Path != "/v1/payments" || echo.Query != "limit=2" || echo.Host != hostA {
		t.Errorf("upstream saw path %q query %q host %q, want the upstream host", echo.Path, echo.Query, echo.Host)
	}
	if echo.Client.Subject != ps.client.Cert.Subject.String() {
		t.Errorf("client certificate %q, want %q", echo.Client.Subject, ps.client.Cert.Subject)
	}
}

// TestTwoUpstreams: each host gets its own certificate (a Postman-style
// host-to-certificate map), in forward mode; base-URL requests go to the default.
func TestTwoUpstreams(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	other := newClientCert(t, ps.ca, "other merchant")
	a := upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))
	b := upstreamConfig("staging", hostB, up.Addr, ps, sourceOf(other))
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{a, b}, Default: "staging"})
	fc, pc := e.forwardClient(t), plainClient(t)
	for _, tt := range []struct {
		c                     *http.Client
		url, wantHost, wantCN string
	}{
		{fc, "http://" + hostA + "/x", hostA, "merchant"},
		{fc, "http://" + hostB + "/x", hostB, "other merchant"},
		{fc, "http://API.ACME.TEST/x", hostA, "merchant"}, // host names are case-insensitive
		{pc, e.url + "/x", hostB, "other merchant"},       // base URL: the default upstream
	} {
		resp, body := get(t, tt.c, tt.url)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tt.url, resp.StatusCode, body)
		}
		echo := decodeEcho(t, body)
		if echo.Host != tt.wantHost || !strings.Contains(echo.Client.Subject, "CN="+tt.wantCN) {
			t.Errorf("%s: upstream saw host %q certificate %q; want %q and CN %q", tt.url, echo.Host, echo.Client.Subject, tt.wantHost, tt.wantCN)
		}
	}
}

func TestHostNotAllowed(t *testing.T) {
	e, _, up := simpleEnv(t)
	c := e.forwardClient(t)
	for _, u := range []string{
		"http://example.com/",
		"http://api.acme.test.evil.com/",
		"http://api.acme.test.:80/", // trailing dot: not the same string, not served
		"http://127.0.0.1/",
		"http://api.acme.test:8443/",
	} {
		before := up.Requests()
		resp, body := get(t, c, u)
		detail := wantProxyError(t, resp, body, http.StatusForbidden, failure.KindHostNotAllowed)
		if !strings.Contains(detail, hostA) {
			t.Errorf("%s: detail %q does not name the allowed host", u, detail)
		}
		if up.Requests() != before {
			t.Errorf("%s reached the upstream", u)
		}
	}
}

func TestConnectRefused(t *testing.T) {
	e, _, _ := simpleEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", hostA, hostA)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	detail := wantProxyError(t, resp, body, http.StatusMethodNotAllowed, failure.KindConnectNotSupported)
	for _, w := range []string{"HTTP_PROXY", "http://" + hostA, "base URL"} {
		if !strings.Contains(detail, w) {
			t.Errorf("detail %q lacks %q", detail, w)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	ps := newPKI(t)
	good := startStandin(t, ps, nil)
	tls12 := startStandin(t, ps, func(o *standin.Options) { o.MaxVersion = tls.VersionTLS12 })
	h1 := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = true })
	strangers := newPKI(t) // another CA: its client certificates are refused
	closedAddr := closedPort(t)
	tests := []struct {
		name   string
		addr   string
		src    upstream.CertificateSource
		roots  *pkiSet
		path   string
		status int
		kind   failure.Kind
		detail string
	}{
		{"upstream down", closedAddr, sourceOf(ps.client), ps, "/", 502, failure.KindUpstreamUnreachable, "cannot connect"},
		{"upstream hangs", good.Addr, sourceOf(ps.client), ps, "/delay/30s", 504, failure.KindUpstreamTimeout, "timeouts.response_header"},
		{"certificate refused, TLS 1.3", good.Addr, sourceOf(strangers.client), ps, "/", 502, failure.KindCertificateRefused, "refused the client certificate"},
		{"certificate refused, TLS 1.3, HTTP/1.1", h1.Addr, sourceOf(strangers.client), ps, "/", 502, failure.KindCertificateRefused, "refused the client certificate"},
		{"certificate refused, TLS 1.2", tls12.Addr, sourceOf(strangers.client), ps, "/", 502, failure.KindCertificateRefused, "refused the client certificate"},
		{"server not trusted", good.Addr, sourceOf(ps.client), strangers, "/", 502, failure.KindUpstreamTLS, "not trusted"},
		{"no valid certificate", good.Addr, sourceOf(nil), ps, "/", 503, failure.KindNoCertificate, "no valid client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uc := upstreamConfig("live", hostA, tt.addr, tt.roots, tt.src)
			e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc},
				Timeouts: proxy.Timeouts{ResponseHeader: 300 * time.Millisecond}})
			resp, body := get(t, e.forwardClient(t), "http://"+hostA+tt.path)
			detail := wantProxyError(t, resp, body, tt.status, tt.kind)
			if !strings.Contains(detail, tt.detail) {
				t.Errorf("detail %q lacks %q", detail, tt.detail)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTrailers: trailers pass through in both directions, after a
// streamed body: a client's chunked upload (through the Transport) and an
// upstream's chunked answer (through the HTTP/1.1 fast path and HTTP/2).
func TestTrailers(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			ps := newPKI(t)
			up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = !h2 })
			e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
			c := e.forwardClient(t)

			trailer := http.Header{"X-Checksum": nil}
			body := &trailerSettingReader{r: strings.NewReader(`{"part":1}`), set: func() { trailer.Set("X-Checksum", "sha256=123") }}
			req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/upload", body)
			req.Trailer = trailer
			resp, b := do(t, c, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("upload: status %d: %s", resp.StatusCode, b)
			}
			if got := decodeEcho(t, b).Trailer["X-Checksum"]; len(got) != 1 || got[0] != "sha256=123" {
				t.Errorf("the upstream received trailer X-Checksum %q, want sha256=123", got)
			}

			resp, b = get(t, c, "http://"+hostA+"/trailers")
			if string(b) != "body before the trailers\n" {
				t.Errorf("body %q", b)
			}
			for k, want := range map[string]string{"X-Checksum": "sha256=abc", "X-Late": "late"} {
				if got := resp.Trailer.Get(k); got != want {
					t.Errorf("the client received trailer %s %q, want %q", k, got, want)
				}
			}
		})
	}
}

// trailerSettingReader calls set when its reader is exhausted: a trailer
// known only after the body, as a checksum is.
type trailerSettingReader struct {
	r   io.Reader
	set func()
}

func (r *trailerSettingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF && r.set != nil {
		r.set()
		r.set = nil
	}
	return n, err
}

// TestHeaderHygiene: hop-by-hop and proxy headers stop at the proxy;
// end-to-end headers, Accept-Encoding and compressed bytes pass untouched.
func TestHeaderHygiene(t *testing.T) {
	e, _, _ := simpleEnv(t)
	req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/x", strings.NewReader(`{"a":1}`))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic dXNlcjpwdw==")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("Accept-Encoding", "gzip, br")
	req.Header.Set("X-Idempotency-Key", "idem-1")
	req.Header.Set("Authorization", "Bearer abc")
	resp, body := do(t, e.forwardClient(t), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	echo := decodeEcho(t, body)
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade", "Connection"} {
		if v, ok := echo.Header[h]; ok {
			t.Errorf("upstream received %s: %v", h, v)
		}
	}
	for h, want := range map[string]string{"Accept-Encoding": "gzip, br", "X-Idempotency-Key": "idem-1",
		"Authorization": "Bearer abc", "Content-Type": ""} {
		if got := strings.Join(echo.Header[h], ","); want != "" && got != want {
			t.Errorf("upstream received %s %q, want %q", h, got, want)
		}
	}
	if echo.BodyBytes != 7 {
		t.Errorf("upstream received %d body bytes, want 7", echo.BodyBytes)
	}
	if _, ok := echo.Header["User-Agent"]; !ok {
		t.Error("the client's User-Agent was dropped")
	}

	// A gzip response reaches the client as the very bytes the upstream sent.
	greq, _ := http.NewRequest(http.MethodGet, "http://"+hostA+"/gzip", nil)
	greq.Header.Set("Accept-Encoding", "gzip")
	gresp, gbody := do(t, e.forwardClient(t), greq)
	if gresp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", gresp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gbody))
	if err != nil {
		t.Fatalf("body is not the gzip stream: %v", err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != `{"compressed":true}` {
		t.Errorf("decompressed %q", plain)
	}
}

// TestConnectionReuse: many sequential requests share a handful of
// upstream connections (the stand-in counts the connections it accepts).
func TestConnectionReuse(t *testing.T) {
	e, _, up := simpleEnv(t)
	c := e.forwardClient(t)
	const n = 200
	for i := range n {
		resp, body := get(t, c, fmt.Sprintf("http://%s/v1/%d", hostA, i))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	if got := up.Connections(); got > 2 {
		t.Errorf("%d requests used %d upstream connections, want at most 2", n, got)
	}
}

// TestTruncatedUpstreamBody: when the upstream breaks off mid-body, the
// client must see a broken response, never a short body presented as whole.
func TestTruncatedUpstreamBody(t *testing.T) {
	e, _, _ := simpleEnv(t)
	for _, path := range []string{
		"/cut/100000",                // chunked
		"/cut/300000?length=1000000", // a large declared length: the coalescing copy
	} {
		resp, err := e.forwardClient(t).Get("http://" + hostA + path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: read %d bytes of a cut response without error", path, n)
		}
	}
}
