package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSourceRefusedAtAccept (issue 22, item 8): a client outside
// access.allow_cidrs is refused when it connects, before any byte of a
// request is read, and holds nothing: its connection is closed at once,
// without an answer, and counted.
func TestSourceRefusedAtAccept(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	reg := prometheus.NewRegistry()
	e := startProxy(t, testConfig{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Registry:  reg,
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	addr := strings.TrimPrefix(e.url, "http://")
	const n = 300
	goroutines := runtime.NumGoroutine()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused (reset) before the dial returned
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET http://"+hostA+"/v1/x HTTP/1.1\r\nHost: "+hostA+"\r\n\r\n")
		conns = append(conns, c)
	}
	start := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(bufio.NewReader(c))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d from 127.0.0.1 (not in allow_cidrs) is still open after 5 s", i)
		}
		if len(b) > 0 {
			t.Fatalf("connection %d got an answer (%q): the request was read", i, firstLine(b))
		}
	}
	t.Logf("%d connections from outside allow_cidrs were all closed within %s without an answer; goroutines %d before, %d after",
		n, time.Since(start).Round(time.Millisecond), goroutines, runtime.NumGoroutine())
	waitFor(t, "the refusals to be counted", func() bool {
		return counter(t, reg, "payrails_proxy_denied_requests_total", map[string]string{"reason": "source_not_allowed"}) == n
	})
	if got := counter(t, reg, "payrails_proxy_requests_total", nil); got != 0 {
		t.Errorf("requests_total = %v: a refused connection's request was handled", got)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// TestProxyConnectionCap (issue 22, item 8): the proxy port serves at most
// Client.MaxConns connections; at the cap the connection idle the longest
// is closed to make room, so a new client is served at once.
func TestProxyConnectionCap(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	const max = 4
	e := startProxy(t, testConfig{Client: proxy.ClientLimits{MaxConns: max},
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	addr := strings.TrimPrefix(e.url, "http://")
	get := func(c net.Conn, br *bufio.Reader) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET http://"+hostA+"/v1/x HTTP/1.1\r\nHost: "+hostA+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	var cs []client
	for i := range 2 * max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl := client{c, bufio.NewReader(c)}
		if err := get(cl.c, cl.br); err != nil {
			t.Fatalf("connection %d (cap %d, the others idle): %v", i, max, err)
		}
		cs = append(cs, cl)
	}
	open := 0
	for _, cl := range cs {
		if get(cl.c, cl.br) == nil {
			open++
		}
	}
	if open != max {
		t.Errorf("%d of %d connections still served, want the cap, %d", open, len(cs), max)
	}
}
