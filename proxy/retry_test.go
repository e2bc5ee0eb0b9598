package proxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The retry policy (DESIGN.md § Retries, issue 17), seen from outside: what
// the upstream receives, how often, and what the client and the operator
// are told.

// arrival is one request as the upstream read it.
type arrival struct {
	method, path, key, body string
	at                      time.Time
}

// answer writes the upstream's answer to the i-th request it read (from 1,
// over all connections), a, on c; false ends the connection.
type answer func(i int, a arrival, c *tls.Conn) bool

// retryUpstream is a scripted upstream that reads every request whole and
// answers it as its script says, recording what arrived.
type retryUpstream struct {
	*tlsscript.Server
	mu  sync.Mutex
	got []arrival
}

func startRetryUpstream(t testing.TB, ps *pkiSet, ans answer) *retryUpstream {
	t.Helper()
	return startRetryUpstreamAt(t, ps, "127.0.0.1:0", ans)
}

// startRetryUpstreamAt is startRetryUpstream listening on addr.
func startRetryUpstreamAt(t testing.TB, ps *pkiSet, addr string, ans answer) *retryUpstream {
	t.Helper()
	u := &retryUpstream{}
	u.Server = startScriptedAt(t, ps, addr, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			a := arrival{req.Method, req.URL.Path, req.Header.Get("X-Idempotency-Key"), string(body), time.Now()}
			u.mu.Lock()
			u.got = append(u.got, a)
			i := len(u.got)
			u.mu.Unlock()
			if !ans(i, a, c) {
				c.Close()
				return
			}
		}
	})
	return u
}

// arrivals returns the requests for path that arrived, in order. (The
// proxy may also ask the upstream about its certificate after a failure it
// cannot explain: a HEAD of the verification path, not counted.)
func (u *retryUpstream) arrivals(path string) []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	var got []arrival
	for _, a := range u.got {
		if a.path == path {
			got = append(got, a)
		}
	}
	return got
}

// Answers of the scripts.
var (
	answerOKJSON answer = func(_ int, _ arrival, c *tls.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
		return true
	}
	// cutBeforeAnswer closes the connection after reading the request:
	// not one byte of an answer (an upstream restarting, the keep-alive race).
	cutBeforeAnswer answer = func(int, arrival, *tls.Conn) bool { return false }
)

// raw answers with the given response bytes, and closes the connection
// when the response says Connection: close.
func raw(resp string) answer {
	return func(_ int, _ arrival, c *tls.Conn) bool {
		io.WriteString(c, resp)
		return !strings.Contains(resp, "Connection: close")
	}
}

// payrailsJSON is an answer in Payrails' error shape.
func payrailsJSON(status int, code, id string, headers ...string) answer {
	body := fmt.Sprintf(`{"errors":[{"id":%q,"code":%q,"detail":"retry later","reason":"r","docUrl":"https://docs.payrails.com/"}]}`, id, code)
	return rawJSON(status, body, headers...)
}

func rawJSON(status int, body string, headers ...string) answer {
	h := ""
	for _, kv := range headers {
		h += kv + "\r\n"
	}
	return raw(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), h, len(body), body))
}

// edgePage is an HTML error page of an edge (a load balancer, a CDN) in
// front of the API.
func edgePage(status int) answer {
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	body := "<html><head><title>" + text + "</title></head><body><center><h1>" + text + "</h1></center></body></html>"
	return raw(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body))
}

// firstThen answers the first request with first, and every later one 200.
func firstThen(first answer) answer {
	return func(i int, a arrival, c *tls.Conn) bool {
		if i == 1 {
			return first(i, a, c)
		}
		return answerOKJSON(i, a, c)
	}
}

// testRetry is a retry block with the default policy and short pauses.
func testRetry() config.Retry {
	r := config.DefaultRetry()
	r.Backoff, r.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	return r
}

// retryEnv is a proxy with the retry block rt and metrics, in front of a
// retryUpstream answering as ans says.
func retryEnv(t testing.TB, rt config.Retry, ans answer) (*env, *retryUpstream, *prometheus.Registry) {
	t.Helper()
	ps := newPKI(t)
	up := startRetryUpstream(t, ps, ans)
	e, reg := retryEnvAt(t, rt, ps, up.Addr)
	return e, up, reg
}

// retryEnvAt is a proxy with the retry block rt and metrics, in front of
// the upstream at addr.
func retryEnvAt(t testing.TB, rt config.Retry, ps *pkiSet, addr string) (*env, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	// No connection cap in reach: TestRetryBudget's open load may hold
	// more connections than the default when the machine is slow, and a
	// client connection closed idle at the cap makes Go's client send its
	// GET again, which this file's tests would count as the proxy's.
	e := startProxy(t, testConfig{Retry: rt, Registry: reg, Timeouts: proxy.Timeouts{ResponseHeader: 10 * time.Second},
		Client:    proxy.ClientLimits{MaxConns: 1 << 16},
		Upstreams: []upstream.Config{upstreamConfig("live", hostA, addr, ps, sourceOf(ps.client))}})
	return e, reg
}

// request is what a test client sends.
type request struct {
	method, path, key, body string
	chunked                 bool // a body of unknown length: the Transport's way, not the fast path's
}

func (r request) String() string {
	s := r.method
	if r.body != "" {
		s += " with a body"
	}
	if r.chunked {
		s += " (chunked)"
	}
	if r.key != "" {
		s += ", keyed"
	}
	return s
}

// reply is what the client got.
type reply struct {
	status   int
	header   http.Header
	body     string
	err      error // a transport error, or the body breaking off
	kind     string
	attempts string
}

// sendVia sends r through the proxy in forward mode. The key goes in the
// lower-case spelling: Go's client treats a request with X-Idempotency-Key
// as replayable and would resend it itself when the proxy cuts a response;
// these tests are about what the proxy sends.
func sendVia(t testing.TB, c *http.Client, r request) reply {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // hides the length: sent chunked
		}
	}
	req, err := http.NewRequest(r.method, "http://"+hostA+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		req.Header["x-idempotency-key"] = []string{r.key}
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), err: err,
		kind: resp.Header.Get(failure.HeaderError), attempts: resp.Header.Get(upstream.HeaderAttempts)}
}

// requestLine waits for the request log line of path and returns its fields.
func requestLine(t testing.TB, e *env, path string) map[string]any {
	t.Helper()
	var line map[string]any
	waitFor(t, "the request line of "+path, func() bool {
		for _, l := range e.logs.FilterMessage("request").FilterField(zap.String("path", path)).All() {
			line = l.ContextMap()
			return true
		}
		return false
	})
	return line
}

// counter is the value of a counter of reg with the given labels (0 when absent).
func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

const payment = `{"amount":100,"currency":"EUR"}`

// The requests of the policy table, by what makes them safe to send again.
var (
	keyedPOST          = request{method: "POST", key: "pay-1", body: payment}
	keyedPOSTChunked   = request{method: "POST", key: "pay-1", body: payment, chunked: true}
	unkeyedPOST        = request{method: "POST", body: payment}
	unkeyedPOSTChunked = request{method: "POST", body: payment, chunked: true}
	plainGET           = request{method: "GET"}
	putWithBody        = request{method: "PUT", body: payment}
	plainDELETE        = request{method: "DELETE"}
)

// TestRetryPolicy: which failures and answers make the proxy send a
// request again, by kind of request: a keyed request after no answer began
// and after Payrails' retryable answers or an edge's 5xx page; an
// idempotent request without a body only after no answer began; a POST
// without a key, or an idempotent request with a body, never. Every other
// answer, JSON above all, passes to the client as it came, never
// reinterpreted.
func TestRetryPolicy(t *testing.T) {
	resend := map[request]int{keyedPOST: 2, keyedPOSTChunked: 2}
	never := map[request]int{}
	for _, tt := range []struct {
		name  string
		first answer
		// sends is how often each kind of request reaches the upstream when
		// the first send meets first and the second is answered 200; 1 when
		// not listed.
		sends map[request]int
	}{
		{"connection closed before any answer", cutBeforeAnswer,
			map[request]int{keyedPOST: 2, keyedPOSTChunked: 2, plainGET: 2, plainDELETE: 2}},
		{"Payrails 503 service.unavailable", payrailsJSON(503, "service.unavailable", "e-503"), resend},
		{"Payrails 504 request.timeout", payrailsJSON(504, "request.timeout", "e-504"), resend},
		{"Payrails 503 with another code", payrailsJSON(503, "internal.error", "e-other"), never},
		{"Payrails 500 internal.error", payrailsJSON(500, "internal.error", "e-500"), never},
		{"Payrails 502 JSON service.unavailable", payrailsJSON(502, "service.unavailable", "e-502"), never},
		{"503 JSON not in Payrails' shape", rawJSON(503, `{"message":"service.unavailable"}`), never},
		{"503 JSON code in another place", rawJSON(503, `{"error":{"code":"service.unavailable"}}`), never},
		{"Payrails 400 validation", payrailsJSON(400, "validation.failed", "e-400"), never},
		{"edge 502 page", edgePage(502), resend},
		{"edge 503 page", edgePage(503), resend},
		{"edge 504 page", edgePage(504), resend},
		{"edge 500 page", edgePage(500), never},
		{"503 plain text", raw("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ndown"), never},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []request{keyedPOST, keyedPOSTChunked, unkeyedPOST, unkeyedPOSTChunked, plainGET, putWithBody, plainDELETE} {
				t.Run(r.String(), func(t *testing.T) {
					checkPolicy(t, r, tt.first, max(tt.sends[r], 1))
				})
			}
		})
	}
}

// checkPolicy sends r once through a fresh proxy whose upstream meets the
// first send with first, and checks that the upstream got it wantSends
// times (the same key and body each time), and what the client and the
// log line were told.
func checkPolicy(t *testing.T, r request, first answer, wantSends int) {
	t.Helper()
	r.path = "/v1/policy"
	e, up, reg := retryEnv(t, testRetry(), firstThen(first))
	got := sendVia(t, e.forwardClient(t), r)
	arr := up.arrivals(r.path)
	if len(arr) != wantSends {
		t.Fatalf("the upstream got the request %d times, want %d", len(arr), wantSends)
	}
	for i, a := range arr {
		if a.method != r.method || a.key != r.key || a.body != r.body {
			t.Errorf("send %d arrived as %s key %q body %q, want %s key %q body %q", i+1, a.method, a.key, a.body, r.method, r.key, r.body)
		}
	}
	line := requestLine(t, e, r.path)
	retries := 0.0
	for _, reason := range []string{"connect", "tls", "connection_lost", "payrails_retryable", "edge_error"} {
		retries += counter(t, reg, "payrails_proxy_upstream_retries_total", map[string]string{"upstream": "live", "reason": reason})
	}
	if retries != float64(wantSends-1) {
		t.Errorf("payrails_proxy_upstream_retries_total sums to %v, want %d", retries, wantSends-1)
	}
	if wantSends > 1 {
		if got.err != nil || got.status != 200 || got.attempts != strconv.Itoa(wantSends) {
			t.Errorf("client got %d %s=%q (err %v), want 200 after %d sends", got.status, upstream.HeaderAttempts, got.attempts, got.err, wantSends)
		}
		if line["attempts"] != int64(wantSends) {
			t.Errorf("log line attempts = %v, want %d", line["attempts"], wantSends)
		}
		return
	}
	if got.attempts != "" || line["attempts"] != nil {
		t.Errorf("sent once, but %s = %q and the log line's attempts = %v", upstream.HeaderAttempts, got.attempts, line["attempts"])
	}
	if got.err != nil {
		t.Fatalf("client: %v", got.err)
	}
	if got.kind == "" {
		if got.status == 200 {
			t.Errorf("client got 200, want the upstream's failed answer passed on")
		}
		return // the upstream's answer, passed on as it came
	}
	// The proxy's own error: it says why it did not send the request again.
	why, _ := line["not_retried"].(string)
	if !strings.HasPrefix(why, "not retried: ") || !strings.Contains(got.body, why) {
		t.Errorf("%d %s: the detail %s and the log line's not_retried %q do not say why the request was not sent again",
			got.status, got.kind, got.body, why)
	}
}

// rawRequest is r as a forward-mode client writes it on the wire.
func rawRequest(r request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s http://%s%s HTTP/1.1\r\nHost: %s\r\n", r.method, hostA, r.path, hostA)
	if r.key != "" {
		fmt.Fprintf(&b, "x-idempotency-key: %s\r\n", r.key)
	}
	switch {
	case r.body == "":
	case r.chunked:
		fmt.Fprintf(&b, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(r.body), r.body)
		return b.String()
	default:
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(r.body))
	}
	return b.String() + "\r\n" + r.body
}

// TestResponseBeganNeverRetried: once any byte of an answer has come, the
// request is not sent again, keyed or not (issue 17: "a response that began
// is never retried"), whichever of the proxy's two HTTP/1.1 clients sent it.
// An answer whose headers broke off becomes the proxy's 502; one whose body
// broke off has been passed on, at least in part, and the client's
// connection is cut without the end of the body (or before the headers, when
// they were still in the proxy's buffer), so that no client takes a
// truncated body for a complete one.
func TestResponseBeganNeverRetried(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
		headers    bool // the headers arrived whole: the client gets them, then a broken body
	}{
		{"status line, then nothing", "HTTP/1.1 200 OK\r\n", false},
		{"headers cut", "HTTP/1.1 200 OK\r\nContent-Type: application/js", false},
		{"body shorter than its length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":\"pay", true},
		{"chunked body without its end", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n", true},
		{"error answer cut", "HTTP/1.1 402 Payment Required\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"errors\":[{\"id\":\"e-1\",", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []request{keyedPOST, keyedPOSTChunked, unkeyedPOST, plainGET} {
				t.Run(r.String(), func(t *testing.T) {
					r.path = "/v1/began"
					e, up, reg := retryEnv(t, testRetry(), firstThen(func(_ int, _ arrival, c *tls.Conn) bool {
						io.WriteString(c, tt.resp)
						return false
					}))
					checkBegan(t, e, r, tt.headers)
					if n := len(up.arrivals(r.path)); n != 1 {
						t.Errorf("the upstream got the request %d times, want 1: an answer that began was retried", n)
					}
					for _, reason := range []string{"connection_lost", "payrails_retryable", "edge_error"} {
						if n := counter(t, reg, "payrails_proxy_upstream_retries_total", map[string]string{"upstream": "live", "reason": reason}); n != 0 {
							t.Errorf("retries_total{reason=%q} = %v, want 0", reason, n)
						}
					}
				})
			}
		})
	}
}

// checkBegan sends r on a connection of its own and checks what came back:
// the proxy's 502 when the headers broke off, else the upstream's headers,
// a body that fails to read to its end, and the connection closed.
func checkBegan(t *testing.T, e *env, r request, headers bool) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, rawRequest(r))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil && !headers {
		t.Fatalf("no response: %v", err)
	}
	if err != nil {
		// Cut before the headers left the proxy's buffer: the client got
		// nothing it could take for an answer.
		checkCut(t, br)
		return
	}
	body, bodyErr := io.ReadAll(resp.Body)
	if !headers {
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != string(failure.KindUpstreamError) || bodyErr != nil {
			t.Errorf("got %d %s (body error %v): %s; want the proxy's 502 %s", resp.StatusCode,
				resp.Header.Get(failure.HeaderError), bodyErr, body, failure.KindUpstreamError)
		}
		return
	}
	if resp.Header.Get(failure.HeaderError) != "" || resp.Header.Get(upstream.HeaderAttempts) != "" {
		t.Errorf("the upstream's headers came with %s %q and %s %q", failure.HeaderError, resp.Header.Get(failure.HeaderError),
			upstream.HeaderAttempts, resp.Header.Get(upstream.HeaderAttempts))
	}
	if bodyErr == nil {
		t.Errorf("status %d: the body %q read to a clean end: a truncated body presented as complete", resp.StatusCode, body)
	}
	checkCut(t, br)
}

// checkCut checks that the proxy closed the client's connection.
func checkCut(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("after the broken answer the client connection is still open (read %d, %v): want it cut", n, err)
	}
}

// TestNeverSentIsSentOnce: a request whose connection could not be opened
// (refused, or a failed TLS handshake) was never sent, so trying again
// sends it once, not twice: even a POST without a key goes out when the
// upstream is back within the retries, and reaches it exactly once.
func TestNeverSentIsSentOnce(t *testing.T) {
	ps := newPKI(t)
	addr := closedPort(t)
	rt := testRetry()
	rt.Backoff, rt.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond // time to open the upstream between the sends
	e, reg := retryEnvAt(t, rt, ps, addr)
	done := make(chan reply, 1)
	go func() {
		done <- sendVia(t, e.forwardClient(t), request{method: "POST", path: "/v1/never-sent", body: payment})
	}()
	waitFor(t, "the first send's connection to be refused", func() bool {
		return counter(t, reg, "payrails_proxy_upstream_retries_total", map[string]string{"upstream": "live", "reason": "connect"}) >= 1
	})
	up := startRetryUpstreamAt(t, ps, addr, answerOKJSON)
	got := <-done
	if got.err != nil || got.status != http.StatusOK || got.attempts != "2" {
		t.Fatalf("un-keyed POST after a refused connection: %d %s=%q (%v), want 200 after 2 attempts", got.status, upstream.HeaderAttempts, got.attempts, got.err)
	}
	if n := len(up.arrivals("/v1/never-sent")); n != 1 {
		t.Errorf("the upstream got the POST %d times, want exactly once", n)
	}
}
