package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

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
	// Now is the token manager's clock; nil means time.Now.
	Now func() time.Time
}

// tokens are an upstream's managed access tokens: the manager (run by
// Proxy.Serve) and where the secret comes from, for messages.
type tokens struct {
	manager      *token.Manager
	secretSource string
}

// tokenError is a request that could not get an access token.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// newTokens builds the token manager of an upstream; it fetches through the
// upstream itself, over the same mTLS connections.
func (u *Upstream) newTokens(c *TokenConfig, m *Metrics) *tokens {
	t := &tokens{secretSource: c.SecretSource}
	if t.secretSource == "" {
		t.secretSource = "the configured secret"
	}
	t.manager = token.NewManager(token.ManagerConfig{
		ClientID: c.ClientID, Secret: c.Secret, Transport: u, Base: u.baseURL(), Now: c.Now,
		Hooks: token.Hooks{Fetched: func(ok bool, expiry time.Time) { m.tokenFetched(u.name, ok, expiry) }},
	})
	return t
}

// wants reports whether the proxy adds a token to out: the service sent no
// Authorization of its own (it stays in control when it does), and it is
// not a token request itself.
func (t *tokens) wants(out *http.Request) bool {
	return out.Header.Get("Authorization") == "" && !strings.HasPrefix(out.URL.Path, "/auth/token/")
}

// sendWithToken is attempts with the access token injected; on a 401 to it
// the token is dropped and the request sent again with a new one when that
// is safe: an idempotent method or an idempotency key, and no body or one
// the proxy kept.
func (u *Upstream) sendWithToken(ex *exchange, r *sendState) (*http.Response, *generation, error) {
	ctx := r.out.Context()
	mgr := u.tokens.manager
	tok, err := mgr.Token(ctx)
	if err != nil {
		return nil, nil, &tokenError{err}
	}
	r.out.Header.Set("Authorization", "Bearer "+tok)
	ex.token = "injected"
	resp, g, err := u.attempts(ex, r)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, g, err
	}
	mgr.Invalidate(tok)
	if !(isIdempotent(r.out.Method) || r.keyed) || (r.hasBody && r.kept == nil) {
		return resp, g, nil // the 401 goes to the client: sending again is not safe
	}
	tok2, terr := mgr.Token(ctx)
	if terr != nil || tok2 == tok {
		return resp, g, nil
	}
	discard(resp)
	again := *r
	again.out = r.out.Clone(ctx)
	again.out.Header.Set("Authorization", "Bearer "+tok2)
	if r.kept != nil {
		again.out.Body = r.kept.reader()
	}
	ex.token = "replayed"
	return u.attempts(ex, &again)
}

// run fetches tokens until ctx is done (Proxy.Serve runs it).
func (t *tokens) run(ctx context.Context) { t.manager.Run(ctx) }

func (u *Upstream) classifyToken(te *tokenError) *failure.Error {
	// The client gets the endpoint's status and error codes, never its
	// text (it may echo the secret); the cause, logged, has it redacted.
	var ae *token.APIError
	detail := "the token endpoint's answer is in the proxy log"
	if errors.As(te, &ae) {
		detail = ae.Summary()
	} else if !errors.Is(te, token.ErrBadAnswer) {
		detail = te.err.Error() // the proxy's own words: no connection, no secret file, ...
	}
	return failure.New(failure.KindToken, te, "no access token for upstream %q: %s; the proxy keeps retrying with back-off; "+
		"check token.client_id and the client secret in %s", u.name, detail, u.tokens.secretSource)
}
