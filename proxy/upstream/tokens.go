package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/token"
)

// TokenConfig turns on managed access tokens for an upstream: the client
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

// tokens are a client's managed access tokens: the manager (run by the
// client's Run) and where the secret comes from, for messages.
type tokens struct {
	manager      *token.Manager
	name         string // the upstream's
	secretSource string
}

// newTokens builds the token manager of an upstream; it fetches through
// rt, the client itself, over the same mTLS connections.
func newTokens(c *TokenConfig, rt http.RoundTripper, base *url.URL, name string, m *Metrics) *tokens {
	t := &tokens{name: name, secretSource: c.SecretSource}
	if t.secretSource == "" {
		t.secretSource = "the configured secret"
	}
	t.manager = token.NewManager(token.ManagerConfig{
		ClientID: c.ClientID, Secret: c.Secret, Transport: rt, Base: base, Now: c.Now,
		Hooks: token.Hooks{Fetched: func(ok bool, expiry time.Time) { m.tokenFetched(name, ok, expiry) }},
	})
	return t
}

// wants reports whether the client adds a token to out: the service sent
// no Authorization of its own (it stays in control when it does), and it
// is not a token request itself.
func (t *tokens) wants(out *http.Request) bool {
	return out.Header.Get("Authorization") == "" && !strings.HasPrefix(out.URL.Path, "/auth/token/")
}

// run fetches tokens until ctx is done.
func (t *tokens) run(ctx context.Context) { t.manager.Run(ctx) }

// failure is a request that could not get an access token. The client
// gets the endpoint's status and error codes, never its text (it may echo
// the secret, issue 22); the cause, logged, has it redacted.
func (t *tokens) failure(err error) *failure.Error {
	var ae *token.APIError
	detail := "the token endpoint's answer is in the proxy log"
	if errors.As(err, &ae) {
		detail = ae.Summary()
	} else if !errors.Is(err, token.ErrBadAnswer) {
		detail = err.Error() // the proxy's own words: no connection, no secret file, ...
	}
	return failure.New(failure.KindToken, err, "no access token for upstream %q: %s; the proxy keeps retrying with "+
		"back-off; check token.client_id and the client secret in %s", t.name, detail, t.secretSource)
}
