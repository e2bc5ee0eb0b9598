package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// scripted is the one scripted upstream of the tests (internal/tlsscript)
// with the environment's PKI: what a misbehaving upstream would do.
func startScripted(t testing.TB, ps *pkiSet, script tlsscript.Script) *tlsscript.Server {
	t.Helper()
	return tlsscript.Start(t, ps.tlsscript(), script)
}

// startScriptedAt is startScripted listening on addr.
func startScriptedAt(t testing.TB, ps *pkiSet, addr string, script tlsscript.Script) *tlsscript.Server {
	t.Helper()
	return tlsscript.StartAt(t, ps.tlsscript(), addr, script)
}

// tlsscript is ps as tlsscript's PKI.
func (ps *pkiSet) tlsscript() *tlsscript.PKI {
	return &tlsscript.PKI{CA: ps.ca, Server: ps.server, Client: ps.client}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// answerOK reads requests and answers each with "ok" until the connection ends.
func answerOK(c *tls.Conn, br *bufio.Reader) { tlsscript.AnswerOK(0, c, br) }

func scriptedEnv(t *testing.T, limits proxy.ClientLimits, script func(n int32, c *tls.Conn, br *bufio.Reader)) (*env, *tlsscript.Server) {
	t.Helper()
	return scriptedEnvRetry(t, limits, config.Retry{}, script)
}

func scriptedEnvRetry(t *testing.T, limits proxy.ClientLimits, retry config.Retry, script func(n int32, c *tls.Conn, br *bufio.Reader)) (*env, *tlsscript.Server) {
	t.Helper()
	ps := newPKI(t)
	up := startScripted(t, ps, script)
	e := startProxy(t, testConfig{Client: limits, Timeouts: proxy.Timeouts{ResponseHeader: 30 * time.Second}, Retry: retry,
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	return e, up
}

// TestUnsolicitedBytesNeverReachAClient: bytes an upstream sends after a
// response, unasked, already decrypted by crypto/tls when the response
// ends, make the connection unusable: they never become the answer to the
// next client's request (the Transport refuses the same: "Unsolicited
// response received on idle HTTP channel").
func TestUnsolicitedBytesNeverReachAClient(t *testing.T) {
	body := strings.Repeat("a", 10000) // more than the fast path's read buffer, less than a TLS record
	e, up := scriptedEnv(t, proxy.ClientLimits{}, func(n int32, c *tls.Conn, br *bufio.Reader) {
		if n > 1 {
			answerOK(c, br)
			return
		}
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+body+
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nEVIL!")
		answerOK(c, br)
	})
	c := e.forwardClient(t)
	if resp, got := get(t, c, "http://"+hostA+"/first"); resp.StatusCode != 200 || string(got) != body {
		t.Fatalf("first: status %d, %d bytes", resp.StatusCode, len(got))
	}
	resp, got := get(t, c, "http://"+hostA+"/second")
	if string(got) != "ok" {
		t.Errorf("second request answered %d %q: the upstream's unsolicited bytes reached a client", resp.StatusCode, got)
	}
	if n := up.Conns.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the first one is unusable)", n)
	}
}

// TestClientStopsMidBody: a client that stops sending its body in the
// middle gets 408 once the body idle timeout passes. With bodies streamed
// (retry.max_body 0) the body small enough for the HTTP/1.1 fast path
// goes out as it comes, and the upstream connection that carried the half
// request is closed, never reused; with bodies kept for retries (the
// default) nothing of the request reaches the upstream at all.
func TestClientStopsMidBody(t *testing.T) {
	e, up := scriptedEnvRetry(t, proxy.ClientLimits{BodyIdle: 500 * time.Millisecond}, config.Retry{Attempts: 1, MaxBody: 0},
		func(_ int32, c *tls.Conn, br *bufio.Reader) { answerOK(c, br) })
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST http://%s/v1/payments HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n0123456789", hostA, hostA)
	resp := readResponse(t, c)
	took := time.Since(start)
	t.Logf("a body that stopped after 10 of 1000 bytes: %d after %s (body idle timeout 500ms)", resp.StatusCode, took.Round(time.Millisecond))
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(failure.HeaderError) != string(failure.KindClientTimeout) {
		t.Errorf("status %d %s, want 408 %s", resp.StatusCode, resp.Header.Get(failure.HeaderError), failure.KindClientTimeout)
	}
	waitFor(t, "the proxy to close the upstream connection with the half request", func() bool { return up.Closed.Load() == 1 })
	if resp, got := get(t, e.forwardClient(t), "http://"+hostA+"/after"); resp.StatusCode != 200 || string(got) != "ok" {
		t.Errorf("the next request: %d %q", resp.StatusCode, got)
	}
	if n := up.Conns.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2: the half-written one must not be reused", n)
	}

	kept, keptUp := scriptedEnv(t, proxy.ClientLimits{BodyIdle: 500 * time.Millisecond}, func(_ int32, c *tls.Conn, br *bufio.Reader) { answerOK(c, br) })
	c2, err := net.Dial("tcp", strings.TrimPrefix(kept.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "POST http://%s/v1/payments HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n0123456789", hostA, hostA)
	if resp := readResponse(t, c2); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("kept body: status %d, want 408", resp.StatusCode)
	}
	if n := keptUp.Conns.Load(); n != 0 {
		t.Errorf("kept body: %d upstream connections for a body that never arrived whole, want 0", n)
	}
}

const expectHead = "POST http://" + hostA + "/v1/payments HTTP/1.1\r\nHost: " + hostA + "\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"

// TestExpectContinueUnreachable: with the upstream unreachable a client
// that sent Expect: 100-continue gets 502 at once instead of waiting for a
// 100 that never comes.
func TestExpectContinueUnreachable(t *testing.T) {
	ps := newPKI(t)
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, closedPort(t), ps, sourceOf(ps.client))}})
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, expectHead)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within 5s: %v", err)
	}
	t.Logf("Expect: 100-continue to an unreachable upstream: %d after %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != string(failure.KindUpstreamUnreachable) {
		t.Errorf("status %d %s, want 502 %s", resp.StatusCode, resp.Header.Get(failure.HeaderError), failure.KindUpstreamUnreachable)
	}
}

// TestExpectContinue: Expect: 100-continue reaches the upstream and its
// answer reaches the client, whether it is 100, a 417 or an early final
// answer.
func TestExpectContinue(t *testing.T) {
	const head = expectHead
	early := func(answer string) func(int32, *tls.Conn, *bufio.Reader) {
		return func(_ int32, c *tls.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err == nil {
				io.WriteString(c, answer)
			}
		}
	}
	for _, tt := range []struct {
		name, answer string
		status       int
	}{
		{"417", "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n", 417},
		{"early final answer", "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := scriptedEnv(t, proxy.ClientLimits{}, early(tt.answer))
			c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, head)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer within 5s: %v", err)
			}
			if resp.StatusCode != tt.status || resp.Header.Get(failure.HeaderError) != "" {
				t.Errorf("status %d %s, want the upstream's %d", resp.StatusCode, resp.Header.Get(failure.HeaderError), tt.status)
			}
		})
	}
	t.Run("100 then the body", func(t *testing.T) {
		e, _ := scriptedEnv(t, proxy.ClientLimits{}, func(_ int32, c *tls.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil || req.Header.Get("Expect") != "100-continue" {
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			b, _ := io.ReadAll(req.Body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		})
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, head)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusContinue {
			t.Fatalf("want 100 Continue first, got %v %v", resp, err)
		}
		io.WriteString(c, "0123456789")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "0123456789" {
			t.Errorf("status %d body %q", resp.StatusCode, b)
		}
	})
}
