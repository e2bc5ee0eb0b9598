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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"go.uber.org/zap/zapcore"
)

// leafSource presents one certificate in every tunnel.
type leafSource struct{ cert tls.Certificate }

func (l leafSource) Certificate(string) (*tls.Certificate, error) { return &l.cert, nil }

// tunnel opens a CONNECT tunnel to hostA through the proxy at e and
// returns its TLS connection, the proxy's leaf verified against ps's CA.
func tunnel(t *testing.T, e *env, ps *pkiSet) *tls.Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", strings.TrimPrefix(e.url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(raw, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", hostA, hostA)
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c := tls.Client(raw, &tls.Config{ServerName: hostA, RootCAs: ps.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGoproxyLogsNoRequestData: requests that make goproxy warn carry a
// card number in the query and an X-Api-Key value; neither may appear in
// any log line, while the warning itself is still logged with its kind.
func TestGoproxyLogsNoRequestData(t *testing.T) {
	const (
		card   = "4111111111111111"
		apiKey = "sk-live-7f3c9a1e5b"
	)
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	e := startProxy(t, proxy.Config{MITM: leafSource{ps.server.TLS()}, Upstreams: []proxy.UpstreamConfig{
		upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	for _, tt := range []struct {
		name, request, kind string
	}{
		// A header line without a colon: the reader's error quotes it.
		{"malformed header line", "GET /v1/payments?card=" + card + " HTTP/1.1\r\nHost: " + hostA + "\r\n" +
			"X-Api-Key " + apiKey + "\r\n\r\n", "read_request"},
		// A Host the URL parser refuses: the warning quotes the whole URL.
		{"unparsable URL", "GET /v1/payments?card=" + card + "&key=" + apiKey + " HTTP/1.1\r\nHost: api acme\r\n" +
			"X-Api-Key: " + apiKey + "\r\n\r\n", "parse_url"},
		// A client that leaves in the middle of a large answer.
		{"client leaves mid-copy", "GET /bytes/67108864?card=" + card + " HTTP/1.1\r\nHost: " + hostA + "\r\n" +
			"X-Api-Key: " + apiKey + "\r\n\r\n", "write_response"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.logs.Len()
			c := tunnel(t, e, ps)
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			if tt.kind == "write_response" {
				// Read the start of the answer, then leave.
				if _, err := io.ReadFull(c, make([]byte, 64<<10)); err != nil {
					t.Fatal(err)
				}
				c.NetConn().Close()
			} else {
				// goproxy answers nothing and ends the tunnel.
				_, _ = io.Copy(io.Discard, c)
			}
			waitFor(t, "goproxy's "+tt.kind+" warning", func() bool {
				for _, l := range e.logs.All()[before:] {
					if l.LoggerName == "goproxy" && l.Level == zapcore.WarnLevel && l.ContextMap()["kind"] == tt.kind {
						return true
					}
				}
				return false
			})
			for _, l := range e.logs.All()[before:] {
				if l.LoggerName != "goproxy" {
					continue
				}
				if kind, _ := l.ContextMap()["kind"].(string); kind == "" || kind == "unknown" || l.Message != "goproxy warning" {
					t.Errorf("goproxy's line %q with kind %q, want the fixed message and a known kind", l.Message, kind)
				}
			}
		})
	}
	for _, l := range e.logs.All() {
		line := fmt.Sprint(l.LoggerName, " ", l.Message, " ", l.ContextMap())
		if strings.Contains(line, card) || strings.Contains(line, apiKey) {
			t.Errorf("a log line carries request data: %s", line)
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
	e := startProxy(t, proxy.Config{Upstreams: []proxy.UpstreamConfig{
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
