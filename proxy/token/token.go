// Package token obtains Payrails access tokens: POST
// https://HOST/auth/token/<client id> with the client secret in x-api-key,
// over the same mutual-TLS transport the proxy uses. It reads Payrails'
// answer and its error shape; it never logs or returns the secret.
package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token is Payrails' token response.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"` // seconds
}

// APIErrorItem is one entry of Payrails' {"errors":[...]} shape.
type APIErrorItem struct {
	ID     string `json:"id"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Reason string `json:"reason"`
	DocURL string `json:"docUrl"`
}

// APIError is a token request that Payrails (or an edge in front of it)
// answered with an error status. Every text in it comes from the answer
// with the client secret redacted (Fetch); Summary is what may be shown to
// a client, Error is for the operator's log and terminal.
type APIError struct {
	Status   int
	Errors   []APIErrorItem // empty when the body was not Payrails' JSON
	EdgePage bool           // an HTML page: the request never reached the API
	Body     string         // the start of a text or HTML body that was not Payrails' JSON; "" for other bodies
}

// Summary says what the token endpoint answered without any of its text:
// the status and Payrails' error codes and ids (what Payrails support asks
// for). An endpoint may echo the request's x-api-key in its text (issue
// 22): the proxy never passes that text on to a client.
func (e *APIError) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token request refused with %d %s", e.Status, http.StatusText(e.Status))
	for _, it := range e.Errors {
		fmt.Fprintf(&b, "; Payrails error %s", it.Code)
		if it.ID != "" {
			fmt.Fprintf(&b, " (id %s)", it.ID)
		}
	}
	if e.EdgePage {
		b.WriteString("; the answer is an HTML page from the edge, not the API: the client certificate was probably not accepted")
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		b.WriteString("; check the Client ID and the client secret (x-api-key) of this environment in the Payrails dashboard")
	}
	return b.String()
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token request refused with %d %s", e.Status, http.StatusText(e.Status))
	for _, it := range e.Errors {
		fmt.Fprintf(&b, "; %s: %s", it.Code, it.Detail)
		if it.Reason != "" && it.Reason != it.Detail {
			fmt.Fprintf(&b, " (%s)", it.Reason)
		}
		if it.ID != "" {
			fmt.Fprintf(&b, " [id %s]", it.ID)
		}
	}
	switch {
	case e.EdgePage:
		b.WriteString("; the answer is an HTML page from the edge, not the API: the client certificate was probably not accepted")
	case len(e.Errors) == 0 && e.Body != "":
		fmt.Fprintf(&b, "; body: %s", e.Body)
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		b.WriteString("; check the Client ID and the client secret (x-api-key) of this environment in the Payrails dashboard")
	}
	return b.String()
}

// ErrBadAnswer: a 2xx answer that is not a usable token: no access_token,
// or an expires_in that is missing or outside MinLifetime..MaxLifetime.
var ErrBadAnswer = errors.New("the token answer is not usable")

// The lifetimes (expires_in) Fetch accepts. Payrails' tokens live 600 s. A
// token of no lifetime (0, negative, missing) cannot be used or renewed in
// time: taken as it is, every request would fetch again at once. One
// living more than a day is not what the API issues, and would be renewed
// only hours after a revocation.
const (
	MinLifetime = time.Second
	MaxLifetime = 24 * time.Hour
)

// Fetch requests a token for clientID from the API at base (https://HOST)
// through rt, which carries the client certificate. It returns the token,
// the raw JSON answer, and an *APIError for an error status.
func Fetch(ctx context.Context, rt http.RoundTripper, base *url.URL, clientID string, secret []byte) (*Token, []byte, error) {
	if clientID == "" || len(secret) == 0 {
		return nil, nil, errors.New("a client id and a client secret are both required")
	}
	u := *base
	u.Path = "/auth/token/" + url.PathEscape(clientID)
	u.RawPath, u.RawQuery = "", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		return nil, nil, fmt.Errorf("building the token request: %w", err)
	}
	req.Header.Set("x-api-key", string(secret))
	req.Header.Set("Accept", "application/json")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the token answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		// An endpoint may echo x-api-key in its answer: every text taken
		// from it has the secret redacted (issue 22).
		return nil, body, apiError(resp, redact(body, secret), secret)
	}
	var a struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.AccessToken == "" {
		// Whatever it is, it may carry a token or echo the secret (in
		// JSON, possibly escaped): never quote it.
		return nil, body, fmt.Errorf("%w: %d with a %s body that is not a token answer (%d bytes, not shown: it may hold "+
			"a token or the secret)", ErrBadAnswer, resp.StatusCode, contentType(resp), len(body))
	}
	// The body holds the token from here on: messages quote only expires_in.
	lifetime, err := parseLifetime(a.ExpiresIn)
	if err != nil {
		return nil, body, fmt.Errorf("%w: %d with %v", ErrBadAnswer, resp.StatusCode, err)
	}
	return &Token{AccessToken: a.AccessToken, TokenType: a.TokenType, ExpiresIn: lifetime}, body, nil
}

// parseLifetime reads expires_in: whole seconds within MinLifetime and
// MaxLifetime. Its errors quote the value, which is never secret.
func parseLifetime(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("no expires_in: the token's lifetime is unknown")
	}
	var secs int64
	if err := json.Unmarshal(raw, &secs); err != nil {
		return 0, fmt.Errorf("expires_in %.40s, which is not a whole number of seconds", raw)
	}
	lo, hi := int64(MinLifetime/time.Second), int64(MaxLifetime/time.Second)
	if secs < lo || secs > hi {
		return 0, fmt.Errorf("expires_in %d, which is not a lifetime between %d s and %d s (Payrails issues 600 s)", secs, lo, hi)
	}
	return secs, nil
}

// apiError reads an error answer whose raw bytes already had the secret
// redacted; the decoded texts are redacted again, since JSON may have
// escaped the secret's characters.
func apiError(resp *http.Response, body, secret []byte) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var shape struct {
		Errors []APIErrorItem `json:"errors"`
	}
	if json.Unmarshal(body, &shape) == nil && len(shape.Errors) > 0 {
		for _, it := range shape.Errors {
			for _, f := range []*string{&it.ID, &it.Code, &it.Detail, &it.Reason, &it.DocURL} {
				*f = string(redact([]byte(*f), secret))
			}
			e.Errors = append(e.Errors, it)
		}
		return e
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	e.EdgePage = mt == "text/html" || bytes.HasPrefix(bytes.ToLower(trimmed), []byte("<"))
	if e.EdgePage || mt == "text/plain" {
		e.Body = snippet(body) // text without escapes: the raw redaction holds
	}
	return e
}

// redacted stands for the client secret wherever an answer quoted it.
const redacted = "[client secret redacted]"

// redact replaces every occurrence of secret in b.
func redact(b, secret []byte) []byte {
	if len(secret) == 0 || !bytes.Contains(b, secret) {
		return b
	}
	return bytes.ReplaceAll(b, secret, []byte(redacted))
}

func contentType(resp *http.Response) string {
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		return mt
	}
	return "untyped"
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Expiry is when a token fetched at fetched expires.
func (t *Token) Expiry(fetched time.Time) time.Time {
	return fetched.Add(time.Duration(t.ExpiresIn) * time.Second)
}
