package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// TestUnaskedUpgradeRefused (issue 22, item 4): an upstream that answers a
// request that did not ask for an upgrade with 101 Switching Protocols gets
// its answer refused: the client receives 502 upstream_error, never a raw
// pipe, and what the client writes next never reaches the upstream over
// the merchant's mTLS connection unframed. The Payrails API has no
// upgrades. Through the fast path (a small POST) and the Transport (a
// chunked POST).
func TestUnaskedUpgradeRefused(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		name := "fast path"
		if chunked {
			name = "Transport"
		}
		t.Run(name, func(t *testing.T) {
			after := make(chan []byte, 1) // what the upstream read after its 101, until it closed or a second passed
			e, _ := scriptedEnv(t, proxy.ClientLimits{}, func(_ int32, c *tls.Conn, br *bufio.Reader) {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(time.Second))
				b, _ := io.ReadAll(br)
				after <- b
			})
			c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			body := "Content-Length: 12\r\n\r\n" + `{"amount":1}`
			if chunked {
				body = "Transfer-Encoding: chunked\r\n\r\nc\r\n{\"amount\":1}\r\n0\r\n\r\n"
			}
			io.WriteString(c, "POST http://"+hostA+"/v1/payments HTTP/1.1\r\nHost: "+hostA+"\r\nContent-Type: application/json\r\n"+body)
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != string(failure.KindUpstreamError) {
				t.Fatalf("got %d %s=%q (%q), want 502 upstream_error", resp.StatusCode, failure.HeaderError,
					resp.Header.Get(failure.HeaderError), b)
			}
			// What a client that took the 101 for a pipe writes next.
			io.WriteString(c, "CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\nDELETE /v1/payments/pay_1 HTTP/1.1\r\n\r\n")
			select {
			case got := <-after:
				if strings.Contains(string(got), "CONNECT") || strings.Contains(string(got), "DELETE") {
					t.Errorf("the client's bytes after the refused 101 reached the upstream: %q", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream's script did not end")
			}
		})
	}
}

// TestOwnHeadersStripped (issue 23): the headers only the proxy sets
// (X-Payrails-Proxy-*) never pass through from an upstream's answer (say,
// another proxy in front of the API): scripts match on them.
func TestOwnHeadersStripped(t *testing.T) {
	e, _ := scriptedEnv(t, proxy.ClientLimits{}, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Payrails-Proxy-Error: upstream_error\r\nx-payrails-proxy-attempts: 9\r\n"+
				"X-Payrails-Request: kept\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	resp, body := get(t, e.forwardClient(t), "http://"+hostA+"/v1/x")
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-payrails-proxy-") {
			t.Errorf("the upstream's %s: %v reached the client", k, resp.Header[k])
		}
	}
	if resp.Header.Get("X-Payrails-Request") != "kept" {
		t.Errorf("another header of the upstream was dropped: %v", resp.Header)
	}
}
