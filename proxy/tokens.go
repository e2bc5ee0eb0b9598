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
	// Now is the token manager's clock; nil means time.Now.
	Now func() time.Time
}

// maxReplayBody bounds the body the proxy keeps to replay a request after
// a 401 on a refreshed token. Larger bodies are streamed and not replayed.
const maxReplayBody = 1 << 20

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

// sendWithToken is sendOnce with the access token injected; on a 401 to it
// the token is dropped and the request replayed once with a new one when
// that is safe (an idempotent method, or an X-Idempotency-Key with a body
// the proxy kept). A request is never sent more than twice.
func (u *Upstream) sendWithToken(ex *exchange, out *http.Request) (*http.Response, *generation, error) {
	ctx := out.Context()
	mgr := u.tokens.manager
	tok, err := mgr.Token(ctx)
	if err != nil {
		return nil, nil, &tokenError{err}
	}
	kept, replayable := keepForReplay(out)
	out.Header.Set("Authorization", "Bearer "+tok)
	ex.token = "injected"
	resp, g, err := u.sendOnce(out)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, g, err
	}
	mgr.Invalidate(tok)
	if !replayable {
		return resp, g, nil // the 401 goes to the client: replaying is not safe
	}
	tok2, terr := mgr.Token(ctx)
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

// run fetches tokens until ctx is done (Proxy.Serve runs it).
func (t *tokens) run(ctx context.Context) { t.manager.Run(ctx) }

func (u *Upstream) classifyToken(te *tokenError) *Error {
	var ae *token.APIError
	detail := te.err.Error()
	if errors.As(te, &ae) {
		detail = ae.Error()
	}
	return newError(KindToken, te, "no access token for upstream %q: %s; the proxy keeps retrying with back-off; "+
		"check token.client_id and the client secret in %s", u.name, detail, u.tokens.secretSource)
}
