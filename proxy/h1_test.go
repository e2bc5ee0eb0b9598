package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// h1Env: one HTTP/1.1-only stand-in behind the proxy.
func h1Env(t *testing.T, mod func(*standin.Options), timeouts proxy.Timeouts) (*env, *standin.Server) {
	t.Helper()
	ps := newPKI(t)
	up := startStandin(t, ps, func(o *standin.Options) {
		o.DisableHTTP2 = true
		if mod != nil {
			mod(o)
		}
	})
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))},
		Timeouts: timeouts})
	return e, up
}

func postEmpty(t *testing.T, c *http.Client) standinEcho {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/capture", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST without a body: status %d: %s", resp.StatusCode, body)
	}
	return decodeEcho(t, body)
}

// TestIdleUpstreamConnections: pooled HTTP/1.1 connections to the upstream
// are dropped when the server closed them while idle (found before a
// request is written on them, so even a POST, which is never retried, goes
// through) and when they sat idle past timeouts.idle_conn.
func TestIdleUpstreamConnections(t *testing.T) {
	t.Run("closed by the server", func(t *testing.T) {
		e, up := h1Env(t, func(o *standin.Options) { o.IdleTimeout = 100 * time.Millisecond }, proxy.Timeouts{})
		c := e.forwardClient(t)
		first := postEmpty(t, c)
		waitFor(t, "the stand-in to close the idle connection", func() bool { return up.OpenConnections() == 0 })
		second := postEmpty(t, c)
		if second.Conn == first.Conn {
			t.Fatalf("both POSTs came on connection %s", first.Conn)
		}
		if got := up.Requests(); got != 2 {
			t.Errorf("the stand-in handled %d requests, want 2 (one per POST)", got)
		}
	})
	t.Run("idle past timeouts.idle_conn", func(t *testing.T) {
		e, up := h1Env(t, nil, proxy.Timeouts{IdleConn: 150 * time.Millisecond})
		c := e.forwardClient(t)
		postEmpty(t, c)
		if up.OpenConnections() != 1 {
			t.Fatalf("%d open upstream connections after one request, want 1", up.OpenConnections())
		}
		waitFor(t, "the proxy to close its idle connection", func() bool { return up.OpenConnections() == 0 })
	})
}

// TestBodyRequestsShareIdleConnections: a request with a body after one
// without reuses the idle connection the first left, instead of a new
// handshake.
func TestBodyRequestsShareIdleConnections(t *testing.T) {
	e, up := h1Env(t, nil, proxy.Timeouts{})
	c := e.forwardClient(t)
	first := echoVia(t, c)
	req, err := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", strings.NewReader(`{"amount":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: status %d: %s", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body); got.Conn != first.Conn || got.BodyBytes != 12 {
		t.Errorf("POST came on %s with %d body bytes, want %s (the GET's connection) and 12", got.Conn, got.BodyBytes, first.Conn)
	}
	if n := up.Connections(); n != 1 {
		t.Errorf("the stand-in accepted %d connections, want 1", n)
	}
}

// TestResponseHeaderLimit: an upstream that sends response headers without
// end gets a 502, not a proxy buffering them; large but sane ones pass.
func TestResponseHeaderLimit(t *testing.T) {
	e, _ := h1Env(t, nil, proxy.Timeouts{})
	c := e.forwardClient(t)
	resp, body := get(t, c, "http://"+hostA+"/header-bytes/100000")
	if resp.StatusCode != http.StatusNoContent || len(resp.Header.Get("X-Filler")) != 100000 {
		t.Fatalf("100 kB header: status %d, header of %d bytes: %s", resp.StatusCode, len(resp.Header.Get("X-Filler")), body)
	}
	resp, body = get(t, c, "http://"+hostA+"/header-bytes/2000000")
	if detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindUpstreamError); !strings.Contains(detail, "exceed 1 MiB") {
		t.Errorf("detail %q does not say the headers were too large", detail)
	}
}

// TestRequestBodies: bodies of every size and framing arrive whole, on
// either side of the fast path's limit (64 KiB of declared length).
func TestRequestBodies(t *testing.T) {
	e, up := h1Env(t, nil, proxy.Timeouts{})
	c := e.forwardClient(t)
	for _, size := range []int{1, 4 << 10, 64 << 10, 64<<10 + 1, 1 << 20} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes chunked=%v", size, chunked), func(t *testing.T) {
				payload := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
				var body io.Reader = bytes.NewReader(payload)
				if chunked {
					body = io.MultiReader(body) // hides the length: the client sends it chunked
				}
				req, err := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", body)
				if err != nil {
					t.Fatal(err)
				}
				resp, b := do(t, c, req)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				got := decodeEcho(t, b)
				sum := sha256.Sum256(payload)
				if got.BodyBytes != int64(size) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("upstream received %d bytes (sha256 %s), want %d", got.BodyBytes, got.BodySHA256, size)
				}
				if got.Chunked != chunked {
					t.Errorf("upstream saw chunked=%v, want %v (the client's framing kept)", got.Chunked, chunked)
				}
			})
		}
	}
	if n := up.Connections(); n > 2 {
		t.Errorf("%d upstream connections for sequential requests, want at most 2", n)
	}
}

// TestResponsesWithoutBodies: HEAD, 204 and an answer preceded by 103
// Early Hints come through whole and leave the connection reusable.
func TestResponsesWithoutBodies(t *testing.T) {
	e, up := h1Env(t, nil, proxy.Timeouts{})
	c := e.forwardClient(t)
	req, _ := http.NewRequest(http.MethodHead, "http://"+hostA+"/v1/payments", nil)
	if resp, body := do(t, c, req); resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD: status %d, %d body bytes", resp.StatusCode, len(body))
	}
	if resp, body := get(t, c, "http://"+hostA+"/status/204"); resp.StatusCode != http.StatusNoContent || len(body) != 0 {
		t.Errorf("204: status %d, %d body bytes", resp.StatusCode, len(body))
	}
	if resp, body := get(t, c, "http://"+hostA+"/early-hints"); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"hinted":true}` {
		t.Errorf("after 103 Early Hints: status %d, body %q; want 200 and the final body", resp.StatusCode, body)
	}
	echoVia(t, c)
	if n := up.Connections(); n != 1 {
		t.Errorf("%d upstream connections for four sequential requests, want 1", n)
	}
}

// TestClientGoneAway: when the client gives up while the upstream is still
// working, the proxy drops its upstream connection at once rather than
// waiting out timeouts.response_header.
func TestClientGoneAway(t *testing.T) {
	e, up := h1Env(t, nil, proxy.Timeouts{ResponseHeader: time.Minute})
	c := e.forwardClient(t)
	c.Timeout = 200 * time.Millisecond
	if resp, err := c.Get("http://" + hostA + "/delay/1m"); err == nil {
		resp.Body.Close()
		t.Fatalf("the request answered %d before the upstream's minute", resp.StatusCode)
	}
	waitFor(t, "the proxy to close the upstream connection", func() bool { return up.OpenConnections() == 0 })
	e.waitLogLines(t, "request", 1)
}

// TestAnswerBeforeBody: an upstream that answers without reading the
// request body (a 413, say) has its answer reach the client, on either
// side of the fast path's body limit.
func TestAnswerBeforeBody(t *testing.T) {
	e, _ := h1Env(t, nil, proxy.Timeouts{})
	c := e.forwardClient(t)
	for _, size := range []int{60 << 10, 300 << 10} {
		req, err := http.NewRequest(http.MethodPost, "http://"+hostA+"/status/413", bytes.NewReader(make([]byte, size)))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := do(t, c, req)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get(failure.HeaderError) != "" {
			t.Errorf("%d-byte body: status %d, %s %q; want the upstream's own 413: %s", size, resp.StatusCode,
				failure.HeaderError, resp.Header.Get(failure.HeaderError), body)
		}
	}
	echoVia(t, c) // the proxy still serves
}
