package token_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/token"
)

// answer is a RoundTripper that answers every request with one response.
type answer struct {
	status int
	ctype  string
	body   string
}

func (a answer) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: a.status, Header: http.Header{"Content-Type": {a.ctype}},
		Body: io.NopCloser(strings.NewReader(a.body)), Request: req}, nil
}

// TestFetchRedactsTheSecret (issue 22, item 5): whatever the token
// endpoint echoes of x-api-key, in whatever form, no error text of Fetch
// carries the secret, and Summary carries none of the answer's text.
func TestFetchRedactsTheSecret(t *testing.T) {
	const secret = "sk-live/4f\"9-x"
	jsonEscaped := `sk-live\/4f\"9\u002dx`
	base := &url.URL{Scheme: "https", Host: "api.test"}
	for _, tt := range []struct {
		name string
		a    answer
	}{
		{"JSON detail", answer{401, "application/json", `{"errors":[{"id":"e1","code":"unauthorized","detail":"bad key ` + jsonEscaped + `"}]}`}},
		{"JSON reason and id", answer{403, "application/json", `{"errors":[{"id":"` + jsonEscaped + `","code":"forbidden","reason":"` + jsonEscaped + `"}]}`}},
		{"plain text", answer{400, "text/plain", "bad key " + secret}},
		{"HTML page", answer{400, "text/html", "<html><title>" + secret + "</title></html>"}},
		{"JSON not in Payrails' shape", answer{500, "application/json", `{"echo":"` + jsonEscaped + `"}`}},
		{"2xx that is not a token", answer{200, "application/json", `{"echo":"` + jsonEscaped + `"}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := token.Fetch(context.Background(), tt.a, base, "cid", []byte(secret))
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "4f") {
				t.Errorf("Error() carries the secret: %s", err)
			}
			var ae *token.APIError
			if errors.As(err, &ae) {
				if s := ae.Summary(); strings.Contains(s, "bad key") || strings.Contains(s, "4f") {
					t.Errorf("Summary() carries the answer's text: %s", s)
				}
			}
		})
	}
}

// FuzzTokenAnswer: whatever the token endpoint answers, Fetch never
// panics, never returns a token with an error, and no error text carries
// the secret, which the fuzzer may place anywhere in the body, raw or
// JSON-escaped.
func FuzzTokenAnswer(f *testing.F) {
	f.Add(200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":600}`, 0)
	f.Add(401, "application/json", `{"errors":[{"id":"e","code":"unauthorized","detail":"SECRET"}]}`, 1)
	f.Add(400, "text/html", "<html><title>SECRET</title></html>", 2)
	f.Add(200, "application/json", `{"echo":"SECRET"}`, 1)
	f.Add(403, "text/plain", "key SECRET revoked", 0)
	const secret = "sk-fuzz/9\"x"
	forms := []string{secret, `sk-fuzz\/9\"x`, `sk\u002dfuzz/9\u0022x`}
	f.Fuzz(func(t *testing.T, status int, ctype, body string, form int) {
		if status < 100 || status > 599 {
			return
		}
		if form < 0 {
			form = -form
		}
		body = strings.ReplaceAll(body, "SECRET", forms[form%len(forms)])
		tok, _, err := token.Fetch(context.Background(), answer{status, ctype, body}, &url.URL{Scheme: "https", Host: "api.test"},
			"cid", []byte(secret))
		if err == nil {
			if tok == nil || tok.AccessToken == "" {
				t.Fatal("no error and no token")
			}
			return
		}
		if tok != nil {
			t.Fatal("a token with an error")
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("the error carries the secret: %v", err)
		}
		var ae *token.APIError
		if errors.As(err, &ae) && strings.Contains(ae.Summary(), secret) {
			t.Fatalf("the summary carries the secret: %s", ae.Summary())
		}
	})
}
