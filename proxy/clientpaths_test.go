package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// The request shapes of real client libraries that the three classic modes
// do not cover (DESIGN.md, Request paths point 3; issue 24): Node's undici
// tunnels http:// URLs with CONNECT HOST:80, and axios 0.x sends
// https:// URLs in absolute form to an HTTPS_PROXY in plain text.

// connectPlain opens a CONNECT tunnel to host:80 and returns the raw
// connection after the proxy's 200: a plain-HTTP tunnel, as undici's
// EnvHttpProxyAgent opens for an http:// URL.
func connectPlain(t testing.TB, e *env, host string, header string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:80 HTTP/1.1\r\nHost: %s:80\r\n%s\r\n", host, host, header)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s:80: %v", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("CONNECT %s:80: status %d %s, want 200: %s", host, resp.StatusCode, resp.Header.Get(failure.HeaderError), body)
	}
	if br.Buffered() > 0 {
		t.Fatalf("the proxy sent %d bytes after its 200", br.Buffered())
	}
	c.SetDeadline(time.Time{})
	return c, br
}

// openPlainTunnel is openTunnel's twin for a plain-HTTP tunnel.
func openPlainTunnel(t testing.TB, e *env, _ *pkiSet, host string) net.Conn {
	t.Helper()
	c, _ := connectPlain(t, e, host, "")
	return c
}

// TestPlainTunnel: CONNECT to a configured host on port 80 is served
// without connect: mitm and without any CA: its requests, origin-form (as
// undici sends them) or absolute http://, take the forward path on the
// upstream; keep-alive works; no other host can use the tunnel, and
// another host or port cannot open one.
func TestPlainTunnel(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}})
	c, br := connectPlain(t, e, hostileHost, "")
	steps := []struct {
		raw    string
		status int
		line   string // the request line the upstream must get
	}{
		{"GET /v1/x?a=1 HTTP/1.1\r\nHost: " + hostileHost + "\r\n\r\n", 200, "GET /v1/x?a=1 HTTP/1.1"},
		{"POST /v1/payments HTTP/1.1\r\nHost: " + hostileHost + ":80\r\nContent-Length: 3\r\n\r\nabc", 200, "POST /v1/payments HTTP/1.1"},
		{"GET http://" + hostileHost + "/v1/abs HTTP/1.1\r\nHost: " + hostileHost + "\r\n\r\n", 200, "GET /v1/abs HTTP/1.1"},
		{"GET /v1/x HTTP/1.1\r\nHost: example.com\r\n\r\n", 403, ""},
		{"GET http://example.com/ HTTP/1.1\r\nHost: " + hostileHost + "\r\n\r\n", 403, ""},
		{"GET /v1/x HTTP/1.1\r\nHost: " + hostileHost + ":8080\r\n\r\n", 403, ""},
		{"GET /v1/last HTTP/1.1\r\nHost: " + hostileHost + "\r\n\r\n", 200, "GET /v1/last HTTP/1.1"},
	}
	for i, s := range steps {
		before := len(up.completed())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, s.raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("step %d (%q): %v (the tunnel must stay open between requests)", i, s.raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != s.status {
			t.Errorf("step %d (%q): status %d, want %d: %s", i, s.raw, resp.StatusCode, s.status, body)
		}
		got := up.completed()[before:]
		switch {
		case s.line == "" && len(got) != 0:
			t.Errorf("step %d: the upstream received %q", i, got[0].line)
		case s.line != "" && (len(got) != 1 || got[0].line != s.line):
			t.Errorf("step %d: the upstream received %v, want %q", i, got, s.line)
		}
	}
	var modes []string
	for _, l := range e.logs.FilterMessage("request").All() {
		modes = append(modes, fmt.Sprint(l.ContextMap()["mode"]))
	}
	// The CONNECT's line is written once the tunnel is handed over, then one per request in it.
	if len(modes) != 1+len(steps) || modes[0] != string(proxy.ModeConnect) ||
		slices.ContainsFunc(modes[1:], func(m string) bool { return m != string(proxy.ModePlainTunnel) }) {
		t.Errorf("log line modes %v, want %q then %d times %q", modes, proxy.ModeConnect, len(steps), proxy.ModePlainTunnel)
	}

	refused := []struct {
		target string
		status int
		kind   failure.Kind
	}{
		{"example.com:80", 403, failure.KindHostNotAllowed},
		{"127.0.0.1:80", 403, failure.KindHostNotAllowed},
		{hostileHost + ".evil.com:80", 403, failure.KindHostNotAllowed},
		{hostileHost + ":8080", 405, failure.KindConnectNotSupported}, // no mitm: the classic refusal
	}
	for _, r := range refused {
		resp := rawConnect(t, e, r.target, "")
		if resp.StatusCode != r.status || failure.Kind(resp.Header.Get(failure.HeaderError)) != r.kind {
			t.Errorf("CONNECT %s: %d %s, want %d %s", r.target, resp.StatusCode, resp.Header.Get(failure.HeaderError), r.status, r.kind)
		}
	}
}

// rawConnect sends one CONNECT on a new connection and returns the
// answer, its body unread.
func rawConnect(t testing.TB, e *env, target, header string) *http.Response {
	t.Helper()
	raw := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, header)
	return rawConnectLike(t, strings.TrimPrefix(e.url, "http://"), raw, http.MethodConnect)
}

// rawConnectLike sends raw on a new connection to addr and returns the
// answer to a request of method, its body unread.
func rawConnectLike(t testing.TB, addr, raw, method string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return resp
}

// TestPlainTunnelProxyAuth: proxy credentials are given once, on the
// CONNECT; the requests inside need none, and never forward any.
func TestPlainTunnelProxyAuth(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	file := filepath.Join(t.TempDir(), "users")
	os.WriteFile(file, []byte("svc:plain-pw\n"), 0o600)
	auth, err := proxy.NewAuthFile(file)
	if err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, testConfig{ProxyAuth: auth,
		Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}})
	if resp := rawConnect(t, e, hostileHost+":80", ""); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("CONNECT without credentials: %d, want 407", resp.StatusCode)
	}
	c, br := connectPlain(t, e, hostileHost, "Proxy-Authorization: Basic c3ZjOnBsYWluLXB3\r\n") // svc:plain-pw
	io.WriteString(c, "GET /v1/x HTTP/1.1\r\nHost: "+hostileHost+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a request inside an authenticated tunnel: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if got := up.completed(); len(got) != 1 || len(got[0].head.Values("Proxy-Authorization")) != 0 {
		t.Errorf("the upstream received %v", got)
	}
}

// TestHostileRequestsInPlainTunnel: the hostile table inside a plain-HTTP
// tunnel meets the forward path's rules, in origin-form as undici sends
// its requests there.
func TestHostileRequestsInPlainTunnel(t *testing.T) {
	e, ps, up := tunnelEnv(t, proxy.ClientLimits{BodyIdle: 2 * time.Second})
	inTunnel := map[string]struct {
		status int
		kind   failure.Kind
	}{
		// In origin-form the Host header is the target: it must name the tunnel's host.
		"lying Host header: the URL decides": {403, failure.KindHostNotAllowed},
		// A tunnel to port 80 carries http:// requests only.
		"https absolute form": {403, failure.KindHostNotAllowed},
	}
	hostileInside(t, up, inTunnel, func(t *testing.T) net.Conn { return openPlainTunnel(t, e, ps, hostileHost) })
}

// TestHTTPSAbsoluteForm: GET https://HOST/... sent in plain text to the
// proxy port (axios 0.x with HTTPS_PROXY) is served like its http://
// twin, and logged as such; another host, port or user info is refused as
// in forward mode.
func TestHTTPSAbsoluteForm(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}})
	addr := strings.TrimPrefix(e.url, "http://")
	tests := []struct {
		target string
		status int
		line   string
	}{
		{"https://" + hostileHost + "/v1/payments?limit=2", 200, "GET /v1/payments?limit=2 HTTP/1.1"},
		{"https://" + strings.ToUpper(hostileHost) + ":443/v1/x", 200, "GET /v1/x HTTP/1.1"},
		{"https://" + hostileHost + ":8443/v1/x", 403, ""},
		{"https://example.com/v1/x", 403, ""},
		{"https://u:p@" + hostileHost + "/v1/x", 400, ""},
		{"ftp://" + hostileHost + "/v1/x", 403, ""},
	}
	for _, tt := range tests {
		before := len(up.completed())
		resp := rawRoundTrip(t, addr, "GET "+tt.target+" HTTP/1.1\r\nHost: "+hostileHost+"\r\n\r\n")
		if resp.StatusCode != tt.status {
			t.Errorf("GET %s: status %d, want %d", tt.target, resp.StatusCode, tt.status)
		}
		got := up.completed()[before:]
		switch {
		case tt.line == "" && len(got) != 0:
			t.Errorf("GET %s: the upstream received %q", tt.target, got[0].line)
		case tt.line != "" && (len(got) != 1 || got[0].line != tt.line):
			t.Errorf("GET %s: the upstream received %v, want %q", tt.target, got, tt.line)
		}
	}
	lines := e.logs.FilterMessage("request").All()
	if len(lines) == 0 || lines[0].ContextMap()["mode"] != string(proxy.ModeForwardHTTPS) {
		t.Errorf("log line %v, want mode %q", lines, proxy.ModeForwardHTTPS)
	}
}

// TestMessagesNameTheProxy: the 407 and the 405 tell the client which
// address to use, and that is the proxy's own listen address, never the
// API host (which a client would then try as its proxy) nor the CONNECT
// target with its port 443 (issue 24, item 3).
func TestMessagesNameTheProxy(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	file := filepath.Join(t.TempDir(), "users")
	os.WriteFile(file, []byte("svc:plain-pw\n"), 0o600)
	auth, err := proxy.NewAuthFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(a *proxy.AuthFile) testConfig {
		return testConfig{ProxyAuth: a, Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}}
	}
	withAuth, without := startProxy(t, cfg(auth)), startProxy(t, cfg(nil))

	t.Run("407", func(t *testing.T) {
		addr := strings.TrimPrefix(withAuth.url, "http://")
		resp := rawConnectLike(t, addr, "GET http://"+hostileHost+"/v1/x HTTP/1.1\r\nHost: "+hostileHost+"\r\n\r\n", http.MethodGet)
		body, _ := io.ReadAll(resp.Body)
		detail := wantProxyError(t, resp, body, http.StatusProxyAuthRequired, failure.KindProxyAuthRequired)
		if want := "http://USER:PASSWORD@" + addr; !strings.Contains(detail, want) {
			t.Errorf("detail %q lacks %q", detail, want)
		}
		if strings.Contains(detail, "@"+hostileHost) {
			t.Errorf("detail %q offers the API host as the proxy", detail)
		}
	})
	t.Run("405", func(t *testing.T) {
		addr := strings.TrimPrefix(without.url, "http://")
		resp := rawConnect(t, without, hostileHost+":443", "")
		body, _ := io.ReadAll(resp.Body)
		detail := wantProxyError(t, resp, body, http.StatusMethodNotAllowed, failure.KindConnectNotSupported)
		if want := "http://" + addr + "/"; !strings.Contains(detail, want) {
			t.Errorf("detail %q lacks the base URL %q", detail, want)
		}
		if strings.Contains(detail, ":443/") {
			t.Errorf("detail %q offers the CONNECT target as a base URL", detail)
		}
	})
}
