package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
)

// TestIdleRetirementWithoutWarmConnections: with warm_connections 0 the
// proxy still learns the server's idle timeout from the closes it meets,
// and then retires idle connections before it, as with warm connections
// (DESIGN.md: idle connections are retired before the server's own idle
// timeout). The upstream closes a connection idle for 300 ms; once that is
// learnt, a connection idle for 200 ms is no longer used (the retirement
// age is then 100 ms), so no request is written on one the server is about
// to close.
func TestIdleRetirementWithoutWarmConnections(t *testing.T) {
	const serverIdle = 300 * time.Millisecond
	ps := newPKI(t)
	var serverCloses atomic.Int32
	up := startScripted(t, ps, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		defer serverCloses.Add(1)
		for {
			c.SetReadDeadline(time.Now().Add(serverIdle))
			req, err := http.ReadRequest(br)
			if err != nil {
				return // idle too long: closed, as a server's keep-alive timeout does
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	c := e.forwardClient(t)
	send := func(path string) {
		t.Helper()
		if resp, body := get(t, c, "http://"+hostA+path); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	// Three requests, each after the server closed the connection the one
	// before used: the second and third find it closed, two closes that
	// agree.
	for i := range 3 {
		send(fmt.Sprint("/teach/", i))
		waitFor(t, "the upstream to close the idle connection", func() bool { return serverCloses.Load() == int32(i+1) })
	}
	waitFor(t, "the proxy to learn the idle timeout", func() bool {
		return len(e.logs.FilterMessageSnippet("learnt how long the upstream keeps an idle connection open").All()) > 0
	})
	send("/after")
	opened := up.Conns.Load()
	time.Sleep(2 * serverIdle / 3) // idle for 200 ms: less than the server's timeout, more than the retirement age
	send("/later")
	if n := up.Conns.Load() - opened; n != 1 {
		t.Errorf("after 200 ms of idle the request opened %d connections; want 1: the idle one is retired "+
			"before the learnt 300 ms", n)
	}
}
