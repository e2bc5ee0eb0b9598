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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"go.uber.org/zap/zapcore"
)

// wsUpstream is an upstream that answers every request with a websocket
// upgrade and then streams bytes until the connection breaks.
func wsUpstream(t *testing.T, ps *pkiSet) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ps.server.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ps.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		chunk := make([]byte, 16<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestGoproxyLogsNoRequestData: requests carrying a card number in the
// query and an X-Api-Key value, shaped to make the proxy complain (a
// malformed header line or an invalid Host inside a tunnel, a client that
// leaves in the middle of a websocket, which makes goproxy warn): neither
// appears in any log line, and goproxy's warning is still logged, as a
// fixed message with its kind.
func TestGoproxyLogsNoRequestData(t *testing.T) {
	const (
		card   = "4111111111111111"
		apiKey = "sk-live-7f3c9a1e5b"
	)
	ps := newPKI(t)
	e := startProxy(t, testConfig{MITM: &leafSource{ca: ps.ca}, Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, wsUpstream(t, ps), ps, sourceOf(ps.client))}})

	for _, request := range []string{
		// A header line without a colon; the reader's error quotes it.
		"GET /v1/payments?card=" + card + " HTTP/1.1\r\nHost: " + hostA + "\r\nX-Api-Key " + apiKey + "\r\n\r\n",
		// A Host no URL parser takes, with the key in the query too.
		"GET /v1/payments?card=" + card + "&key=" + apiKey + " HTTP/1.1\r\nHost: api acme\r\nX-Api-Key: " + apiKey + "\r\n\r\n",
	} {
		tc := openTunnel(t, e, ps, hostA)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(tc, request); err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, tc) // the answer, then the end of the tunnel
	}

	// A websocket through the proxy whose client leaves mid-stream: goproxy
	// copies the upgraded connection and warns when the copy breaks.
	before := e.logs.Len()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET http://%s/v1/stream?card=%s HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		hostA, card, hostA, apiKey)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade through the proxy: %v %v", resp, err)
	}
	if _, err := io.ReadFull(br, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetLinger(0) // leave with a reset, in the middle of the stream
	c.Close()
	waitFor(t, "goproxy's warning about the broken copy", func() bool {
		for _, l := range e.logs.All()[before:] {
			if l.LoggerName == "goproxy" && l.Level == zapcore.WarnLevel {
				return true
			}
		}
		return false
	})

	for _, l := range e.logs.All() {
		line := fmt.Sprint(l.LoggerName, " ", l.Message, " ", l.ContextMap())
		if strings.Contains(line, card) || strings.Contains(line, apiKey) {
			t.Errorf("a log line carries request data: %s", line)
		}
		if l.LoggerName != "goproxy" {
			continue
		}
		if kind, _ := l.ContextMap()["kind"].(string); kind == "" || kind == "unknown" || l.Message != "goproxy warning" {
			t.Errorf("goproxy's line %q has kind %q; want the fixed message and a known kind", l.Message, kind)
		} else {
			t.Logf("goproxy logged %q with kind %q", l.Message, kind)
		}
	}
}

// TestLogsCarryNoQueryOrKey: whatever way a forward request ends (answered,
// upstream unreachable, upstream breaking off mid-body, refused host), no
// log line carries its query string or its X-Api-Key value.
func TestLogsCarryNoQueryOrKey(t *testing.T) {
	const (
		card   = "4111111111111111"
		apiKey = "sk-live-7f3c9a1e5b"
	)
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there any more
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client)),
		upstreamConfig("down", hostB, deadAddr, ps, sourceOf(ps.client)),
	}})
	c := e.forwardClient(t)
	for _, target := range []string{
		"http://" + hostA + "/v1/x?card=" + card,
		"http://" + hostB + "/v1/x?card=" + card,
		"http://" + hostA + "/cut/1000?length=5000&card=" + card,
		"http://api.elsewhere.test/v1/x?card=" + card,
	} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("X-Api-Key", apiKey)
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// At least one line per request (Go's client sends the broken-off GET
	// twice).
	waitFor(t, "a request line per request", func() bool { return e.logs.FilterMessage("request").Len() >= 4 })
	for _, l := range e.logs.All() {
		line := fmt.Sprint(l.LoggerName, " ", l.Message, " ", l.ContextMap())
		if strings.Contains(line, card) || strings.Contains(line, apiKey) {
			t.Errorf("a log line carries request data: %s", line)
		}
	}
}
