package upstream

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// TestNotRetried is the retry policy's table, without sockets: which
// failed requests may be sent again.
func TestNotRetried(t *testing.T) {
	rt := config.DefaultRetry()
	post := request{method: "POST", hasBody: true, kept: true}
	keyedPost := request{method: "POST", keyed: true, hasBody: true, kept: true}
	streamedKeyed := request{method: "POST", keyed: true, hasBody: true}
	get := request{method: "GET"}
	getWithBody := request{method: "GET", hasBody: true, kept: true}
	put := request{method: "PUT", hasBody: true, kept: true}
	tests := []struct {
		name      string
		r         request
		neverSent bool
		sends     int
		want      string // a word of the reason; "" when it may be sent again
	}{
		{"keyed POST", keyedPost, false, 1, ""},
		{"keyed POST, attempts spent", keyedPost, false, rt.Attempts, "attempts made"},
		{"keyed POST, body streamed", streamedKeyed, false, 1, "max_body"},
		{"POST without a key", post, false, 1, "without an idempotency key"},
		{"POST without a key, never sent", post, true, 1, ""},
		{"GET", get, false, 1, ""},
		{"GET with a body", getWithBody, false, 1, "GET with a body"},
		{"PUT with a body, no key", put, false, 1, "PUT with a body"},
		{"DELETE", request{method: "DELETE"}, false, 1, ""},
		{"PATCH without a key", request{method: "PATCH"}, false, 1, "PATCH without an idempotency key"},
	}
	for _, tt := range tests {
		got := notRetried(rt, tt.r, tt.neverSent, tt.sends)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: notRetried = %q, want %q", tt.name, got, tt.want)
		}
	}
	off := rt
	off.Attempts = 1
	if got := notRetried(off, keyedPost, false, 1); !strings.Contains(got, "retries are off") {
		t.Errorf("retry.attempts 1: %q", got)
	}
}

// TestReplays: a refusal is replayed once, when its body can be sent
// again; a 401 to the injected token only when a second send cannot
// double the request.
func TestReplays(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		r                    request
		replayed             bool
		replay, newTokenSend bool
	}{
		{"POST without a key, kept body", request{method: "POST", hasBody: true, kept: true}, false, true, false},
		{"POST without a key, replayed already", request{method: "POST", hasBody: true, kept: true}, true, false, false},
		{"POST, streamed body", request{method: "POST", hasBody: true}, false, false, false},
		{"keyed POST, kept body", request{method: "POST", keyed: true, hasBody: true, kept: true}, false, true, true},
		{"keyed POST, streamed body", request{method: "POST", keyed: true, hasBody: true}, false, false, false},
		{"GET", request{method: "GET"}, false, true, true},
		{"DELETE", request{method: "DELETE"}, false, true, true},
	} {
		if got := mayReplay(tt.r, tt.replayed); got != tt.replay {
			t.Errorf("%s: mayReplay = %v, want %v", tt.name, got, tt.replay)
		}
		if got := mayResendWithNewToken(tt.r); got != tt.newTokenSend {
			t.Errorf("%s: mayResendWithNewToken = %v, want %v", tt.name, got, tt.newTokenSend)
		}
	}
}

// TestAnswered: which answers a keyed request is sent again for, and
// under which reason; never an un-keyed one's.
func TestAnswered(t *testing.T) {
	resp := func(status int, ctype, body string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ctype}},
			Body: io.NopCloser(strings.NewReader(body))}
	}
	keyed, unkeyed := request{method: "POST", keyed: true}, request{method: "POST"}
	for _, tt := range []struct {
		name string
		r    request
		resp *http.Response
		want string
	}{
		{"Payrails service.unavailable", keyed, resp(503, "application/json", `{"errors":[{"code":"service.unavailable"}]}`), retryPayrails},
		{"Payrails request.timeout", keyed, resp(504, "application/json", `{"errors":[{"code":"request.timeout"}]}`), retryPayrails},
		{"Payrails 503 of another code", keyed, resp(503, "application/json", `{"errors":[{"code":"request.conflict"}]}`), ""},
		{"JSON 502", keyed, resp(502, "application/json", `{"errors":[{"code":"service.unavailable"}]}`), ""},
		{"an edge's 502 page", keyed, resp(502, "text/html", "<html><title>502 Bad Gateway</title></html>"), retryEdge},
		{"an edge's 503 page, no key", unkeyed, resp(503, "text/html", "<html></html>"), ""},
		{"200", keyed, resp(200, "application/json", "{}"), ""},
		{"500", keyed, resp(500, "application/json", `{"errors":[{"code":"service.unavailable"}]}`), ""},
	} {
		if got := answered(tt.r, tt.resp); got != tt.want {
			t.Errorf("%s: answered = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestPause: the back-off grows and stays under max_backoff; Retry-After
// lengthens it, and beyond max_backoff stops the retry.
func TestPause(t *testing.T) {
	rt := config.Retry{Attempts: 4, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n := 1; n <= 6; n++ {
		if d := backoff(rt, n); d < 0 || d > rt.MaxBackoff {
			t.Errorf("backoff(%d) = %s, outside 0..%s", n, d, rt.MaxBackoff)
		}
	}
	resp := &http.Response{Header: http.Header{"Retry-After": {"1"}}}
	if wait, why := pause(rt, resp, 1); why != "" || wait != time.Second {
		t.Errorf("Retry-After 1: wait %s, %q; want 1s", wait, why)
	}
	resp.Header.Set("Retry-After", "5")
	if _, why := pause(rt, resp, 1); !strings.Contains(why, "Retry-After") {
		t.Errorf("Retry-After beyond max_backoff: %q, want a refusal naming it", why)
	}
}
