package standin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// TokenFault makes /auth/token misbehave, for tests of token handling. The
// zero value means behave normally.
type TokenFault struct {
	Status      int           // answer with this status instead of a token (0: no fault)
	Body        string        // ... and this body
	ContentType string        // ... of this type ("" means application/json)
	Delay       time.Duration // wait this long before answering (or until the client leaves)
	// ExpiresIn replaces expires_in in an otherwise good answer: the JSON
	// text of the value ("0", "-5", "86401", `"600"`), or OmitExpiresIn to
	// leave the field out. "" sends the token's real lifetime. The token
	// issued is valid at the API for TokenTTL whatever this says.
	ExpiresIn string
}

// OmitExpiresIn as TokenFault.ExpiresIn answers a token without expires_in.
const OmitExpiresIn = "omit"

// tokens is the stand-in's record of the access tokens it issued.
type tokens struct {
	mu        sync.Mutex
	expiry    map[string]time.Time
	fault     TokenFault
	calls     int  // requests to /auth/token, whatever the outcome
	denied    int  // requests refused for a missing or invalid token
	rejectAll bool // refuse every token, even fresh ones
}

// RejectAllTokens makes the API refuse every token, even one just issued,
// until called with false.
func (s *Server) RejectAllTokens(on bool) {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	s.tok.rejectAll = on
}

// SetTokenFault changes how /auth/token answers from now on.
func (s *Server) SetTokenFault(f TokenFault) {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	s.tok.fault = f
}

// RevokeTokens makes every token issued so far invalid, as if Payrails
// rotated them: the next request with one gets 401.
func (s *Server) RevokeTokens() {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	s.tok.expiry = nil
}

// TokenCalls is the number of requests to /auth/token, successful or not.
func (s *Server) TokenCalls() int {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	return s.tok.calls
}

// Denied is the number of requests refused with 401 for their token.
func (s *Server) Denied() int {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	return s.tok.denied
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.tok.mu.Lock()
	s.tok.calls++
	fault := s.tok.fault
	s.tok.mu.Unlock()
	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if fault.Status != 0 {
		ct := fault.ContentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(fault.Status)
		_, _ = w.Write([]byte(fault.Body))
		return
	}
	id, key := r.PathValue("id"), r.Header.Get("X-Api-Key")
	okID := s.opts.ClientID == "" || id == s.opts.ClientID
	okKey := s.secretOK(key)
	if !okID || !okKey {
		writeAPIError(w, http.StatusUnauthorized, "unauthorized", "Invalid client id or x-api-key.")
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.tok.mu.Lock()
	if s.tok.expiry == nil {
		s.tok.expiry = map[string]time.Time{}
	}
	s.tok.expiry[tok] = time.Now().Add(s.opts.TokenTTL)
	s.tok.mu.Unlock()
	s.tokenIssued.Add(1)
	answer := Token{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(s.opts.TokenTTL / time.Second)}
	if fault.ExpiresIn == "" {
		writeJSON(w, http.StatusOK, answer)
		return
	}
	fields := map[string]any{"access_token": answer.AccessToken, "token_type": answer.TokenType}
	if fault.ExpiresIn != OmitExpiresIn {
		fields["expires_in"] = json.RawMessage(fault.ExpiresIn)
	}
	writeJSON(w, http.StatusOK, fields)
}

func (s *Server) secretOK(key string) bool {
	secret := s.opts.ClientSecret
	if s.opts.Secret != nil {
		secret = s.opts.Secret()
	}
	return secret != "" && subtle.ConstantTimeCompare([]byte(key), []byte(secret)) == 1
}

// requireToken refuses a request without a valid issued token, as the
// Payrails API does, when Options.RequireToken is set.
func (s *Server) requireToken(w http.ResponseWriter, r *http.Request) bool {
	if !s.opts.RequireToken || strings.HasPrefix(r.URL.Path, "/auth/token/") {
		return true
	}
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.tok.mu.Lock()
	exp, ok := s.tok.expiry[tok]
	valid := found && ok && time.Now().Before(exp) && !s.tok.rejectAll
	if !valid {
		s.tok.denied++
	}
	s.tok.mu.Unlock()
	if !valid {
		writeAPIError(w, http.StatusUnauthorized, "unauthorized", "Missing, invalid or expired access token.")
	}
	return valid
}
