package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
)

// recordingUpstream is a raw HTTP/1.1-over-mTLS server that records the
// exact request heads the proxy sends and counts only requests whose body
// arrived complete and correctly framed.
type recordingUpstream struct {
	addr string
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	head     textproto.MIMEHeader
	line     string
	body     string
	complete bool
}

func startRecordingUpstream(t testing.TB, ps *pkiSet) *recordingUpstream {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ps.server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ps.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{addr: ln.Addr().String()}
	loopback.Serve(t, ln, u.serve)
	return u
}

func (u *recordingUpstream) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewReader(bufio.NewReader(c))
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		head, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		rec := recorded{line: line, head: head}
		rec.body, rec.complete = readFramedBody(tp, head)
		u.mu.Lock()
		u.reqs = append(u.reqs, rec)
		u.mu.Unlock()
		if !rec.complete {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	}
}

// readFramedBody reads a body by the one framing the head may declare; a
// head declaring two framings is never complete.
func readFramedBody(tp *textproto.Reader, h textproto.MIMEHeader) (string, bool) {
	te, cl := h.Values("Transfer-Encoding"), h.Values("Content-Length")
	switch {
	case len(te) > 0 && len(cl) > 0, len(te) > 1, len(cl) > 1:
		return "", false
	case len(te) == 1 && te[0] == "chunked":
		var b strings.Builder
		for {
			sizeLine, err := tp.ReadLine()
			if err != nil {
				return "", false
			}
			n, err := strconv.ParseInt(sizeLine, 16, 64)
			if err != nil {
				return "", false
			}
			if n == 0 {
				_, err := tp.ReadLine() // no trailers from the proxy
				return b.String(), err == nil
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(tp.R, buf); err != nil {
				return "", false
			}
			b.Write(buf[:n])
		}
	case len(te) == 1:
		return "", false
	case len(cl) == 1:
		n, err := strconv.Atoi(cl[0])
		if err != nil {
			return "", false
		}
		buf := make([]byte, n)
		_, err = io.ReadFull(tp.R, buf)
		return string(buf), err == nil
	default:
		return "", true
	}
}

func (u *recordingUpstream) completed() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []recorded
	for _, r := range u.reqs {
		if r.complete {
			out = append(out, r)
		}
	}
	return out
}

const hostileHost = "api.acme.test"

// TestHostileRequests: request shapes used for smuggling, relaying and
// confusion either get a 4xx/5xx and never reach the upstream as a complete
// request, or are normalised so the upstream receives one unambiguous
// framing. The upstream here is a raw recorder, so the bytes the proxy sent
// are what is checked.
func TestHostileRequests(t *testing.T) {
	ps := newPKI(t)
	up := startRecordingUpstream(t, ps)
	e := startProxy(t, testConfig{Client: proxy.ClientLimits{BodyIdle: 2 * time.Second},
		Upstreams: []upstream.Config{upstreamConfig("live", hostileHost, up.addr, ps, sourceOf(ps.client))}})
	addr := strings.TrimPrefix(e.url, "http://")
	tests := hostileShapes()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.completed())
			tt.verify(t, rawRoundTrip(t, addr, tt.raw), up.completed()[before:])
		})
	}
	if len(tests) < 25 {
		t.Errorf("only %d hostile shapes", len(tests))
	}
}

// TestHostileRequestsInTunnel: the same shapes sent inside an intercepted
// tunnel (connect: mitm) meet the same rules, since the tunnel is served by
// the same server settings and handler path. The absolute-form requests
// for the upstream become origin-form, as an HTTPS_PROXY client sends them
// in a tunnel; a few shapes mean something else there (noted).
func TestHostileRequestsInTunnel(t *testing.T) {
	e, ps, up := tunnelEnv(t, proxy.ClientLimits{BodyIdle: 2 * time.Second})
	inTunnel := map[string]struct {
		status int
		kind   failure.Kind
	}{
		// The Host header must name the tunnel's host: inside a tunnel it is the target.
		"lying Host header: the URL decides": {403, failure.KindHostNotAllowed},
		// Only https:// URLs may use a tunnel; the http:// one with user info never reaches the user-info check.
		"user info in the URL": {403, failure.KindHostNotAllowed},
	}
	hostileInside(t, up, inTunnel, func(t *testing.T) net.Conn { return openTunnel(t, e, ps, hostileHost) })
}

// hostileInside sends each hostile shape in origin-form on a connection
// of its own that open makes (a tunnel), with the outcomes inTunnel
// changes, and checks what the upstream received.
func hostileInside(t *testing.T, up *recordingUpstream, inTunnel map[string]struct {
	status int
	kind   failure.Kind
}, open func(t *testing.T) net.Conn) {
	for _, tt := range hostileShapes() {
		t.Run(tt.name, func(t *testing.T) {
			tt.raw = strings.Replace(tt.raw, "http://"+hostileHost+"/", "/", 1)
			if o, ok := inTunnel[tt.name]; ok {
				tt.status, tt.kind, tt.check = o.status, o.kind, nil
			}
			c := open(t)
			before := len(up.completed())
			io.WriteString(c, tt.raw)
			tt.verify(t, readResponse(t, c), up.completed()[before:])
		})
	}
}

// hostileShape is one request shape and what must come of it.
type hostileShape struct {
	name   string
	raw    string
	status int
	kind   failure.Kind // the proxy's own error kind, if it made the answer
	body   string       // for forwarded requests: the body the upstream must get
	check  func(t *testing.T, r recorded)
}

// hostileShapes are request shapes used for smuggling, relaying and
// confusion.
func hostileShapes() []hostileShape {
	const h = "Host: " + hostileHost + "\r\n"
	const post = "POST http://" + hostileHost + "/v1/payments HTTP/1.1\r\n" + h
	return []hostileShape{
		{"baseline GET", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "\r\n", 200, "", "", nil},
		{"Content-Length with Transfer-Encoding: chunked wins, CL removed", post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "", "abc", nil},
		{"two different Content-Lengths", post + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400, "", "", nil},
		{"identical Content-Lengths deduplicated", post + "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 200, "", "abcd", nil},
		{"Content-Length list", post + "Content-Length: 4, 4\r\n\r\nabcd", 400, "", "", nil},
		{"negative Content-Length", post + "Content-Length: -1\r\n\r\n", 400, "", "", nil},
		{"signed Content-Length", post + "Content-Length: +4\r\n\r\nabcd", 400, "", "", nil},
		{"gzip transfer coding", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "", "", nil},
		{"chunked twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "", "", nil},
		{"unknown transfer coding", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, "", "", nil},
		{"HTTP/1.0 with Transfer-Encoding", "POST http://" + hostileHost + "/v1/x HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400, failure.KindBadRequest, "", nil},
		{"HTTP/1.0 POST with Content-Length is fine", "POST http://" + hostileHost + "/v1/x HTTP/1.0\r\n" + h + "Content-Length: 3\r\n\r\nabc", 200, "", "abc", nil},
		{"obs-fold joined into one line", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "X-Folded: a\r\n b\r\n\r\n", 200, "", "", func(t *testing.T, r recorded) {
			if got := r.head.Values("X-Folded"); len(got) != 1 || strings.ContainsAny(got[0], "\r\n") {
				t.Errorf("upstream got X-Folded %q", got)
			}
		}},
		{"space before colon", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "X-A : a\r\n\r\n", 400, "", "", nil},
		{"invalid header name", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "X(A): a\r\n\r\n", 400, "", "", nil},
		{"NUL in a header value", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n", 400, "", "", nil},
		{"malformed chunk size", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400, failure.KindBadRequest, "", nil},
		{"header block too large", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431, "", "", nil},
		{"missing Host", "GET /v1/x HTTP/1.1\r\n\r\n", 400, "", "", nil},
		{"two Host headers", "GET /v1/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "", "", nil},
		{"percent-encoded host", "GET http://api%2eacme.test/v1/x HTTP/1.1\r\n" + h + "\r\n", 400, "", "", nil},
		{"user info in the URL", "GET http://user:pw@" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "\r\n", 400, failure.KindBadRequest, "", nil},
		{"host not configured", "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"look-alike suffix", "GET http://" + hostileHost + ".evil.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"look-alike prefix", "GET http://evil" + hostileHost + "/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"trailing dot", "GET http://" + hostileHost + "./ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"other port", "GET http://" + hostileHost + ":8443/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"IP literal", "GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		{"IPv6 literal", "GET http://[::1]/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, failure.KindHostNotAllowed, "", nil},
		// axios 0.x with HTTPS_PROXY: served like its http:// twin (DESIGN.md, Request paths point 3).
		{"https absolute form", "GET https://" + hostileHost + "/ HTTP/1.1\r\n" + h + "\r\n", 200, "", "", nil},
		{"CONNECT", "CONNECT " + hostileHost + ":443 HTTP/1.1\r\n" + h + "\r\n", 405, failure.KindConnectNotSupported, "", nil},
		// TRACE echoes the request, credentials included (RFC 9110 §9.3.8): the managed token would reach the client.
		{"TRACE", "TRACE http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "\r\n", 405, failure.KindMethodNotAllowed, "", nil},
		{"TRACE, lower case", "trace http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h + "\r\n", 405, failure.KindMethodNotAllowed, "", nil},
		{"HTTP/0.9", "GET /\r\n\r\n", 400, "", "", nil},
		{"HTTP/2 preface on the plain port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "", "", nil},
		{"lying Host header: the URL decides", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 200, "", "", func(t *testing.T, r recorded) {
			if got := r.head.Get("Host"); got != hostileHost {
				t.Errorf("upstream got Host %q", got)
			}
		}},
		// nginx drops them by default: behind a hop that maps _ to - they would become other headers.
		{"header names with underscores dropped", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h +
			"Content_Length: 5\r\nTransfer_Encoding: chunked\r\nProxy_Authorization: Basic eDp5\r\nX_Api_Key: k\r\nX-Kept: 1\r\n\r\n", 200, "", "",
			func(t *testing.T, r recorded) {
				for k := range r.head {
					if strings.Contains(k, "_") {
						t.Errorf("upstream got %s: %v", k, r.head[k])
					}
				}
				if r.head.Get("X-Kept") != "1" {
					t.Errorf("upstream lost X-Kept: %v", r.head)
				}
			}},
		{"hop-by-hop and proxy headers dropped", "GET http://" + hostileHost + "/v1/x HTTP/1.1\r\n" + h +
			"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nKeep-Alive: 5\r\nTE: gzip\r\nUpgrade: h2c\r\n\r\n", 200, "", "",
			func(t *testing.T, r recorded) {
				for _, k := range []string{"X-Secret", "Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "Te", "Upgrade"} {
					if v := r.head.Values(k); len(v) > 0 {
						t.Errorf("upstream got %s: %v", k, v)
					}
				}
			}},
	}
}

// verify checks the answer to tt and what the upstream received (done).
func (tt hostileShape) verify(t *testing.T, resp *http.Response, done []recorded) {
	t.Helper()
	if resp.StatusCode != tt.status {
		t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
	}
	if got := failure.Kind(resp.Header.Get(failure.HeaderError)); tt.kind != "" && got != tt.kind {
		t.Errorf("%s %q, want %q", failure.HeaderError, got, tt.kind)
	}
	if tt.status != 200 {
		if len(done) != 0 {
			t.Errorf("the upstream received a complete request: %q %v", done[0].line, done[0].head)
		}
		return
	}
	if len(done) != 1 {
		t.Fatalf("the upstream received %d complete requests, want 1", len(done))
	}
	r := done[0]
	if cl, te := r.head.Values("Content-Length"), r.head.Values("Transfer-Encoding"); len(cl)+len(te) > 1 {
		t.Errorf("upstream framing ambiguous: Content-Length %v, Transfer-Encoding %v", cl, te)
	}
	if r.body != tt.body {
		t.Errorf("upstream body %q, want %q", r.body, tt.body)
	}
	if tt.check != nil {
		tt.check(t, r)
	}
}

// rawRoundTrip sends raw bytes on a new connection and reads one response.
func rawRoundTrip(t testing.TB, addr, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
