package token

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff bounds between failed fetches.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// What a 401 from the API to a managed token may do (Invalidate). Payrails
// answers 401 to a token it revoked, and the manager then fetches a new
// one; but an endpoint can answer 401 to every token (a permission the
// client lacks, a wrong path), and dropping the token each time would turn
// every such request into a token fetch.
const (
	// minInvalidateAge: a token younger than this is never dropped on a
	// 401; one issued seconds ago has not been revoked.
	minInvalidateAge = 5 * time.Second
	// invalidateInterval: at most one token is dropped, and so at most one
	// fetch caused by a 401, per interval. In between, a 401 reaches the
	// client as the API sent it and the token stays in use.
	invalidateInterval = 30 * time.Second
)

// ErrNoToken is wrapped by Manager.Token when no valid token can be had.
var ErrNoToken = errors.New("no valid access token")

// Hooks observe a Manager; every field may be nil.
type Hooks struct {
	Fetched func(ok bool, expiry time.Time) // after each fetch; expiry is zero on failure
}

// ManagerConfig describes one upstream's managed tokens.
type ManagerConfig struct {
	ClientID  string
	Secret    func() ([]byte, error) // read at every fetch, so a rotated secret file is used at once
	Transport http.RoundTripper      // the upstream's mTLS transport
	Base      *url.URL               // https://HOST
	Hooks     Hooks
	Now       func() time.Time // nil means time.Now
}

// Manager holds one upstream's access token and renews it before it
// expires. One goroutine (Run) does every fetch, so concurrent requests
// that need a token wait on that single fetch: never a burst of token
// calls. A failed renewal keeps the old token while it is valid and retries
// with exponential back-off. Token and Invalidate are safe for concurrent
// use.
type Manager struct {
	c     ManagerConfig
	cur   atomic.Pointer[entry]
	kick  chan struct{}
	mu    sync.Mutex    // guards done, state, lastInvalidate; held while cur is replaced
	done  chan struct{} // closed when the fetch in progress ends
	state fetchState
	// lastInvalidate is when a 401 last dropped a token.
	lastInvalidate time.Time
}

type entry struct {
	token         string
	fetched       time.Time
	expiry        time.Time
	refreshAt     time.Time // renew from here on
	invalidatedAt time.Time
}

type fetchState struct {
	lastErr error
	retryAt time.Time // no fetch before this after a failure
	backoff time.Duration
}

// NewManager returns a Manager; call Run to start fetching.
func NewManager(c ManagerConfig) *Manager {
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Manager{c: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// renewBefore is how long before expiry a token is renewed:
// max(60s, 10% of its lifetime), but never more than half its lifetime, so
// that a token living under two minutes is not renewed the moment it
// arrives.
func renewBefore(lifetime time.Duration) time.Duration {
	return min(max(time.Minute, lifetime/10), lifetime/2)
}

// valid reports whether e can be sent at now.
func (e *entry) valid(now time.Time) bool {
	return e != nil && e.invalidatedAt.IsZero() && now.Before(e.expiry)
}

// Token returns a valid access token, waiting for the fetch in progress if
// there is none. While a failed fetch's back-off runs it returns that
// failure at once (wrapping ErrNoToken) instead of waiting.
func (m *Manager) Token(ctx context.Context) (string, error) {
	tok, _, err := m.Wait(ctx)
	return tok, err
}

// Wait is Token, and also reports whether it had to wait for a fetch (the
// request's trace shows that wait; a ready token costs nothing to show).
func (m *Manager) Wait(ctx context.Context) (token string, waited bool, err error) {
	for {
		now := m.c.Now()
		if e := m.cur.Load(); e.valid(now) {
			if !now.Before(e.refreshAt) {
				m.poke() // renew in the background; this token is still good
			}
			return e.token, waited, nil
		}
		// Re-check under the lock: fetch publishes the token and closes done
		// while holding it, so no completed fetch can be missed.
		m.mu.Lock()
		e, done, st := m.cur.Load(), m.done, m.state
		m.mu.Unlock()
		if e.valid(now) {
			continue
		}
		if st.lastErr != nil && now.Before(st.retryAt) {
			return "", waited, &FetchError{Err: st.lastErr}
		}
		m.poke()
		waited = true
		select {
		case <-done:
		case <-ctx.Done():
			return "", waited, ctx.Err()
		}
	}
}

// Invalidate drops token if it is still the current one (the upstream
// answered 401 to it), so that the next Token call fetches a new one; at
// most once per token, and only when the token is at least
// minInvalidateAge old and no token was dropped in the last
// invalidateInterval. Otherwise the token stays in use.
func (m *Manager) Invalidate(token string) {
	now := m.c.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.cur.Load()
	switch {
	case e == nil || e.token != token || !e.invalidatedAt.IsZero():
		return // another token by now, or dropped already
	case now.Sub(e.fetched) < minInvalidateAge:
		return
	case !m.lastInvalidate.IsZero() && now.Sub(m.lastInvalidate) < invalidateInterval:
		return
	}
	dropped := *e
	dropped.invalidatedAt = now
	m.cur.Store(&dropped)
	m.lastInvalidate = now
	m.poke()
}

// Expiry returns the current token's expiry, or zero.
func (m *Manager) Expiry() time.Time {
	if e := m.cur.Load(); e != nil {
		return e.expiry
	}
	return time.Time{}
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run fetches tokens until ctx is done: when asked (no valid token), when
// the current one enters its renewal window, and after a failure when its
// back-off ends.
func (m *Manager) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(m.nextWake())
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-timer.C:
		}
		if m.due() {
			m.fetch(ctx)
		}
	}
}

// due reports whether a fetch should happen now.
func (m *Manager) due() bool {
	now := m.c.Now()
	m.mu.Lock()
	retryAt := m.state.retryAt
	m.mu.Unlock()
	if now.Before(retryAt) {
		return false
	}
	e := m.cur.Load()
	return !e.valid(now) || !now.Before(e.refreshAt)
}

// nextWake is how long Run sleeps when nothing asks for a token.
func (m *Manager) nextWake() time.Duration {
	now := m.c.Now()
	m.mu.Lock()
	retryAt := m.state.retryAt
	m.mu.Unlock()
	wake := time.Hour
	if e := m.cur.Load(); e != nil && e.valid(now) {
		wake = e.refreshAt.Sub(now)
	}
	if d := retryAt.Sub(now); d > 0 && (wake <= 0 || d > wake) {
		wake = d
	}
	return max(wake, time.Millisecond)
}

func (m *Manager) fetch(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	secret, err := m.c.Secret()
	var tok *Token
	if err == nil {
		tok, _, err = Fetch(fctx, m.c.Transport, m.c.Base, m.c.ClientID, secret)
	}
	now := m.c.Now()
	m.mu.Lock()
	if err != nil {
		m.state.lastErr = err
		m.state.backoff = min(max(2*m.state.backoff, minBackoff), maxBackoff)
		m.state.retryAt = now.Add(m.state.backoff)
	} else {
		lifetime := time.Duration(tok.ExpiresIn) * time.Second
		m.cur.Store(&entry{token: tok.AccessToken, fetched: now, expiry: now.Add(lifetime),
			refreshAt: now.Add(lifetime - renewBefore(lifetime))})
		m.state = fetchState{}
	}
	close(m.done)
	m.done = make(chan struct{})
	m.mu.Unlock()
	if h := m.c.Hooks.Fetched; h != nil {
		h(err == nil, m.Expiry())
	}
}

// FetchError is the reason no token could be obtained.
type FetchError struct{ Err error }

func (e *FetchError) Error() string { return "no valid access token: " + e.Err.Error() }

// Unwrap exposes both ErrNoToken and the cause.
func (e *FetchError) Unwrap() []error { return []error{ErrNoToken, e.Err} }
