package proxy_test

import (
	"bufio"
	"bytes"
	"context"
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

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// tunneller is a minimal CONNECT proxy on loopback: it opens the tunnels
// allow admits, answers 403 to the others, and keeps every byte it relays
// so that a test can look for plaintext in them.
type tunneller struct {
	ln      net.Listener
	allow   func(target string) bool
	mu      sync.Mutex
	targets []string
	relayed bytes.Buffer
}

func startTunneller(t *testing.T, allow func(string) bool) *tunneller {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &tunneller{ln: ln, allow: allow}
	ctx, cancel := context.WithCancel(context.Background())
	loopback.Serve(t, ln, func(c net.Conn) { tn.serve(ctx, c) })
	t.Cleanup(cancel) // runs before Serve's: the tunnels end, then the connections
	return tn
}

func (tn *tunneller) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	tn.mu.Lock()
	tn.targets = append(tn.targets, req.RequestURI)
	tn.mu.Unlock()
	if !tn.allow(req.RequestURI) {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.RequestURI)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	stopUp := context.AfterFunc(ctx, func() { up.Close() })
	defer stopUp()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		io.Copy(up, io.TeeReader(br, tn.sink()))
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, io.TeeReader(up, tn.sink()))
	c.Close()
	<-done
}

func (tn *tunneller) sink() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		tn.mu.Lock()
		defer tn.mu.Unlock()
		return tn.relayed.Write(p)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (tn *tunneller) seen() (targets []string, relayed []byte) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return append([]string(nil), tn.targets...), bytes.Clone(tn.relayed.Bytes())
}

func (tn *tunneller) url() *url.URL { return &url.URL{Scheme: "http", Host: tn.ln.Addr().String()} }

// TestViaEgressProxy: with via, the request reaches the upstream with the
// client certificate through a CONNECT to the dial address, and the egress
// proxy relays only ciphertext; an egress proxy that refuses gives 502
// upstream_unreachable naming it and its answer.
func TestViaEgressProxy(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	open := startTunneller(t, func(string) bool { return true })
	closed := startTunneller(t, func(string) bool { return false })
	a := upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))
	a.Via = &egress.Proxy{URL: open.url()}
	b := upstreamConfig("staging", hostB, up.Addr, ps, sourceOf(ps.client))
	b.Via = &egress.Proxy{URL: closed.url()}
	e := startProxy(t, testConfig{Upstreams: []upstream.Config{a, b}})
	c := e.forwardClient(t)

	const secretPath = "/v1/payments/pay_0123456789abcdef"
	resp, body := get(t, c, "http://"+hostA+secretPath)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("through the egress proxy: status %d: %s", resp.StatusCode, body)
	}
	echo := decodeEcho(t, body)
	if want := fmt.Sprintf("%X", ps.client.Cert.SerialNumber.Bytes()); echo.Client.Serial != want || echo.Path != secretPath {
		t.Errorf("upstream saw serial %s path %q, want %s and %s", echo.Client.Serial, echo.Path, want, secretPath)
	}
	targets, relayed := open.seen()
	if len(targets) != 1 || targets[0] != up.Addr {
		t.Errorf("CONNECT targets %q, want [%s] (the dial address)", targets, up.Addr)
	}
	for _, plain := range []string{secretPath, "GET ", hostA + "\r\n", "payments"} {
		if bytes.Contains(relayed, []byte(plain)) {
			t.Errorf("the egress proxy relayed plaintext %q: TLS is not end to end", plain)
		}
	}
	if len(relayed) == 0 {
		t.Error("the egress proxy relayed nothing: the request did not go through it")
	}

	before := up.Requests()
	resp, body = get(t, c, "http://"+hostB+"/v1/x")
	detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindUpstreamUnreachable)
	for _, w := range []string{closed.url().String(), "403 Forbidden", "CONNECT " + up.Addr, "allow CONNECT to " + up.Addr} {
		if !strings.Contains(detail, w) {
			t.Errorf("detail %q lacks %q", detail, w)
		}
	}
	if up.Requests() != before {
		t.Error("a request reached the upstream past the refusing egress proxy")
	}
	// A policy refusal is final: sending the CONNECT again (a retry of the
	// idempotent GET) would only repeat it, or lock out the credentials.
	if targets, _ := closed.seen(); len(targets) != 1 {
		t.Errorf("the refusing egress proxy saw %d CONNECTs for one request, want 1 (a 403 is not retried)", len(targets))
	}
}

// TestProbeViaEgressProxy: check --remote's probe goes through the egress
// proxy too, and a refusal is a TCP failure whose error is the egress
// proxy's.
func TestProbeViaEgressProxy(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	open := startTunneller(t, func(string) bool { return true })
	closed := startTunneller(t, func(string) bool { return false })
	cert := ps.client.TLS()
	cfg := upstream.ProbeConfig{URL: &url.URL{Scheme: "https", Host: hostA}, Address: up.Addr, RootCAs: ps.ca.Pool(),
		Certificate: &cert, Timeouts: proxy.Timeouts{Dial: 5 * time.Second}}
	cfg.Via = &egress.Proxy{URL: open.url()}
	if res := upstream.Probe(context.Background(), cfg); res.Outcome != upstream.OutcomeAccepted {
		t.Errorf("through the egress proxy: outcome %s (%v), want accepted", res.Outcome, res.Err)
	}
	cfg.Via = &egress.Proxy{URL: closed.url()}
	res := upstream.Probe(context.Background(), cfg)
	if res.Outcome != upstream.OutcomeTCPFailed || res.Err == nil || !strings.Contains(res.Err.Error(), "403 Forbidden") {
		t.Errorf("refused: outcome %s (%v), want tcp_failed naming 403 Forbidden", res.Outcome, res.Err)
	}
	if targets, _ := open.seen(); len(targets) != 1 {
		t.Errorf("the open egress proxy saw %d CONNECTs, want 1", len(targets))
	}
}
