package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"
	"golang.org/x/crypto/bcrypt"
)

// Limits of proxy authentication.
const (
	// minBcryptCost and maxBcryptCost bound the cost of a bcrypt hash in a
	// proxy_auth_file. bcrypt itself refuses less than 4; every step up
	// doubles the work, and above 14 one check takes over a second of a
	// core (5, htpasswd -B's default, to 12 are usual), which a client
	// sending wrong passwords could turn into a denial of service.
	minBcryptCost = bcrypt.MinCost
	maxBcryptCost = 14
)

// bcryptSlots is how many bcrypt comparisons run at once: half the cores
// the Go runtime uses, at least one, so that checking proxy credentials
// never takes every core from the requests being served. More wait.
func bcryptSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Credentials are the users allowed to use the proxy, from a
// proxy_auth_file: one "user:password" per line, where the password may be
// a bcrypt hash ($2a$, $2b$, $2y$, as `htpasswd -B` writes) of cost 4 to 14.
// Blank lines and lines starting with # are ignored. Immutable once parsed.
type Credentials struct {
	users map[string]credential
	// dummy is a bcrypt hash at the file's highest cost, compared for an
	// unknown user so that its refusal costs what a bcrypt user's does;
	// nil when the file has no bcrypt user.
	dummy []byte
	// ok caches successful bcrypt checks by digest of user:password, so a
	// client paying bcrypt's deliberate cost once does not pay it per request.
	ok sync.Map
}

type credential struct {
	digest [sha256.Size]byte // of a plain password
	hash   []byte            // a bcrypt hash, when set
}

// ParseCredentials reads a proxy_auth_file's content; name is used in
// messages. Errors name the line, never its password. With bcrypt users it
// computes one hash at their highest cost (up to a second at cost 14).
func ParseCredentials(data []byte, name string) (*Credentials, error) {
	c := &Credentials{users: map[string]credential{}}
	maxCost := 0
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
			cost, err := bcrypt.Cost([]byte(pass))
			if err != nil {
				return nil, fmt.Errorf("%s line %d: user %q has a malformed bcrypt hash: %w", name, n, user, err)
			}
			if cost < minBcryptCost || cost > maxBcryptCost {
				return nil, fmt.Errorf("%s line %d: user %q: bcrypt cost %d is outside %d-%d: above %d each check "+
					"takes seconds of CPU; hash the password again with a cost such as 10 (htpasswd -B -C 10)",
					name, n, user, cost, minBcryptCost, maxBcryptCost, maxBcryptCost)
			}
			cr.hash = []byte(pass)
			maxCost = max(maxCost, cost)
		}
		c.users[user] = cr
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(c.users) == 0 {
		return nil, fmt.Errorf("%s holds no user:password line; the proxy would refuse everyone", name)
	}
	if maxCost > 0 {
		dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), maxCost)
		if err != nil {
			return nil, fmt.Errorf("%s: making the comparison hash for unknown users: %w", name, err)
		}
		c.dummy = dummy
	}
	return c, nil
}

// maxCredentialsFile bounds a proxy_auth_file: thousands of users.
const maxCredentialsFile = 1 << 20

// LoadCredentials reads a proxy_auth_file: a regular file only, never
// waited on (internal/safefile).
func LoadCredentials(path string) (*Credentials, error) {
	data, _, err := safefile.Read(path, maxCredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("reading proxy_auth_file: %w", err)
	}
	return ParseCredentials(data, path)
}

// bcryptGate runs bcrypt comparisons, at most cap(slots) at once; the
// others wait for a slot or for the end of their request. An AuthFile
// shares one gate across reloads, so a reload never resets the bound.
type bcryptGate struct {
	slots   chan struct{}
	compare func(hash, password []byte) error // bcrypt.CompareHashAndPassword; a seam for tests
}

// compareHash compares password with hash once a slot is free; it returns
// ctx's error if the request ends first.
func (g *bcryptGate) compareHash(ctx context.Context, hash, password []byte) error {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.slots }()
	return g.compare(hash, password)
}

// check reports whether user and pass are valid. A plain password is
// compared through its SHA-256 in constant time; a bcrypt one through the
// gate. An unknown user costs what a known one does: one bcrypt comparison
// at the file's highest cost when it has bcrypt users, else one digest
// comparison. (In a file mixing both kinds a plain user answers faster
// than an unknown one, which tells that the name exists: use one kind.)
func (c *Credentials) check(ctx context.Context, g *bcryptGate, user, pass string) bool {
	cr, known := c.users[user]
	switch {
	case !known && c.dummy != nil:
		_ = g.compareHash(ctx, c.dummy, []byte(pass))
		return false
	case cr.hash == nil:
		digest := sha256.Sum256([]byte(pass))
		equal := subtle.ConstantTimeCompare(digest[:], cr.digest[:]) == 1
		return known && equal
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	if _, hit := c.ok.Load(key); hit {
		return true
	}
	if g.compareHash(ctx, cr.hash, []byte(pass)) != nil {
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
	gate *bcryptGate
}

// NewAuthFile reads path once; a bad file is an error at start.
func NewAuthFile(path string) (*AuthFile, error) {
	a := &AuthFile{path: path, gate: &bcryptGate{slots: make(chan struct{}, bcryptSlots()), compare: bcrypt.CompareHashAndPassword}}
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
func (a *admission) checkProxyAuth(r *http.Request) *failure.Error {
	if a.auth == nil {
		return nil
	}
	creds := a.auth.cur.Load()
	h := r.Header.Get("Proxy-Authorization")
	if h == "" {
		return failure.New(failure.KindProxyAuthRequired, nil, "this proxy requires credentials: use "+
			"HTTP_PROXY=http://USER:PASSWORD@%[1]s (curl: -x http://USER:PASSWORD@%[1]s), or send Proxy-Authorization: Basic",
			proxyAddress(r))
	}
	user, pass, ok := parseBasic(h)
	if !ok || creds == nil || !creds.check(r.Context(), a.auth.gate, user, pass) {
		return failure.New(failure.KindProxyAuthRequired, nil, "the proxy credentials were not accepted; check the user and "+
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
