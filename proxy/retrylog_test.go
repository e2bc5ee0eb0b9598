package proxy_test

import (
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
)

// What the proxy's retries look like from outside: Retry-After, the added
// idempotency key, the limits of retry.attempts and retry.max_body, and
// what the answer and the request log line say (issue 17, point 5).

// TestRetryAfter: a keyed request that got Payrails' retryable answer waits
// as long as its Retry-After asks, when that is within retry.max_backoff;
// beyond it, the answer goes to the client as it came and the log line says
// why it was not sent again.
func TestRetryAfter(t *testing.T) {
	rt := testRetry()
	rt.MaxBackoff = time.Second
	unavailable := func(after string) answer {
		return payrailsJSON(503, "service.unavailable", "e-ra", "Retry-After: "+after)
	}
	t.Run("within retry.max_backoff", func(t *testing.T) {
		e, up, _ := retryEnv(t, rt, firstThen(unavailable("1")))
		r := keyedPOST
		r.path = "/v1/retry-after"
		got := sendVia(t, e.forwardClient(t), r)
		arr := up.arrivals(r.path)
		if got.status != 200 || got.attempts != "2" || len(arr) != 2 {
			t.Fatalf("client got %d with %s %q after %d sends, want 200 after 2", got.status, upstream.HeaderAttempts, got.attempts, len(arr))
		}
		gap := arr[1].at.Sub(arr[0].at)
		t.Logf("Retry-After: 1 with retry.max_backoff 1s: sent again after %s", gap.Round(time.Millisecond))
		if gap < time.Second {
			t.Errorf("sent again %s after the answer asked to wait 1s", gap)
		}
	})
	for _, tt := range []struct{ name, after string }{
		{"seconds beyond retry.max_backoff", "2"},
		{"a date beyond retry.max_backoff", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, up, _ := retryEnv(t, rt, firstThen(unavailable(tt.after)))
			r := keyedPOST
			r.path = "/v1/retry-after"
			got := sendVia(t, e.forwardClient(t), r)
			if n := len(up.arrivals(r.path)); got.status != 503 || got.kind != "" || n != 1 || !strings.Contains(got.body, `"service.unavailable"`) {
				t.Errorf("client got %d %q %s after %d sends, want the upstream's 503 after 1", got.status, got.kind, got.body, n)
			}
			line := requestLine(t, e, r.path)
			if why, _ := line["not_retried"].(string); !strings.Contains(why, "Retry-After") || !strings.Contains(why, "retry.max_backoff") {
				t.Errorf("log line not_retried = %q, want it to name Retry-After and retry.max_backoff", why)
			}
		})
	}
}

// TestAddIdempotencyKey: with retry.add_idempotency_key a POST or PATCH
// without a key gets a fresh one, the same on every send, and the client
// learns it from the answer; a request with its own key keeps it, and
// other methods get none.
func TestAddIdempotencyKey(t *testing.T) {
	rt := testRetry()
	rt.AddIdempotencyKey = true
	seen := map[string]bool{} // the paths that arrived
	var mu sync.Mutex
	e, up, _ := retryEnv(t, rt, func(i int, a arrival, c *tls.Conn) bool {
		mu.Lock()
		first := !seen[a.path]
		seen[a.path] = true
		mu.Unlock()
		if first && a.method != http.MethodHead { // every request's first send is cut
			return false
		}
		return answerOKJSON(i, a, c)
	})
	c := e.forwardClient(t)
	keys := map[string]string{}
	for _, r := range []request{
		{method: "POST", path: "/v1/post", body: payment},
		{method: "PATCH", path: "/v1/patch", body: payment},
		{method: "POST", path: "/v1/another-post", body: payment},
	} {
		got := sendVia(t, c, r)
		arr := up.arrivals(r.path)
		if got.status != 200 || got.attempts != "2" || len(arr) != 2 {
			t.Fatalf("%s %s: %d, %s %q, %d sends; want 200 after 2", r.method, r.path, got.status, upstream.HeaderAttempts, got.attempts, len(arr))
		}
		key := got.header.Get("X-Idempotency-Key")
		if b, err := hex.DecodeString(key); err != nil || len(b) != 16 {
			t.Errorf("%s %s: the answer's X-Idempotency-Key %q is not a fresh 128-bit key", r.method, r.path, key)
		}
		for i, a := range arr {
			if a.key != key {
				t.Errorf("%s %s: send %d carried key %q, the answer says %q", r.method, r.path, i+1, a.key, key)
			}
		}
		if other, dup := keys[key]; dup {
			t.Errorf("%s and %s were given the same key %q", other, r.path, key)
		}
		keys[key] = r.path
	}
	own := sendVia(t, c, request{method: "POST", path: "/v1/own-key", key: "merchant-key-1", body: payment})
	for _, a := range up.arrivals("/v1/own-key") {
		if a.key != "merchant-key-1" {
			t.Errorf("a request with its own key arrived with %q", a.key)
		}
	}
	if k := own.header.Get("X-Idempotency-Key"); k != "" {
		t.Errorf("the answer to a request with its own key carries X-Idempotency-Key %q", k)
	}
	get := sendVia(t, c, request{method: "GET", path: "/v1/get"})
	for _, a := range up.arrivals("/v1/get") {
		if a.key != "" {
			t.Errorf("a GET was given the key %q", a.key)
		}
	}
	if k := get.header.Get("X-Idempotency-Key"); k != "" || get.status != 200 {
		t.Errorf("GET: %d, X-Idempotency-Key %q on the answer", get.status, k)
	}
}

// TestAddIdempotencyKeyKeepsTheClients: with retry.idempotency_headers not
// naming X-Idempotency-Key, a request that carries one anyway (as Payrails'
// SDKs send it) keeps it: the proxy never replaces a client's key, or the
// client's own retries would no longer be deduplicated.
func TestAddIdempotencyKeyKeepsTheClients(t *testing.T) {
	rt := testRetry()
	rt.AddIdempotencyKey, rt.IdempotencyHeaders = true, []string{"Idempotency-Key"}
	e, up, _ := retryEnv(t, rt, answerOKJSON)
	got := sendVia(t, e.forwardClient(t), request{method: "POST", path: "/v1/sdk", key: "sdk-key-1", body: payment})
	arr := up.arrivals("/v1/sdk")
	if got.status != 200 || len(arr) != 1 || arr[0].key != "sdk-key-1" {
		t.Fatalf("POST with the client's X-Idempotency-Key: %d, arrivals %+v; want one, with key sdk-key-1", got.status, arr)
	}
	if k := got.header.Get("X-Idempotency-Key"); k != "" {
		t.Errorf("the answer carries an added key %q", k)
	}
}

// TestRetryLimits: retry.attempts bounds the sends, retry.max_body the
// bodies kept for another one; the client's error says which stopped it.
func TestRetryLimits(t *testing.T) {
	for _, tt := range []struct {
		name      string
		attempts  int
		maxBody   int64
		wantSends int
		wantWhy   string
	}{
		{"4 attempts", 4, 1 << 20, 4, "not retried: 4 attempts made (retry.attempts)"},
		{"retries off", 1, 1 << 20, 1, "not retried: retries are off (retry.attempts: 1)"},
		{"body larger than retry.max_body", 4, 10, 1, "larger than retry.max_body (10 bytes)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt := testRetry()
			rt.Attempts, rt.MaxBody = tt.attempts, tt.maxBody
			e, up, reg := retryEnv(t, rt, cutBeforeAnswer)
			r := keyedPOST
			r.path = "/v1/limits"
			got := sendVia(t, e.forwardClient(t), r)
			if n := len(up.arrivals(r.path)); n != tt.wantSends {
				t.Errorf("the upstream got the request %d times, want %d", n, tt.wantSends)
			}
			wantProxyError(t, &http.Response{StatusCode: got.status, Header: got.header}, []byte(got.body), http.StatusBadGateway, failure.KindUpstreamError)
			if !strings.Contains(got.body, tt.wantWhy) {
				t.Errorf("detail %s lacks %q", got.body, tt.wantWhy)
			}
			wantAttempts := ""
			if tt.wantSends > 1 {
				wantAttempts = fmt.Sprint(tt.wantSends)
			}
			line := requestLine(t, e, r.path)
			if got.attempts != wantAttempts || (tt.wantSends > 1 && line["attempts"] != int64(tt.wantSends)) {
				t.Errorf("%s = %q and log attempts = %v, want %d sends", upstream.HeaderAttempts, got.attempts, line["attempts"], tt.wantSends)
			}
			if why, _ := line["not_retried"].(string); !strings.Contains(why, tt.wantWhy) {
				t.Errorf("log not_retried = %q, want %q", why, tt.wantWhy)
			}
			if n := counter(t, reg, "payrails_proxy_upstream_retries_total", map[string]string{"upstream": "live", "reason": "connection_lost"}); n != float64(tt.wantSends-1) {
				t.Errorf("retries_total{reason=connection_lost} = %v, want %d", n, tt.wantSends-1)
			}
		})
	}
}

// TestPOSTWithoutKeySentOnce: a POST without an idempotency key reaches
// the upstream at most once, whatever the upstream does and however many
// attempts retry.attempts allows, on either of the proxy's clients.
func TestPOSTWithoutKeySentOnce(t *testing.T) {
	rt := testRetry()
	rt.Attempts = 10
	for _, tt := range []struct {
		name string
		ans  answer
	}{
		{"closed before any answer", cutBeforeAnswer},
		{"status line, then closed", raw("HTTP/1.1 200 OK\r\nConnection: close\r\n")},
		{"Payrails 503 service.unavailable", payrailsJSON(503, "service.unavailable", "e-1")},
		{"Payrails 504 request.timeout", payrailsJSON(504, "request.timeout", "e-2", "Retry-After: 0")},
		{"edge 502 page", edgePage(502)},
	} {
		for _, r := range []request{unkeyedPOST, unkeyedPOSTChunked} {
			t.Run(tt.name+"/"+r.String(), func(t *testing.T) {
				e, up, _ := retryEnv(t, rt, tt.ans)
				r.path = "/v1/once"
				got := sendVia(t, e.forwardClient(t), r)
				if n := len(up.arrivals(r.path)); n != 1 || got.attempts != "" {
					t.Errorf("sent %d times (%s %q), want once", n, upstream.HeaderAttempts, got.attempts)
				}
			})
		}
	}
}

// TestAPIErrorInLogLine: when the API answers an error in Payrails' shape,
// the request line names its code and id, read from the first 4 KiB as the
// body streams to the client, which gets every byte; a long body cut in the
// middle of a value at 4 KiB still gives them. Other JSON gives neither.
func TestAPIErrorInLogLine(t *testing.T) {
	long := `{"errors":[{"id":"err-long-7","code":"card.declined","detail":"` + strings.Repeat("declined ", 1200) + `"}]}`
	chunked := func(status int, body string) answer {
		return func(_ int, _ arrival, c *tls.Conn) bool {
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n", status, http.StatusText(status))
			for rest := body; rest != ""; { // in pieces of 1000 bytes, as a body streams
				n := min(len(rest), 1000)
				fmt.Fprintf(c, "%x\r\n%s\r\n", n, rest[:n])
				rest = rest[n:]
			}
			io.WriteString(c, "0\r\n\r\n")
			return true
		}
	}
	for _, tt := range []struct {
		name, path string
		ans        answer
		body       string // what the client must get, whole
		code, id   string // "" for none
	}{
		{"Payrails 402", "/v1/declined", payrailsJSON(402, "payment.declined", "err-402"), "", "payment.declined", "err-402"},
		{"10 KiB, cut at 4 KiB", "/v1/long", rawJSON(422, long), long, "card.declined", "err-long-7"},
		{"10 KiB chunked, cut at 4 KiB", "/v1/long-chunked", chunked(422, long), long, "card.declined", "err-long-7"},
		{"JSON not in Payrails' shape", "/v1/other", rawJSON(404, `{"message":"not found","code":"x"}`), "", "", ""},
		{"success in the errors shape", "/v1/ok", rawJSON(200, `{"errors":[{"id":"no","code":"no"}]}`), "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _, _ := retryEnv(t, testRetry(), tt.ans)
			got := sendVia(t, e.forwardClient(t), request{method: "POST", path: tt.path, key: "k", body: payment})
			if got.err != nil || got.kind != "" || (tt.body != "" && got.body != tt.body) {
				t.Errorf("client got %d %q, %d bytes (err %v), want the upstream's answer whole", got.status, got.kind, len(got.body), got.err)
			}
			line := requestLine(t, e, tt.path)
			if line["api_error_code"] != nilIfEmpty(tt.code) || line["api_error_id"] != nilIfEmpty(tt.id) {
				t.Errorf("log api_error_code %v api_error_id %v, want %q %q", line["api_error_code"], line["api_error_id"], tt.code, tt.id)
			}
		})
	}
	t.Run("retryable answers to the last attempt", func(t *testing.T) {
		id := 0
		e, up, _ := retryEnv(t, testRetry(), func(i int, a arrival, c *tls.Conn) bool {
			id++
			return payrailsJSON(503, "service.unavailable", fmt.Sprint("err-", id))(i, a, c)
		})
		got := sendVia(t, e.forwardClient(t), request{method: "POST", path: "/v1/unavailable", key: "k", body: payment})
		n := len(up.arrivals("/v1/unavailable"))
		if n != 4 || got.status != 503 || got.kind != "" || got.attempts != "4" {
			t.Errorf("client got %d %q %s %q after %d sends, want Payrails' 503 after 4", got.status, got.kind, upstream.HeaderAttempts, got.attempts, n)
		}
		line := requestLine(t, e, "/v1/unavailable")
		if line["api_error_code"] != "service.unavailable" || line["api_error_id"] != "err-4" || line["attempts"] != int64(4) ||
			line["not_retried"] != "not retried: 4 attempts made (retry.attempts)" {
			t.Errorf("log line %v: want the last answer's code and id (err-4), attempts 4 and why it stopped", line)
		}
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
