package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/token"
)

// TokenConfig turns on managed access tokens for an upstream: the proxy
// fetches Payrails tokens with the client secret and adds
// "Authorization: Bearer <token>" to requests that carry none.
type TokenConfig struct {
	ClientID string
	// Secret returns the client secret; it is called at every fetch, so a
	// rotated secret file is used without a restart.
	Secret func() ([]byte, error)
	// SecretSource names where the secret comes from (a file or an
	// environment variable), for error messages; never the secret itself.
	SecretSource string
}

// TokenSource is what a request needs from a token manager.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// maxReplayBody bounds the body the proxy keeps to replay a request after
// a 401 on a refreshed token. Larger bodies are streamed and not replayed.
const maxReplayBody = 1 << 20

// tokenError is a request that could not get an access token.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// newTokenManager builds the manager of an upstream; it fetches through the
// upstream itself, over the same mTLS connection pool.
func (u *Upstream) newTokenManager(c *TokenConfig, m *Metrics) *token.Manager {
	u.tokenSecretSource = c.SecretSource
	if u.tokenSecretSource == "" {
		u.tokenSecretSource = "the configured secret"
	}
	return token.NewManager(token.ManagerConfig{
		ClientID: c.ClientID, Secret: c.Secret, Transport: u, Base: u.baseURL(),
		Hooks: token.Hooks{Fetched: func(ok bool, expiry time.Time) { m.tokenFetched(u.name, ok, expiry) }},
	})
}

// wantsToken reports whether the proxy adds a token to out: the upstream
// manages tokens, the service sent no Authorization of its own (it stays in
// control when it does), and it is not a token request itself.
func (u *Upstream) wantsToken(out *http.Request) bool {
	return u.tokens != nil && out.Header.Get("Authorization") == "" && !strings.HasPrefix(out.URL.Path, "/auth/token/")
}

// send is roundTrip plus managed tokens: inject, and on a 401 to an
// injected token, drop it, fetch a new one and replay the request once
// when that is safe (an idempotent method, or an X-Idempotency-Key with a
// body the proxy kept). A request is never sent more than twice.
func (u *Upstream) send(ex *exchange, out *http.Request) (*http.Response, *generation, error) {
	if !u.wantsToken(out) {
		return u.roundTripRetry(out)
	}
	ctx := out.Context()
	tok, err := u.tokens.Token(ctx)
	if err != nil {
		return nil, nil, &tokenError{err}
	}
	kept, replayable := keepForReplay(out)
	out.Header.Set("Authorization", "Bearer "+tok)
	ex.token = "injected"
	resp, g, err := u.roundTripRetry(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, g, err
	}
	u.tokens.Invalidate(tok)
	if !replayable {
		return resp, g, nil // the 401 goes to the client: replaying is not safe
	}
	tok2, terr := u.tokens.Token(ctx)
	if terr != nil || tok2 == tok {
		return resp, g, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	again := out.Clone(ctx)
	again.Header.Set("Authorization", "Bearer "+tok2)
	if kept != nil {
		again.Body = io.NopCloser(bytes.NewReader(kept))
		again.ContentLength = int64(len(kept))
	}
	ex.token = "replayed"
	return u.roundTrip(again)
}

// keepForReplay decides whether out may be replayed after a 401 and, if it
// has a body, reads it (up to maxReplayBody) so it can be sent again. A
// larger body is sent streamed and makes the request not replayable.
func keepForReplay(out *http.Request) ([]byte, bool) {
	safe := isIdempotent(out.Method) || out.Header.Get("X-Idempotency-Key") != ""
	if !safe {
		return nil, false
	}
	if out.Body == nil || out.Body == http.NoBody {
		return nil, true
	}
	if out.ContentLength > maxReplayBody {
		return nil, false
	}
	head, err := io.ReadAll(io.LimitReader(out.Body, maxReplayBody+1))
	if err != nil || len(head) > maxReplayBody {
		// Too big, or the client's body failed: send what was read and the
		// rest as it comes, once.
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), out.Body), out.Body}
		return nil, false
	}
	out.Body = io.NopCloser(bytes.NewReader(head))
	out.ContentLength = int64(len(head))
	return head, true
}

// isIdempotent: RFC 9110 §9.2.2.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func (u *Upstream) classifyToken(te *tokenError) *Error {
	var ae *token.APIError
	detail := te.err.Error()
	if errors.As(te, &ae) {
		detail = ae.Error()
	}
	return newError(KindToken, te, "no access token for upstream %q: %s; the proxy keeps retrying with back-off; "+
		"check token.client_id and the client secret in %s", u.name, detail, u.tokenSecretSource)
}
