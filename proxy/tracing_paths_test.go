package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
	"go.opentelemetry.io/otel/codes"
)

// TestTraceTunnels: a CONNECT is a server span of its own; each request
// inside the tunnel, plain (port 80) or intercepted (connect: mitm), is
// another, continuing its own traceparent, with its sends below it.
func TestTraceTunnels(t *testing.T) {
	for _, kind := range tunnelKinds {
		t.Run(kind.name, func(t *testing.T) {
			tp, rec := newTracer(t)
			ps := newPKI(t)
			up := startStandin(t, ps, nil)
			e := startProxy(t, testConfig{Tracer: tp, MITM: &leafSource{ca: ps.ca},
				Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
			c := kind.open(t, e, ps, hostA)
			fmt.Fprintf(c, "GET /v1/tunnelled?card=%s HTTP/1.1\r\nHost: %s\r\nTraceparent: %s\r\nX-Api-Key: %s\r\n\r\n",
				secretQuery, hostA, clientParent, secretHeader)
			if resp := readResponse(t, c); resp.StatusCode != http.StatusOK {
				t.Fatalf("inside the tunnel: %d", resp.StatusCode)
			}
			got := rec.servers(t, 2)
			connect, inner := got[0], got[1]
			wantAttrs(t, connect, map[string]string{"http.request.method": "CONNECT", "payrails.proxy.mode": "connect",
				"http.response.status_code": "200", "server.address": hostA})
			if connect.Name() != "CONNECT" || rec.shape(connect) != "CONNECT" {
				t.Errorf("CONNECT span %s", rec.shape(connect))
			}
			mode := proxy.ModeTunnel
			if kind.name == "plain" {
				mode = proxy.ModePlainTunnel
			}
			wantAttrs(t, inner, map[string]string{"payrails.proxy.mode": string(mode), "url.path": "/v1/tunnelled",
				"http.response.status_code": "200", "payrails.proxy.attempts": "1"})
			if inner.SpanContext().TraceID().String() != clientTraceID {
				t.Errorf("the tunnelled request's span is in trace %s, want the client's", inner.SpanContext().TraceID())
			}
			if got := rec.shape(inner); got != "GET[GET[connect tls handshake first byte]]" {
				t.Errorf("span tree %s", got)
			}
			rec.noSecrets(t)
		})
	}
}

// TestTraceRetry: a GET whose first send the upstream never answered is
// sent again: two send spans, the first in error, the second with
// http.request.resend_count, each on a connection of its own.
func TestTraceRetry(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	up := startRetryUpstream(t, ps, firstThen(cutBeforeAnswer))
	e := startProxy(t, testConfig{Tracer: tp, Retry: testRetry(),
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodGet, "http://"+hostA+"/v1/retried", true))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	srv := rec.servers(t, 1)[0]
	wantAttrs(t, srv, map[string]string{"payrails.proxy.attempts": "2", "payrails.proxy.error_kind": ""})
	if got, want := rec.shape(srv), "GET[GET[connect tls handshake] GET[connect tls handshake first byte]]"; got != want {
		t.Errorf("span tree %s, want %s", got, want)
	}
	sends := rec.children(srv, http.MethodGet)
	if len(sends) != 2 {
		t.Fatalf("%d sends", len(sends))
	}
	if sends[0].Status().Code != codes.Error || !strings.HasPrefix(sends[0].Status().Description, string(failure.KindUpstreamError)) &&
		!strings.HasPrefix(sends[0].Status().Description, "upstream_") {
		t.Errorf("first send status %+v, want an error naming the kind", sends[0].Status())
	}
	wantAttrs(t, sends[0], map[string]string{"http.request.resend_count": "", "http.response.status_code": ""})
	wantAttrs(t, sends[1], map[string]string{"http.request.resend_count": "1", "http.response.status_code": "200"})
	rec.noSecrets(t)
}

// TestTraceFailover: a refused certificate is replayed on the other one:
// two sends, each naming the certificate it presented, the first refused.
func TestTraceFailover(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	rev := &refusals{}
	up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = true; o.Refuse = rev.refuse })
	src := &candidates{changed: make(chan struct{})}
	older, inUse := newClientCert(t, ps.ca, "older"), newClientCert(t, ps.ca, "in-use")
	src.set(inUse, older)
	e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, src)}})
	rev.revoke(inUse)
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodPost, "http://"+hostA+"/v1/payments", true))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	srv := rec.servers(t, 1)[0]
	wantAttrs(t, srv, map[string]string{"payrails.proxy.attempts": "2", "payrails.certificate.serial": serialOfLeaf(older)})
	sends := rec.children(srv, http.MethodPost)
	if len(sends) != 2 {
		t.Fatalf("%d sends, want 2: %s", len(sends), rec.shape(srv))
	}
	wantAttrs(t, sends[0], map[string]string{"payrails.certificate.serial": serialOfLeaf(inUse), "error.type": string(failure.KindCertificateRefused)})
	wantAttrs(t, sends[1], map[string]string{"payrails.certificate.serial": serialOfLeaf(older), "http.response.status_code": "200"})
	if d := sends[0].Status().Description; sends[0].Status().Code != codes.Error || !strings.HasPrefix(d, string(failure.KindCertificateRefused)) {
		t.Errorf("refused send status %+v", sends[0].Status())
	}
	for i, s := range sends {
		hs := rec.children(s, tracing.SpanHandshake)
		if len(hs) != 1 || attrs(hs[0])["payrails.certificate.serial"] != attrs(s)["payrails.certificate.serial"] {
			t.Errorf("send %d: handshake spans %v", i+1, hs)
		}
	}
	rec.noSecrets(t)
}

// TestTraceDeadUpstream: nothing listens: every send is a failed connect,
// the server span an error with the kind, and no handshake is shown.
func TestTraceDeadUpstream(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	rt := testRetry()
	rt.Attempts = 2
	e := startProxy(t, testConfig{Tracer: tp, Retry: rt,
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, closedPort(t), ps, sourceOf(ps.client))}})
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodGet, "http://"+hostA+"/v1/x", true))
	wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindUpstreamUnreachable)
	srv := rec.servers(t, 1)[0]
	kind := string(failure.KindUpstreamUnreachable)
	wantAttrs(t, srv, map[string]string{"payrails.proxy.error_kind": kind, "payrails.proxy.attempts": "2",
		"http.response.status_code": "502", "error.type": kind})
	if srv.Status().Code != codes.Error {
		t.Errorf("server status %+v", srv.Status())
	}
	if got, want := rec.shape(srv), "GET[GET[connect] GET[connect]]"; got != want {
		t.Errorf("span tree %s, want %s", got, want)
	}
	for _, s := range rec.children(srv, http.MethodGet) {
		for _, c := range rec.children(s, tracing.SpanConnect) {
			if c.Status().Code != codes.Error || c.Status().Description != kind {
				t.Errorf("connect status %+v, want %s", c.Status(), kind)
			}
		}
	}
	rec.noSecrets(t)
}

// TestTraceTokenWait: a request that waits for the access token shows the
// wait; one that finds the token ready shows none; the token never shows.
func TestTraceTokenWait(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	api := startStandin(t, ps, func(o *standin.Options) {
		o.RequireToken, o.ClientID = true, tokenClient
		o.Secret = func() string { return tokenSecret }
	})
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secretFile, []byte(tokenSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	uc := upstreamConfig("live", hostA, api.Addr, ps, sourceOf(ps.client))
	uc.Token = &upstream.TokenConfig{ClientID: tokenClient, SecretSource: "test", Secret: func() ([]byte, error) {
		<-release // the first fetch waits for the request below to be waiting
		return os.ReadFile(secretFile)
	}}
	e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{uc}})
	// Registered after startProxy's, so run before it: a failure before letGo
	// must not leave the fetch waiting, which the proxy's cleanup waits for.
	t.Cleanup(letGo)
	c := e.forwardClient(t)
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+hostA+"/v1/x", nil)
		resp, err := c.Do(req)
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, "a request waiting for the token", func() bool {
		buf := make([]byte, 1<<20)
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "token.(*Manager).Wait")
	})
	letGo()
	if status := <-done; status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	resp, body := get(t, c, "http://"+hostA+"/v1/y")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	srv := rec.servers(t, 2)
	if got := rec.shape(srv[0]); !strings.HasPrefix(got, "GET["+tracing.SpanToken+" GET") {
		t.Errorf("first request's span tree %s, want the token wait first", got)
	}
	if got := rec.shape(srv[1]); got != "GET[GET]" {
		t.Errorf("second request's span tree %s, want no token span", got)
	}
	for _, sp := range rec.Ended() {
		if text := fmt.Sprint(sp.Attributes(), sp.Status()); strings.Contains(text, tokenLogWord) || strings.Contains(text, "eyJ") {
			t.Errorf("span %q carries a token or the secret: %s", sp.Name(), text)
		}
	}
}

// TestTraceVia: through an egress proxy the connect span is the tunnel
// and names the egress proxy; the handshake follows it.
func TestTraceVia(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	egressProxy := startTunneller(t, func(string) bool { return true })
	uc := upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))
	uc.Via = &egress.Proxy{URL: egressProxy.url()}
	e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{uc}})
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodGet, "http://"+hostA+"/v1/via", true))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	srv := rec.servers(t, 1)[0]
	if got, want := rec.shape(srv), "GET[GET[connect tls handshake first byte]]"; got != want {
		t.Fatalf("span tree %s, want %s", got, want)
	}
	connect := rec.children(rec.children(srv, http.MethodGet)[0], tracing.SpanConnect)[0]
	wantAttrs(t, connect, map[string]string{"payrails.proxy.via": egressProxy.url().Host, "server.address": hostA})
	rec.noSecrets(t)
}
