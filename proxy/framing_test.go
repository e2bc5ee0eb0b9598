package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// TestAmbiguousFramingCloses (issue 22, item 2): a request that carried
// both Content-Length and Transfer-Encoding is answered and its connection
// closed (RFC 9112 §6.1: the server MUST close the connection after
// responding to such a request), so that bytes a Content-Length-framing
// hop in front of the proxy sent as body never become a request of their
// own. On the proxy port and inside an intercepted tunnel alike.
func TestAmbiguousFramingCloses(t *testing.T) {
	e, ps, up := tunnelEnv(t, proxy.ClientLimits{})
	addr := strings.TrimPrefix(e.url, "http://")
	const h = "Host: " + hostileHost + "\r\n"
	for _, te := range []string{"Transfer-Encoding: chunked", "Transfer-Encoding:\tchunked", "Transfer-Encoding: Chunked"} {
		for _, where := range []string{"port", "tunnel"} {
			t.Run(where+"/"+te, func(t *testing.T) {
				target := "http://" + hostileHost + "/v1/payments"
				smuggled := "GET http://" + hostileHost + "/v1/smuggled HTTP/1.1\r\n" + h + "\r\n"
				var c net.Conn
				if where == "tunnel" {
					target, smuggled = "/v1/payments", "GET /v1/smuggled HTTP/1.1\r\n"+h+"\r\n"
					c = openTunnel(t, e, ps, hostileHost)
				} else {
					var err error
					if c, err = net.Dial("tcp", addr); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
				}
				// As a Content-Length hop reads it: one POST whose body is
				// the chunked body and the smuggled GET.
				chunked := "3\r\nabc\r\n0\r\n\r\n"
				raw := "POST " + target + " HTTP/1.1\r\n" + h + "Content-Length: " + strconv.Itoa(len(chunked)+len(smuggled)) +
					"\r\n" + te + "\r\n\r\n" + chunked + smuggled
				before := len(up.completed())
				io.WriteString(c, raw)
				br := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK || !resp.Close {
					t.Errorf("status %d, close %v; want 200 and Connection: close", resp.StatusCode, resp.Close)
				}
				closedWithin(t, c, br, 5*time.Second)
				for _, r := range up.completed()[before:] {
					if strings.Contains(r.line, "smuggled") {
						t.Errorf("bytes a Content-Length hop sent as body became a request: the upstream received %q", r.line)
					}
				}
			})
		}
	}
}
