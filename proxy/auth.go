package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
)

// Credentials are the users allowed to use the proxy, from a
// proxy_auth_file: one "user:password" per line, where the password may be
// a bcrypt hash ($2a$, $2b$, $2y$, as `htpasswd -B` writes). Blank lines
// and lines starting with # are ignored. Immutable once parsed.
type Credentials struct {
	users map[string]credential
	// ok caches successful bcrypt checks by digest of user:password, so a
	// client paying bcrypt's deliberate cost once does not pay it per request.
	ok sync.Map
}

type credential struct {
	digest [sha256.Size]byte // of a plain password
	hash   []byte            // a bcrypt hash, when set
}

// ParseCredentials reads a proxy_auth_file's content; name is used in
// messages. Errors name the line, never its password.
func ParseCredentials(data []byte, name string) (*Credentials, error) {
	c := &Credentials{users: map[string]credential{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		switch {
		case !ok || user == "" || pass == "":
			return nil, fmt.Errorf("%s line %d: want user:password", name, n)
		case strings.ContainsAny(user, " \t"):
			return nil, fmt.Errorf("%s line %d: the user name contains a space", name, n)
		}
		if _, dup := c.users[user]; dup {
			return nil, fmt.Errorf("%s line %d: user %q appears twice", name, n, user)
		}
		cr := credential{digest: sha256.Sum256([]byte(pass))}
		if strings.HasPrefix(pass, "$2") {
			if _, err := bcrypt.Cost([]byte(pass)); err != nil {
				return nil, fmt.Errorf("%s line %d: user %q has a malformed bcrypt hash: %w", name, n, user, err)
			}
			cr.hash = []byte(pass)
		}
		c.users[user] = cr
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(c.users) == 0 {
		return nil, fmt.Errorf("%s holds no user:password line; the proxy would refuse everyone", name)
	}
	return c, nil
}

// LoadCredentials reads a proxy_auth_file.
func LoadCredentials(path string) (*Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading proxy_auth_file: %w", err)
	}
	return ParseCredentials(data, path)
}

// check reports whether user and pass are valid. Plain passwords are
// compared through their SHA-256 in constant time, and an unknown user costs
// the same comparison, so timing tells nothing about either.
func (c *Credentials) check(user, pass string) bool {
	cr, known := c.users[user]
	digest := sha256.Sum256([]byte(pass))
	if cr.hash == nil {
		equal := subtle.ConstantTimeCompare(digest[:], cr.digest[:]) == 1
		return known && equal
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	if _, hit := c.ok.Load(key); hit {
		return true
	}
	if bcrypt.CompareHashAndPassword(cr.hash, []byte(pass)) != nil {
		return false
	}
	c.ok.Store(key, struct{}{})
	return true
}

// AuthFile is a proxy_auth_file that can be re-read (on SIGHUP) without a
// restart. The zero value and a nil *AuthFile mean no authentication.
type AuthFile struct {
	path string
	cur  atomic.Pointer[Credentials]
}

// NewAuthFile reads path once; a bad file is an error at start.
func NewAuthFile(path string) (*AuthFile, error) {
	a := &AuthFile{path: path}
	return a, a.Reload()
}

// Reload re-reads the file; on failure the previous credentials stay.
func (a *AuthFile) Reload() error {
	c, err := LoadCredentials(a.path)
	if err != nil {
		return err
	}
	a.cur.Store(c)
	return nil
}

// checkProxyAuth enforces Proxy-Authorization: Basic when an auth file is
// configured, in forward and base-URL modes alike.
func (p *Proxy) checkProxyAuth(r *http.Request) *Error {
	if p.auth == nil {
		return nil
	}
	creds := p.auth.cur.Load()
	h := r.Header.Get("Proxy-Authorization")
	if h == "" {
		return newError(KindProxyAuthRequired, nil, "this proxy requires credentials: use "+
			"HTTP_PROXY=http://USER:PASSWORD@%s (curl: -x http://USER:PASSWORD@HOST:PORT), or send Proxy-Authorization: Basic", r.Host)
	}
	user, pass, ok := parseBasic(h)
	if !ok || creds == nil || !creds.check(user, pass) {
		return newError(KindProxyAuthRequired, nil, "the proxy credentials were not accepted; check the user and "+
			"password against access.proxy_auth_file")
	}
	return nil
}

// parseBasic decodes "Basic base64(user:password)" (RFC 7617).
func parseBasic(h string) (user, pass string, ok bool) {
	scheme, rest, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
