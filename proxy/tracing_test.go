package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tracing"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (issue 27), seen from outside: the span tree and attributes of
// each path, through the SDK's span recorder.

// The client's trace context, and values that must never reach a span.
const (
	clientTraceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID   = "00f067aa0ba902b7"
	clientParent   = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	secretHeader   = "hdr-secret-6d1f"
	secretQuery    = "qry-secret-88c2"
	secretBody     = "body-secret-41aa"
	secretBearer   = "bearer-secret-0b7e"
	secretUsername = "user-secret-55e0"
)

// spans records a test's spans.
type spans struct{ *tracetest.SpanRecorder }

// newTracer is a tracer provider that samples what its parent sampled and
// every root, and records every span.
func newTracer(t testing.TB) (trace.TracerProvider, spans) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, spans{sr}
}

// servers waits for n ended server spans and returns them, oldest first:
// a server span ends after the answer reached the client.
func (s spans) servers(t testing.TB, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var got []sdktrace.ReadOnlySpan
	waitFor(t, fmt.Sprintf("%d server spans", n), func() bool {
		got = got[:0]
		for _, sp := range s.Ended() {
			if sp.SpanKind() == trace.SpanKindServer {
				got = append(got, sp)
			}
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d server spans, want %d", len(got), n)
	}
	return got
}

// shape is the tree under root, children in order of start: "GET[GET[connect tls handshake first byte]]".
func (s spans) shape(root sdktrace.ReadOnlySpan) string {
	var kids []sdktrace.ReadOnlySpan
	for _, sp := range s.Ended() {
		if sp.Parent().SpanID() == root.SpanContext().SpanID() && sp.SpanContext().TraceID() == root.SpanContext().TraceID() {
			kids = append(kids, sp)
		}
	}
	if len(kids) == 0 {
		return root.Name()
	}
	slices.SortFunc(kids, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	var parts []string
	for _, k := range kids {
		parts = append(parts, s.shape(k))
	}
	return root.Name() + "[" + strings.Join(parts, " ") + "]"
}

// children are root's children named name, in order of start.
func (s spans) children(root sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var kids []sdktrace.ReadOnlySpan
	for _, sp := range s.Ended() {
		if sp.Parent().SpanID() == root.SpanContext().SpanID() && sp.Name() == name {
			kids = append(kids, sp)
		}
	}
	slices.SortFunc(kids, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return kids
}

// attrs are a span's attributes, values as text.
func attrs(sp sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// wantAttrs checks that sp has each attribute of want ("" means absent).
func wantAttrs(t testing.TB, sp sdktrace.ReadOnlySpan, want map[string]string) {
	t.Helper()
	got := attrs(sp)
	for k, v := range want {
		if g, ok := got[k]; v == "" && ok {
			t.Errorf("span %q: %s = %q, want none", sp.Name(), k, g)
		} else if v != "" && g != v {
			t.Errorf("span %q: %s = %q, want %q (all: %v)", sp.Name(), k, g, v, got)
		}
	}
}

// noSecrets: no span of the test carries a header value, the query, the
// body, a token or a password, in any name, attribute, event or status.
func (s spans) noSecrets(t testing.TB) {
	t.Helper()
	for _, sp := range s.Ended() {
		text := fmt.Sprint(sp.Name(), sp.Attributes(), sp.Events(), sp.Status(), sp.Links(), sp.Resource().Attributes())
		for _, secret := range []string{secretHeader, secretQuery, secretBody, secretBearer, secretUsername, "Bearer", "x-api-key"} {
			if strings.Contains(text, secret) {
				t.Errorf("span %q carries %q: %s", sp.Name(), secret, text)
			}
		}
	}
}

// secretRequest is a request full of what no span may show, with the
// client's traceparent when parent is true.
func secretRequest(t testing.TB, method, url string, parent bool) *http.Request {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"card":"` + secretBody + `"}`)
	}
	req, err := http.NewRequest(method, url+"?card="+secretQuery, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", secretHeader)
	req.Header.Set("Authorization", "Bearer "+secretBearer)
	req.Header.Set("Cookie", "session="+secretHeader)
	req.SetBasicAuth(secretUsername, secretHeader)
	if parent {
		req.Header.Set("Traceparent", clientParent)
	}
	return req
}

// TestTraceForward: a forward-mode request continues the client's trace;
// the first send opens a connection (connect, handshake and first byte
// below its span), the second reuses it (no children); the upstream sees
// exactly the client's traceparent, and the log line names the trace.
func TestTraceForward(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			tp, rec := newTracer(t)
			ps := newPKI(t)
			up := startStandin(t, ps, func(o *standin.Options) { o.DisableHTTP2 = !h2 })
			e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
			c := e.forwardClient(t)
			for i, method := range []string{http.MethodPost, http.MethodGet} {
				resp, body := do(t, c, secretRequest(t, method, "http://"+hostA+"/v1/payments", true))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
				}
				if got := decodeEcho(t, body).Header["Traceparent"]; !slices.Equal(got, []string{clientParent}) {
					t.Errorf("the upstream got traceparent %q, want exactly the client's %q", got, clientParent)
				}
				srv := rec.servers(t, i+1)[i]
				if got := srv.SpanContext().TraceID().String(); got != clientTraceID || srv.Parent().SpanID().String() != clientSpanID || !srv.Parent().IsRemote() {
					t.Errorf("server span in trace %s under %s, want the client's %s under %s", got, srv.Parent().SpanID(), clientTraceID, clientSpanID)
				}
				want := map[string]string{"http.request.method": method, "url.path": "/v1/payments", "server.address": hostA,
					"http.response.status_code": "200", "payrails.proxy.mode": "forward", "payrails.upstream": "live",
					"payrails.proxy.attempts": "1", "payrails.certificate.serial": serialOfLeaf(ps.client), "payrails.proxy.error_kind": ""}
				wantAttrs(t, srv, want)
				shape := method + "[" + method + "[connect tls handshake first byte]]"
				if i > 0 {
					shape = method + "[" + method + "]" // a pooled connection: nothing else to time
				}
				if got := rec.shape(srv); got != shape {
					t.Errorf("request %d: span tree %s, want %s", i+1, got, shape)
				}
				send := rec.children(srv, method)[0]
				wantAttrs(t, send, map[string]string{"server.address": hostA, "url.path": "/v1/payments",
					"http.response.status_code": "200", "payrails.certificate.serial": serialOfLeaf(ps.client)})
				if send.SpanKind() != trace.SpanKindClient || srv.Status().Code == codes.Error {
					t.Errorf("send span kind %v, server status %v", send.SpanKind(), srv.Status())
				}
			}
			first := rec.servers(t, 2)[0]
			hs := rec.children(rec.children(first, http.MethodPost)[0], tracing.SpanHandshake)
			if len(hs) != 1 {
				t.Fatal("no handshake span")
			}
			wantAttrs(t, hs[0], map[string]string{"tls.resumed": "false", "tls.protocol.version": "1.3",
				"payrails.certificate.serial": serialOfLeaf(ps.client)})
			lines := e.waitLogLines(t, "request", 2)
			for _, l := range lines {
				if got := l.ContextMap()["trace_id"]; got != clientTraceID {
					t.Errorf("log line trace_id %v, want %s", got, clientTraceID)
				}
			}
			rec.noSecrets(t)
		})
	}
}

// TestTraceGateway: a base-URL request without a traceparent starts a
// trace of its own; the upstream gets no trace header from the proxy.
func TestTraceGateway(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	resp, body := do(t, plainClient(t), secretRequest(t, http.MethodGet, e.url+"/v1/refunds", false))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, h := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if got := decodeEcho(t, body).Header[h]; got != nil {
			t.Errorf("the upstream got %s %q: the proxy must add no trace header", h, got)
		}
	}
	srv := rec.servers(t, 1)[0]
	if srv.Parent().IsValid() {
		t.Errorf("server span has parent %v, want a new trace", srv.Parent())
	}
	wantAttrs(t, srv, map[string]string{"payrails.proxy.mode": "gateway", "url.path": "/v1/refunds", "server.address": hostA})
	if got := rec.shape(srv); got != "GET[GET[connect tls handshake first byte]]" {
		t.Errorf("span tree %s", got)
	}
	if got := e.waitLogLines(t, "request", 1)[0].ContextMap()["trace_id"]; got != srv.SpanContext().TraceID().String() {
		t.Errorf("log line trace_id %v, want the span's %s", got, srv.SpanContext().TraceID())
	}
	rec.noSecrets(t)
}

// TestTraceRefusal: a refused request is one server span in error, with
// the failure's kind and the id the client's error body carries.
func TestTraceRefusal(t *testing.T) {
	tp, rec := newTracer(t)
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	e := startProxy(t, testConfig{Tracer: tp, Upstreams: []upstream.Config{upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodGet, "http://elsewhere.example/v1/x", true))
	wantProxyError(t, resp, body, http.StatusForbidden, "host_not_allowed")
	srv := rec.servers(t, 1)[0]
	if srv.Status().Code != codes.Error || srv.Status().Description != "host_not_allowed" {
		t.Errorf("status %+v, want an error host_not_allowed", srv.Status())
	}
	id := e.waitLogLines(t, "request", 1)[0].ContextMap()["id"]
	wantAttrs(t, srv, map[string]string{"payrails.proxy.error_kind": "host_not_allowed", "payrails.error.id": fmt.Sprint(id),
		"payrails.error.code": "proxy.host_not_allowed", "server.address": "elsewhere.example", "http.response.status_code": "403",
		"payrails.upstream": "", "payrails.proxy.attempts": ""})
	if !strings.Contains(string(body), fmt.Sprint(id)) {
		t.Errorf("error body %s lacks the span's error id %v", body, id)
	}
	if got := rec.shape(srv); got != "GET" {
		t.Errorf("span tree %s, want the server span alone", got)
	}
	rec.noSecrets(t)
}

// TestTraceOff: without a tracer provider nothing is traced and the log
// line has no trace_id, whatever the client sends.
func TestTraceOff(t *testing.T) {
	e, _, _ := simpleEnv(t)
	resp, body := do(t, e.forwardClient(t), secretRequest(t, http.MethodGet, "http://"+hostA+"/v1/x", true))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := decodeEcho(t, body).Header["Traceparent"]; !slices.Equal(got, []string{clientParent}) {
		t.Errorf("the upstream got traceparent %q, want the client's", got)
	}
	if v, ok := e.waitLogLines(t, "request", 1)[0].ContextMap()["trace_id"]; ok {
		t.Errorf("log line has trace_id %v with tracing off", v)
	}
}
