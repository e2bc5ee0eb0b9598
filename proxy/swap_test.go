package proxy_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// TestSwapUsesNewConnections: after the source offers a new certificate,
// new requests go out on new connections presenting it (no pooled
// connection or session ticket of the old one is reused), over HTTP/1.1 and
// HTTP/2, while a request in flight finishes on the old one.
func TestSwapUsesNewConnections(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			ps := newPKI(t)
			up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = !h2 })
			src := sourceOf(ps.client)
			e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, src)}})
			c := e.forwardClient(t)
			wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]

			first := echoVia(t, c)
			if first.Proto != wantProto {
				t.Fatalf("upstream protocol %s, want %s", first.Proto, wantProto)
			}
			if again := echoVia(t, c); again.Conn != first.Conn {
				t.Fatalf("second request used a new connection (%s, then %s): no pooling", first.Conn, again.Conn)
			}

			// A request in flight when the certificate changes.
			slow := make(chan *http.Response, 1)
			go func() {
				resp, err := c.Get("http://" + hostA + "/delay/300ms")
				if err != nil {
					t.Errorf("in-flight request: %v", err)
				}
				slow <- resp
			}()
			waitFor(t, "the slow request to reach the upstream", func() bool { return up.Requests() >= 3 })

			next := newClientCert(t, ps.ca, "rotated")
			nc := next.TLS()
			src.set(&nc)
			after := echoVia(t, c)
			if after.Client.Serial != serialHex(next.Cert.SerialNumber.Bytes()) {
				t.Errorf("after the swap the upstream saw serial %s, want the new %X", after.Client.Serial, next.Cert.SerialNumber.Bytes())
			}
			if after.Conn == first.Conn {
				t.Errorf("after the swap the request reused the old connection %s", after.Conn)
			}
			if after.TLS.Resumed {
				t.Error("after the swap the TLS session was resumed from a ticket of the old certificate")
			}
			if resp := <-slow; resp == nil || resp.StatusCode != http.StatusOK {
				t.Errorf("in-flight request did not finish normally: %v", resp)
			} else {
				resp.Body.Close()
			}
			for range 5 {
				if got := echoVia(t, c); got.Conn == first.Conn || got.Client.Serial != after.Client.Serial {
					t.Errorf("a later request used connection %s serial %s", got.Conn, got.Client.Serial)
				}
			}
		})
	}
}

func serialHex(b []byte) string { return fmt.Sprintf("%X", b) }

func echoVia(t testing.TB, c *http.Client) standinEcho {
	t.Helper()
	resp, body := get(t, c, "http://"+hostA+"/echo")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return decodeEcho(t, body)
}

type standinEcho = standin.Echo

// TestSessionResumption: within one certificate generation a second
// connection resumes the TLS session of the first instead of a full
// handshake.
func TestSessionResumption(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = true })
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	c := e.forwardClient(t)
	first := echoVia(t, c)
	if first.TLS.Resumed {
		t.Fatal("the very first connection claims a resumed session")
	}
	// Two slow requests at once need two upstream connections; the new
	// one can resume the first one's session.
	results := make(chan standinEcho, 2)
	for range 2 {
		go func() {
			resp, body := get(t, c, "http://"+hostA+"/echo?delay=200ms")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
			results <- decodeEcho(t, body)
		}()
	}
	a, b := <-results, <-results
	if a.Conn == b.Conn {
		t.Fatalf("both concurrent requests used connection %s; the test needs two", a.Conn)
	}
	second := a
	if a.Conn == first.Conn {
		second = b
	}
	if !second.TLS.Resumed {
		t.Errorf("the second connection %s made a full handshake; want the first one's session resumed", second.Conn)
	}
}

// TestIgnoresProxyEnvironment: the upstream connection never goes through
// the proxy's own HTTP_PROXY/HTTPS_PROXY environment.
func TestIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("https_proxy", "http://127.0.0.1:1")
	e, _, _ := simpleEnv(t)
	resp, body := get(t, plainClient(t), e.url+"/v1/x")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with HTTPS_PROXY set in the proxy's environment: status %d: %s", resp.StatusCode, body)
	}
}
