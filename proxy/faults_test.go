package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// TestUpstreamRestart: after the upstream restarts, its pooled connections
// are dead. An idempotent request is retried on a new connection and
// succeeds; a POST is sent at most once (the stand-in counts idempotency
// keys), whatever the protocol.
func TestUpstreamRestart(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			ps := newPKI(t)
			keys := &standin.KeyCounter{}
			opts := func(o *standin.Options) { o.DisableHTTP2 = !h2; o.Keys = keys }
			up := startStandin(t, ps, opts)
			e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
			c := e.forwardClient(t)
			for round := range 3 {
				if resp, body := get(t, c, "http://"+hostA+"/v1/warm"); resp.StatusCode != 200 {
					t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
				}
				up.Close() // the pooled connection dies with it
				up = startStandin(t, ps, func(o *standin.Options) { opts(o); o.Addr = up.Addr })
				if resp, body := get(t, c, "http://"+hostA+"/v1/after-restart"); resp.StatusCode != 200 {
					t.Errorf("round %d: GET after restart: %d %s", round, resp.StatusCode, body)
				}
				up.Close()
				up = startStandin(t, ps, func(o *standin.Options) { opts(o); o.Addr = up.Addr })
				key := fmt.Sprintf("pay-%v-%d", h2, round)
				req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", strings.NewReader(`{"amount":100}`))
				req.Header.Set("X-Idempotency-Key", key)
				resp, body := do(t, c, req)
				if n := keys.Count(key); n > 1 {
					t.Fatalf("round %d: POST %s reached the upstream %d times", round, key, n)
				}
				if resp.StatusCode != 200 && resp.Header.Get(failure.HeaderError) == "" {
					t.Errorf("round %d: POST failed without a proxy error: %d %s", round, resp.StatusCode, body)
				}
			}
		})
	}
}

// TestDNSFailure: an upstream host that does not resolve gives 502 with
// the cause.
func TestDNSFailure(t *testing.T) {
	ps := newPKI(t)
	uc := upstreamConfig("live", "api.payrails-mtls-proxy-test.invalid", "", ps, sourceOf(ps.client))
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	resp, body := get(t, plainClient(t), e.url+"/v1/x")
	detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindUpstreamUnreachable)
	if !strings.Contains(detail, "cannot resolve api.payrails-mtls-proxy-test.invalid") {
		t.Errorf("detail %q does not name the DNS failure", detail)
	}
}

// TestSlowClient: a client that stalls in the middle of its body gets 408
// after the idle timeout, while other clients are served meanwhile.
func TestSlowClient(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	e := startProxy(t, testConfig{Client: proxy.ClientLimits{BodyIdle: 300 * time.Millisecond},
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST http://%s/v1/slow HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\npartial", hostA, hostA)
	started := time.Now()
	var (
		wg     sync.WaitGroup
		served int
	)
	wg.Go(func() { // others are not held up
		c := e.forwardClient(t)
		for time.Since(started) < 200*time.Millisecond {
			if resp, _ := get(t, c, "http://"+hostA+"/v1/fast"); resp.StatusCode == 200 {
				served++
			}
		}
	})
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	wg.Wait()
	if err != nil {
		t.Fatalf("the stalled client got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	wantProxyError(t, resp, body, http.StatusRequestTimeout, failure.KindClientTimeout)
	if served == 0 {
		t.Error("no other request was served while one client stalled")
	}
}

// TestManyConcurrentClients: 1,000 client connections, each with a
// request in flight at the same time, are all served.
func TestManyConcurrentClients(t *testing.T) {
	const n = 1000
	e, _, _ := simpleEnv(t)
	pu, _ := url.Parse(e.url)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for i := range n {
		wg.Go(func() {
			resp, err := c.Get(fmt.Sprintf("http://%s/v1/c/%d?delay=300ms", hostA, i))
			if err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != 200 {
				failed = append(failed, fmt.Sprintf("%d %s", resp.StatusCode, body))
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d concurrent requests failed; first: %s", len(failed), n, failed[0])
	}
	clients := map[any]bool{} // the proxy's log names each request's client address
	for _, l := range e.waitLogLines(t, "request", n) {
		clients[l.ContextMap()["client"]] = true
	}
	if len(clients) < n*9/10 {
		t.Errorf("only %d distinct client connections for %d concurrent requests", len(clients), n)
	}
}
