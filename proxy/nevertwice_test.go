package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
)

// Issue 22, item 1: nothing under the proxy sends an un-keyed request
// twice. net/http's Transport replays a request on its own when a reused
// connection dies after the request was written and the request looks
// replayable to it (a GetBody, and GET/HEAD/OPTIONS/TRACE or the mere
// presence of an Idempotency-Key or X-Idempotency-Key header, even empty).
// The proxy alone decides what is sent again: these tests send each shape
// on a pooled connection to an upstream that reads the request whole and
// closes the connection without answering (a restart mid-request), and
// count what reached it.

// closingUpstream is net/http's server (HTTP/1.1, or HTTP/2 when h2)
// requiring the client certificate. It records every request it read
// whole; a request whose path starts with /cut is answered by closing the
// connection, every other one with 200.
type closingUpstream struct {
	addr string
	mu   sync.Mutex
	got  []string // "METHOD path" of every request read whole
}

type connKey struct{}

func startClosingUpstream(t *testing.T, ps *pkiSet, h2 bool) *closingUpstream {
	t.Helper()
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ps.server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ps.ca.Pool(), NextProtos: protos})
	if err != nil {
		t.Fatal(err)
	}
	u := &closingUpstream{addr: ln.Addr().String()}
	hs := &http.Server{
		Protocols:   new(http.Protocols),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			u.mu.Lock()
			u.got = append(u.got, r.Method+" "+r.URL.Path)
			u.mu.Unlock()
			if strings.HasPrefix(r.URL.Path, "/cut") {
				r.Context().Value(connKey{}).(net.Conn).Close()
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		}),
	}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(h2)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return u
}

// count is how many times a request for path was read whole.
func (u *closingUpstream) count(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, g := range u.got {
		if strings.HasSuffix(g, " "+path) {
			n++
		}
	}
	return n
}

// shape is one request of the tests: its method, headers and body.
type shape struct {
	method  string
	header  http.Header
	body    int  // bytes; 0: none
	chunked bool // of unknown length
}

func (s shape) String() string {
	var b strings.Builder
	b.WriteString(s.method)
	for k, v := range s.header {
		fmt.Fprintf(&b, " %s:%q", k, v[0])
	}
	if s.body > 0 {
		fmt.Fprintf(&b, " body=%d", s.body)
		if s.chunked {
			b.WriteString(" chunked")
		}
	}
	return b.String()
}

// send sends s to path through the proxy in forward mode, on a connection
// of its own (so the test's own client never replays anything).
func (s shape) send(t *testing.T, e *env, path string) (int, http.Header) {
	t.Helper()
	var body io.Reader
	if s.body > 0 {
		body = bytes.NewReader(bytes.Repeat([]byte{'x'}, s.body))
		if s.chunked {
			body = io.MultiReader(body) // hides the length
		}
	}
	req, err := http.NewRequest(s.method, "http://"+hostA+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	c := e.forwardClient(t)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// neverTwiceEnv is a proxy with the default retry policy (short pauses) in
// front of a closing upstream.
func neverTwiceEnv(t *testing.T, h2 bool, headers ...string) (*env, *closingUpstream) {
	t.Helper()
	ps := newPKI(t)
	up := startClosingUpstream(t, ps, h2)
	rt := testRetry()
	if len(headers) > 0 {
		rt.IdempotencyHeaders = headers
	}
	e := startProxy(t, testConfig{Retry: rt, Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, up.addr, ps, sourceOf(ps.client))}})
	return e, up
}

// TestUnkeyedNeverSentTwice: each shape the third review found reaching
// the API twice, through the fast path and the Transport, over HTTP/1.1
// and HTTP/2, is read by the upstream exactly once, and the client learns
// it was not retried.
func TestUnkeyedNeverSentTwice(t *testing.T) {
	empty := func(name string) http.Header { return http.Header{name: {""}} }
	shapes := []struct {
		name    string
		s       shape
		headers []string // retry.idempotency_headers; nil: the default
	}{
		{"POST, empty X-Idempotency-Key", shape{method: "POST", header: empty("X-Idempotency-Key")}, nil},
		{"POST, empty Idempotency-Key", shape{method: "POST", header: empty("Idempotency-Key")}, nil},
		{"POST, key under a name not configured", shape{method: "POST", header: http.Header{"Idempotency-Key": {"pay-123"}}},
			[]string{"X-Idempotency-Key"}},
		{"GET with a body", shape{method: "GET"}, nil},
		{"POST without a key", shape{method: "POST"}, nil},
	}
	bodies := []struct {
		name    string
		size    int
		chunked bool
	}{
		{"small body (fast path on HTTP/1.1)", 100, false},
		{"chunked body (Transport)", 100, true},
		{"large body (Transport)", 200 << 10, false},
		{"no body", 0, false},
	}
	for _, h2 := range []bool{false, true} {
		for _, sh := range shapes {
			for _, b := range bodies {
				if sh.s.method == "GET" && b.size == 0 {
					continue // a GET without a body may be sent again
				}
				name := fmt.Sprintf("h2=%v/%s/%s", h2, sh.name, b.name)
				t.Run(name, func(t *testing.T) {
					s := sh.s
					s.body, s.chunked = b.size, b.chunked
					e, up := neverTwiceEnv(t, h2, sh.headers...)
					// A pooled connection first, of the same path (fast path or Transport).
					warm := s
					warm.header = nil
					if st, _ := warm.send(t, e, "/warm"); st != 200 {
						t.Fatalf("warm-up got %d", st)
					}
					status, h := s.send(t, e, "/cut")
					if n := up.count("/cut"); n != 1 {
						t.Errorf("%s: the upstream read it %d times, want 1 (X-Payrails-Proxy-Attempts %q)", s, n, h.Get(upstream.HeaderAttempts))
					}
					if status != http.StatusBadGateway {
						t.Errorf("%s: status %d, want 502", s, status)
					}
				})
			}
		}
	}
}

// TestNeverTwiceProperty: for random methods, header sets and body sizes,
// against an upstream that closes after reading every request, the
// upstream reads an un-keyed request at most once, and a keyed one at most
// retry.attempts times.
func TestNeverTwiceProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	methods := []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE"}
	keyNames := []string{"X-Idempotency-Key", "Idempotency-Key", "x-idempotency-key"}
	keyValues := []string{"", "pay-1", " "}
	sizes := []int{0, 1, 100, 64 << 10, 64<<10 + 1, 300 << 10}
	for _, h2 := range []bool{false, true} {
		e, up := neverTwiceEnv(t, h2)
		rt := testRetry()
		for i := range 40 {
			s := shape{method: methods[rng.IntN(len(methods))], header: http.Header{}}
			if rng.IntN(2) == 0 {
				s.header[keyNames[rng.IntN(len(keyNames))]] = []string{keyValues[rng.IntN(len(keyValues))]}
			}
			if s.method != "HEAD" && s.method != "TRACE" {
				s.body = sizes[rng.IntN(len(sizes))]
				s.chunked = s.body > 0 && rng.IntN(2) == 0
			}
			warm := shape{method: "POST", body: s.body, chunked: s.chunked}
			warm.send(t, e, fmt.Sprintf("/warm%d", i))
			path := fmt.Sprintf("/cut%d", i)
			s.send(t, e, path)
			keyed := false // as the proxy's server reads it: names canonical, values trimmed
			for k, v := range s.header {
				for _, name := range rt.IdempotencyHeaders {
					if http.CanonicalHeaderKey(k) == name && strings.TrimSpace(v[0]) != "" {
						keyed = true
					}
				}
			}
			limit := 1
			if keyed || ((s.method == "GET" || s.method == "HEAD" || s.method == "OPTIONS" || s.method == "TRACE" || s.method == "PUT" ||
				s.method == "DELETE") && s.body == 0) {
				limit = rt.Attempts
			}
			if n := up.count(path); n > limit {
				t.Errorf("h2=%v %s: the upstream read it %d times, want at most %d", h2, s, n, limit)
			}
		}
	}
}
