package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

const (
	tokenSecret  = "sk-test-0123456789"
	tokenNewer   = "sk-test-rotated-9876"
	tokenClient  = "cid"
	tokenLogWord = "sk-test-"
)

// tokenEnv is a stand-in that issues tokens and requires them, and a proxy
// that manages them with the secret in a file.
type tokenEnv struct {
	*env
	api        *standin.Server
	secretFile string
	accepted   atomic.Pointer[string] // the secret the stand-in accepts
	clock      *fakeClock             // the token manager's
}

// fakeClock is real time plus an offset a test advances, so that the token
// policy's real durations (token age, invalidation rate) pass at once.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func newTokenEnv(t *testing.T, ttl time.Duration) *tokenEnv {
	t.Helper()
	ps := newPKI(t)
	te := &tokenEnv{secretFile: filepath.Join(t.TempDir(), "client-secret"), clock: &fakeClock{}}
	s := tokenSecret
	te.accepted.Store(&s)
	if err := os.WriteFile(te.secretFile, []byte(tokenSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	te.api = startStandin(t, ps, func(o *standin.Options) {
		o.RequireToken, o.TokenTTL, o.ClientID = true, ttl, tokenClient
		o.Secret = func() string { return *te.accepted.Load() }
		o.Keys = &standin.KeyCounter{}
	})
	uc := upstreamConfig("live", hostA, te.api.Addr, ps, sourceOf(ps.client))
	uc.Token = &upstream.TokenConfig{ClientID: tokenClient, SecretSource: "token.client_secret_file " + te.secretFile, Now: te.clock.Now, Secret: func() ([]byte, error) {
		b, err := os.ReadFile(te.secretFile)
		return []byte(strings.TrimSpace(string(b))), err
	}}
	te.env = startProxy(t, testConfig{Upstreams: []upstream.Config{uc}})
	t.Cleanup(func() { te.assertNoSecretsLogged(t) })
	return te
}

// assertNoSecretsLogged: neither the client secret nor a token appears in
// any log line.
func (te *tokenEnv) assertNoSecretsLogged(t *testing.T) {
	for _, e := range te.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, tokenLogWord) || strings.Contains(line, "Bearer ") {
			t.Errorf("a log line carries a secret or token: %s", line)
		}
	}
}

func (te *tokenEnv) get(t *testing.T, c *http.Client, path string) (*http.Response, []byte) {
	t.Helper()
	return get(t, c, "http://"+hostA+path)
}

// TestTokenSingleFlight: many concurrent requests across several token
// lifetimes cause one fetch per renewal window, and every request reaches
// the API with a valid token.
func TestTokenSingleFlight(t *testing.T) {
	te := newTokenEnv(t, 2*time.Second) // renewed at half-life: one fetch per second
	c := te.forwardClient(t)
	const workers = 16
	var (
		wg       sync.WaitGroup
		ok, fail atomic.Int64
		start    = time.Now()
	)
	for range workers {
		wg.Go(func() {
			for n := 0; n < 5000 && time.Since(start) < 4500*time.Millisecond; n++ {
				resp, body := te.get(t, c, "/v1/x")
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else if fail.Add(1) <= 3 {
					t.Errorf("status %d: %s", resp.StatusCode, body)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	calls := te.api.TokenCalls()
	windows := int(elapsed/time.Second) + 1 // the first fetch, then one per half-life
	t.Logf("%d requests in %s by %d clients, %d token fetches", ok.Load(), elapsed.Round(time.Millisecond), workers, calls)
	if fail.Load() > 0 || te.api.Denied() > 0 {
		t.Errorf("%d requests failed, %d refused by the API for their token", fail.Load(), te.api.Denied())
	}
	if calls > windows+1 || calls < windows-1 {
		t.Errorf("%d token fetches over %s; want one per renewal window (%d)", calls, elapsed, windows)
	}
}

// TestTokenEndpointFailures: a failing token endpoint gives a clear 502
// naming Payrails' answer (its status and error code and id, never its
// text: TestTokenSecretNeverEchoed), is retried with back-off (not per request), and
// a token still valid keeps being used meanwhile.
func TestTokenEndpointFailures(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fault  standin.TokenFault
		detail string
	}{
		{"server error", standin.TokenFault{Status: 500, Body: `{"errors":[{"code":"internal","detail":"Token service unavailable."}]}`}, "Payrails error internal"},
		{"wrong secret", standin.TokenFault{Status: 401, Body: `{"errors":[{"id":"err_9","code":"unauthorized","detail":"Invalid client id or x-api-key."}]}`}, "Payrails error unauthorized (id err_9)"},
		{"HTML edge page", standin.TokenFault{Status: 400, ContentType: "text/html", Body: "<html><body>400 Bad Request</body></html>"}, "HTML page from the edge"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			te := newTokenEnv(t, time.Hour)
			te.api.SetTokenFault(tt.fault)
			c := te.forwardClient(t)
			for i := range 20 {
				resp, body := te.get(t, c, "/v1/x")
				detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindToken)
				if i == 0 && (!strings.Contains(detail, tt.detail) || !strings.Contains(detail, te.secretFile)) {
					t.Errorf("detail %q lacks Payrails' answer %q or where the secret comes from", detail, tt.detail)
				}
			}
			if n := te.api.TokenCalls(); n != 1 {
				t.Errorf("20 requests during back-off made %d token calls, want 1", n)
			}
			te.api.SetTokenFault(standin.TokenFault{})
			waitFor(t, "the retry after back-off to succeed", func() bool {
				resp, _ := te.get(t, c, "/v1/x")
				return resp.StatusCode == http.StatusOK
			})
		})
	}
	t.Run("slow endpoint: requests wait on one fetch", func(t *testing.T) {
		te := newTokenEnv(t, time.Hour)
		te.api.SetTokenFault(standin.TokenFault{Delay: 300 * time.Millisecond})
		c := te.forwardClient(t)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if resp, body := te.get(t, c, "/v1/x"); resp.StatusCode != 200 {
					t.Errorf("status %d: %s", resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		if n := te.api.TokenCalls(); n != 1 {
			t.Errorf("10 concurrent requests made %d token calls, want 1", n)
		}
	})
	t.Run("renewal fails: the old token is used while valid", func(t *testing.T) {
		te := newTokenEnv(t, 3*time.Second) // renewal from 1.5s on, expiry at 3s
		c := te.forwardClient(t)
		if resp, _ := te.get(t, c, "/v1/x"); resp.StatusCode != 200 {
			t.Fatal("first request failed")
		}
		te.api.SetTokenFault(standin.TokenFault{Status: 503, Body: `{"errors":[{"code":"unavailable","detail":"down"}]}`})
		start := time.Now()
		for time.Since(start) < 2500*time.Millisecond {
			if resp, body := te.get(t, c, "/v1/x"); resp.StatusCode != 200 {
				t.Fatalf("after %s with the old token still valid: %d %s", time.Since(start), resp.StatusCode, body)
			}
			time.Sleep(20 * time.Millisecond) // pacing the load, not synchronising
		}
		// The first fetch, then renewal attempts from 1.5s on, 1s apart and
		// doubling: a handful in all, never one per request (~100 were sent).
		if n := te.api.TokenCalls(); n < 2 || n > 5 {
			t.Errorf("%d token calls while renewal failed, want a few with back-off", n)
		}
	})
}

// TestToken401Replay: a 401 to an injected token drops it and fetches a
// new one; the request is replayed once only when that is safe.
func TestToken401Replay(t *testing.T) {
	te := newTokenEnv(t, time.Hour)
	c := te.forwardClient(t)
	if resp, body := te.get(t, c, "/v1/warm"); resp.StatusCode != 200 {
		t.Fatalf("warm-up %d %s", resp.StatusCode, body)
	}
	payment := `{"amount":100,"currency":"EUR"}`
	post := func(key string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments", strings.NewReader(payment))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header["x-idempotency-key"] = []string{key} // not canonical: Go's client must not retry by itself
		}
		return do(t, c, req)
	}
	sum := sha256.Sum256([]byte(payment))

	// A 401 drops a token only once it is old enough, and only one
	// invalidation per interval fetches: each case starts past both.
	revoke := func() { te.clock.Advance(time.Minute); te.api.RevokeTokens() }
	t.Run("GET is replayed once", func(t *testing.T) {
		revoke()
		denied, calls := te.api.Denied(), te.api.TokenCalls()
		resp, body := te.get(t, c, "/v1/x")
		if resp.StatusCode != 200 || te.api.Denied() != denied+1 || te.api.TokenCalls() != calls+1 {
			t.Errorf("status %d (%s), denied +%d, token calls +%d; want 200 after one replay", resp.StatusCode, body,
				te.api.Denied()-denied, te.api.TokenCalls()-calls)
		}
	})
	t.Run("POST with an idempotency key is replayed with the same body and key", func(t *testing.T) {
		revoke()
		denied := te.api.Denied()
		resp, body := post("pay-1")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if e.BodySHA256 != hex.EncodeToString(sum[:]) || strings.Join(e.Header["X-Idempotency-Key"], "") != "pay-1" ||
			te.api.Denied() != denied+1 {
			t.Errorf("replay: body sha %s, key %v, denied +%d", e.BodySHA256, e.Header["X-Idempotency-Key"], te.api.Denied()-denied)
		}
	})
	t.Run("POST without a key is not replayed", func(t *testing.T) {
		revoke()
		denied := te.api.Denied()
		resp, _ := post("")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(failure.HeaderError) != "" {
			t.Errorf("status %d (%s), want Payrails' own 401", resp.StatusCode, resp.Header.Get(failure.HeaderError))
		}
		if te.api.Denied() != denied+1 {
			t.Errorf("sent %d times, want once", te.api.Denied()-denied)
		}
		if resp, _ := te.get(t, c, "/v1/after"); resp.StatusCode != 200 {
			t.Error("the dropped token was not replaced")
		}
	})
	t.Run("never a third send", func(t *testing.T) {
		te.clock.Advance(time.Minute)
		te.api.RejectAllTokens(true)
		defer te.api.RejectAllTokens(false)
		denied := te.api.Denied()
		resp, _ := te.get(t, c, "/v1/x")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want the API's 401", resp.StatusCode)
		}
		if n := te.api.Denied() - denied; n != 2 {
			t.Errorf("sent %d times, want exactly 2 (the request and one replay)", n)
		}
	})
	t.Run("the service's own Authorization and token requests pass untouched", func(t *testing.T) {
		calls := te.api.TokenCalls()
		req, _ := http.NewRequest(http.MethodGet, "http://"+hostA+"/v1/x", nil)
		req.Header.Set("Authorization", "Bearer the-services-own")
		if resp, _ := do(t, c, req); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d: the service's own (invalid) token was replaced", resp.StatusCode)
		}
		treq, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/auth/token/"+tokenClient, nil)
		treq.Header.Set("X-Api-Key", tokenSecret)
		if resp, body := do(t, c, treq); resp.StatusCode != 200 || !strings.Contains(string(body), "access_token") {
			t.Errorf("token request through the proxy: %d %s", resp.StatusCode, body)
		}
		if got := te.api.TokenCalls() - calls; got != 1 {
			t.Errorf("%d token calls, want only the client's own", got)
		}
	})
}

// TestTokenSecretRotation: a new secret dropped into the secret file is
// used at the next fetch, without a restart.
func TestTokenSecretRotation(t *testing.T) {
	te := newTokenEnv(t, time.Hour)
	c := te.forwardClient(t)
	if resp, _ := te.get(t, c, "/v1/x"); resp.StatusCode != 200 {
		t.Fatal("first request failed")
	}
	s := tokenNewer
	te.accepted.Store(&s) // Payrails now accepts only the new secret
	tmp := te.secretFile + ".tmp"
	os.WriteFile(tmp, []byte(tokenNewer+"\n"), 0o600)
	os.Rename(tmp, te.secretFile)
	te.clock.Advance(time.Minute) // the token is old enough to be dropped on a 401
	te.api.RevokeTokens()         // and the old tokens are gone
	if resp, body := te.get(t, c, "/v1/x"); resp.StatusCode != 200 {
		t.Fatalf("after rotating the secret: %d %s", resp.StatusCode, body)
	}
}

// issuedToken matches an access token the stand-in issues (48 hex digits).
var issuedToken = regexp.MustCompile(`[0-9a-f]{48}`)

// TestTokenBadLifetime: a token answer whose expires_in is 0, negative,
// missing or more than a day is a failed fetch: the request gets 502
// proxy.token at once, and the manager retries with back-off instead of
// fetching again and again for the waiting request.
func TestTokenBadLifetime(t *testing.T) {
	for _, expiresIn := range []string{"0", "-5", standin.OmitExpiresIn, "86401", `"600"`, "600.5", "1e30", "null"} {
		t.Run("expires_in "+expiresIn, func(t *testing.T) {
			t.Parallel()
			te := newTokenEnv(t, time.Hour)
			te.api.SetTokenFault(standin.TokenFault{ExpiresIn: expiresIn})
			c := te.forwardClient(t)
			c.Timeout = 3 * time.Second
			start := time.Now()
			req, _ := http.NewRequest(http.MethodGet, "http://"+hostA+"/v1/x", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("no answer within %s: %v", c.Timeout, err)
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindToken)
				if !strings.Contains(detail, "expires_in") {
					t.Errorf("detail %q does not say what was wrong with the answer", detail)
				}
				if issuedToken.MatchString(detail) {
					t.Errorf("detail %q quotes the access token of the refused answer", detail)
				}
			}
			answered := time.Since(start)
			// Watch the token endpoint for 3 s from the request: the first
			// fetch, then back-off retries after 1 s and 2 s more.
			for time.Since(start) < 3*time.Second && te.api.TokenCalls() <= 3 {
				time.Sleep(10 * time.Millisecond) // observing over a window, not synchronising
			}
			for _, l := range te.logs.All() {
				if line := fmt.Sprint(l.Message, l.ContextMap()); issuedToken.MatchString(line) {
					t.Errorf("a log line quotes the access token of the refused answer: %s", line)
				}
			}
			calls := te.api.TokenCalls()
			t.Logf("expires_in %s: answered in %s, %d token calls in 3 s", expiresIn, answered.Round(time.Millisecond), calls)
			if calls > 3 {
				t.Errorf("%d token calls in 3 s for one request; want the first and back-off retries (at most 3)", calls)
			}
		})
	}
}

// TestToken401Storm: an endpoint that answers 401 to every token does not
// turn each request into a token fetch: a 401 drops a token only once it
// is tokenMinAge old, and a dropped token is replaced at most once per
// invalidation interval; in between the 401 goes to the client.
func TestToken401Storm(t *testing.T) {
	te := newTokenEnv(t, time.Hour)
	c := te.forwardClient(t)
	gets := func(n int) {
		t.Helper()
		for range n {
			if resp, body := te.get(t, c, "/status/401"); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(failure.HeaderError) != "" {
				t.Fatalf("status %d %s, want the API's own 401", resp.StatusCode, body)
			}
		}
	}
	gets(10)
	calls := te.api.TokenCalls()
	t.Logf("10 GETs to an endpoint answering 401: %d token calls", calls)
	if calls != 1 {
		t.Errorf("%d token calls for 10 GETs answered 401 within seconds of the token's fetch, want 1", calls)
	}
	for _, step := range []struct {
		advance time.Duration
		want    int // token calls so far
		why     string
	}{
		{4 * time.Second, 1, "the token is 4 s old: too young to be blamed for a 401"},
		{2 * time.Second, 2, "the token is 6 s old: the first 401 drops it, one fetch"},
		{6 * time.Second, 2, "the new token is 6 s old, but the last invalidation was 6 s ago"},
		{30 * time.Second, 3, "36 s after the last invalidation: one more"},
	} {
		te.clock.Advance(step.advance)
		gets(10)
		if got := te.api.TokenCalls(); got != step.want {
			t.Errorf("%s: %d token calls, want %d", step.why, got, step.want)
		}
	}
}

// TestTokenSecretNeverEchoed (issue 22, item 5): a token endpoint whose
// answer quotes the client secret (an error detail echoing x-api-key, a
// plain-text page, a 2xx answer that is not a token) never makes the
// secret reach a client or a log line: the client gets the status and
// Payrails' error code and id, never the answer's text; the log gets the
// text with the secret redacted.
func TestTokenSecretNeverEchoed(t *testing.T) {
	escaped := strings.ReplaceAll(tokenSecret, "-", `\u002d`) // the same value, JSON-escaped
	for _, tt := range []struct {
		name  string
		fault standin.TokenFault
		code  string
	}{
		{"detail quotes it", standin.TokenFault{Status: 401,
			Body: `{"errors":[{"id":"err_1","code":"unauthorized","detail":"invalid x-api-key ` + tokenSecret + `"}]}`}, "unauthorized"},
		{"reason quotes it, JSON-escaped", standin.TokenFault{Status: 403,
			Body: `{"errors":[{"id":"err_2","code":"forbidden","detail":"no","reason":"key ` + escaped + ` revoked"}]}`}, "forbidden"},
		{"plain text quotes it", standin.TokenFault{Status: 400, ContentType: "text/plain", Body: "bad key: " + tokenSecret}, ""},
		{"not a token, quotes it", standin.TokenFault{Status: 200, Body: `{"echo":"` + tokenSecret + `"}`}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			te := newTokenEnv(t, time.Hour) // its cleanup checks every log line for the secret
			te.api.SetTokenFault(tt.fault)
			resp, body := te.get(t, te.forwardClient(t), "/v1/x")
			detail := wantProxyError(t, resp, body, http.StatusBadGateway, failure.KindToken)
			if strings.Contains(string(body), tokenLogWord) || strings.Contains(fmt.Sprint(resp.Header), tokenLogWord) {
				t.Errorf("the client got the secret: %s", body)
			}
			if tt.code != "" && !strings.Contains(detail, tt.code) {
				t.Errorf("detail %q lacks Payrails' error code %q", detail, tt.code)
			}
			if strings.Contains(detail, "invalid x-api-key") || strings.Contains(detail, "bad key") || strings.Contains(detail, "revoked") {
				t.Errorf("the client got the token endpoint's text: %q", detail)
			}
			waitFor(t, "the request's log line", func() bool { return len(te.logs.FilterMessage("request").All()) > 0 })
		})
	}
}
