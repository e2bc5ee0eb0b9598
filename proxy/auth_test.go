package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"go.uber.org/zap"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"golang.org/x/crypto/bcrypt"
)

func TestProxyAuth(t *testing.T) {
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	hash, err := bcrypt.GenerateFromPassword([]byte("hashed-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users")
	os.WriteFile(file, []byte("# users of the sidecar\nsvc:plain-pw\n\nbatch:"+string(hash)+"\n"), 0o600)
	auth, err := proxy.NewAuthFile(file)
	if err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, testConfig{ProxyAuth: auth, Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	clientAs := func(userinfo *url.Userinfo) *http.Client {
		pu, _ := url.Parse(e.url)
		pu.User = userinfo
		tr := &http.Transport{Proxy: http.ProxyURL(pu)}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	tests := []struct {
		name   string
		user   *url.Userinfo
		status int
	}{
		{"no credentials", nil, http.StatusProxyAuthRequired},
		{"wrong password", url.UserPassword("svc", "nope"), http.StatusProxyAuthRequired},
		{"unknown user", url.UserPassword("eve", "plain-pw"), http.StatusProxyAuthRequired},
		{"plain password", url.UserPassword("svc", "plain-pw"), http.StatusOK},
		{"bcrypt password", url.UserPassword("batch", "hashed-pw"), http.StatusOK},
		{"bcrypt, wrong password", url.UserPassword("batch", "plain-pw"), http.StatusProxyAuthRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Requests()
			resp, body := get(t, clientAs(tt.user), "http://"+hostA+"/v1/x")
			if tt.status == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				if _, ok := decodeEcho(t, body).Header["Proxy-Authorization"]; ok {
					t.Error("Proxy-Authorization reached the upstream")
				}
				return
			}
			wantProxyError(t, resp, body, tt.status, failure.KindProxyAuthRequired)
			if !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic") {
				t.Errorf("Proxy-Authenticate %q", resp.Header.Get("Proxy-Authenticate"))
			}
			if up.Requests() != before {
				t.Error("an unauthenticated request reached the upstream")
			}
		})
	}
	// Base-URL mode takes the same header.
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/x", nil)
	req.Header.Set("Proxy-Authorization", "Basic c3ZjOnBsYWluLXB3") // svc:plain-pw
	if resp, body := do(t, plainClient(t), req); resp.StatusCode != http.StatusOK {
		t.Errorf("base-URL mode with credentials: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, plainClient(t), e.url+"/v1/x"); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("base-URL mode without credentials: %d %s", resp.StatusCode, body)
	}
}

func TestParseCredentials(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"no colon", "svc\n", "line 1: want user:password"},
		{"empty password", "# c\nsvc:\n", "line 2"},
		{"duplicate", "a:1\na:2\n", `user "a" appears twice`},
		{"bad bcrypt", "a:$2y$zz\n", "malformed bcrypt"},
		{"empty", "# nobody\n", "refuse everyone"},
		{"bcrypt cost 15", "# users\nsvc:plain\n\nslow:" + withCost(t, 15) + "\n", `line 4: user "slow": bcrypt cost 15 is outside 4-14`},
		{"bcrypt cost 31", "a:" + withCost(t, 31) + "\n", `line 1: user "a": bcrypt cost 31 is outside 4-14`},
		{"bcrypt cost 3", "a:1\nb:" + withCost(t, 3) + "\n", `line 2: user "b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proxy.ParseCredentials([]byte(tt.data), "users")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), ":2\n") || strings.Contains(err.Error(), "$2a$") {
				t.Error("a password or hash appears in the error")
			}
		})
	}
}

// withCost is a well-formed bcrypt hash that claims cost: a cost-4 hash
// with its cost field rewritten, since computing one at cost 15 or more
// takes seconds (and at 31, days).
func withCost(t *testing.T, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("$2a$%02d$%s", cost, h[7:])
}

// authEnv is a proxy whose proxy_auth_file has a plain user (svc), two
// bcrypt users of different costs (low at 4, high at 6), and whose bcrypt
// comparisons go through compare.
func authEnv(t *testing.T, compare func(hash, password []byte) error) (*env, *proxy.AuthFile) {
	t.Helper()
	ps := newPKI(t)
	up := startStandin(t, ps, nil)
	low, err := bcrypt.GenerateFromPassword([]byte("low-pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	high, err := bcrypt.GenerateFromPassword([]byte("high-pw"), 6)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(file, []byte("svc:plain-pw\nlow:"+string(low)+"\nhigh:"+string(high)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := proxy.NewAuthFile(file)
	if err != nil {
		t.Fatal(err)
	}
	proxy.SetBcryptCompare(auth, compare)
	e := startProxy(t, testConfig{ProxyAuth: auth, Upstreams: []upstream.Config{
		upstreamConfig("live", hostA, up.Addr, ps, sourceOf(ps.client))}})
	return e, auth
}

// authGet sends one base-URL request with Basic credentials and returns
// its status.
func authGet(t *testing.T, c *http.Client, e *env, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/x", nil)
	req.SetBasicAuth(user, pass)
	req.Header["Proxy-Authorization"], req.Header["Authorization"] = req.Header["Authorization"], nil
	resp, _ := do(t, c, req)
	return resp.StatusCode
}

// TestProxyAuthUnknownUserCostsABcrypt: an unknown user pays one bcrypt
// comparison at the file's highest cost, as a bcrypt user does, so the
// time of a 407 does not tell whether the user exists. Proved by counting
// through the comparison seam; the times are only logged, since a ratio of
// timings on a loaded machine under -race is no assertion.
func TestProxyAuthUnknownUserCostsABcrypt(t *testing.T) {
	var mu sync.Mutex
	var costs []int
	e, _ := authEnv(t, func(hash, password []byte) error {
		c, _ := bcrypt.Cost(hash)
		mu.Lock()
		costs = append(costs, c)
		mu.Unlock()
		return bcrypt.CompareHashAndPassword(hash, password)
	})
	c := plainClient(t)
	compared := func(user, pass string, want int) []int {
		t.Helper()
		mu.Lock()
		costs = nil
		mu.Unlock()
		if got := authGet(t, c, e, user, pass); got != want {
			t.Errorf("%s: status %d, want %d", user, got, want)
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(costs)
	}
	for _, tt := range []struct {
		user, pass string
		status     int
		want       []int // bcrypt costs compared
	}{
		// Unknown users: one comparison at the file's highest cost (6),
		// not none (which answers in microseconds) and not the low cost.
		{"eve", "whatever", http.StatusProxyAuthRequired, []int{6}},
		{"nobody", "", http.StatusProxyAuthRequired, []int{6}},
		{"high", "wrong", http.StatusProxyAuthRequired, []int{6}},
		{"low", "wrong", http.StatusProxyAuthRequired, []int{4}},
		{"high", "high-pw", http.StatusOK, []int{6}},
		{"high", "high-pw", http.StatusOK, nil}, // a success is cached
		{"svc", "wrong", http.StatusProxyAuthRequired, nil},
	} {
		if got := compared(tt.user, tt.pass, tt.status); !slices.Equal(got, tt.want) {
			t.Errorf("%s:%s: bcrypt comparisons at costs %v, want %v", tt.user, tt.pass, got, tt.want)
		}
	}

	// For the log only, medians of 5, interleaved: an unknown user's 407
	// takes about as long as a wrong password of the cost-6 user (before
	// the dummy comparison the ratio was under 0.01).
	var unknown, known []time.Duration
	for i := range 5 {
		start := time.Now()
		authGet(t, c, e, "nobody", fmt.Sprint("pw", i))
		unknown = append(unknown, time.Since(start))
		start = time.Now()
		authGet(t, c, e, "high", fmt.Sprint("pw", i))
		known = append(known, time.Since(start))
	}
	slices.Sort(unknown)
	slices.Sort(known)
	t.Logf("median 407 time: unknown user %s, cost-6 user %s, ratio %.2f",
		unknown[2], known[2], float64(unknown[2])/float64(known[2]))
}

// TestProxyAuthBcryptBounded: concurrent bcrypt comparisons never exceed
// the bound, whatever the number of parallel requests; the others wait, and
// one whose client leaves while waiting never compares.
func TestProxyAuthBcryptBounded(t *testing.T) {
	var inflight, peak, calls atomic.Int64
	release := make(chan struct{})
	e, auth := authEnv(t, func(hash, password []byte) error {
		n := inflight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		calls.Add(1)
		<-release
		inflight.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	})
	bound := int64(proxy.BcryptConcurrency(auth))
	const requests = 12
	var wg sync.WaitGroup
	var once sync.Once
	defer func() { once.Do(func() { close(release) }); wg.Wait() }() // also when the test stops early
	statuses := make(chan int, requests)
	for i := range requests {
		wg.Go(func() {
			statuses <- authGet(t, plainClient(t), e, "high", fmt.Sprint("guess-", i))
		})
	}
	waitFor(t, "the first comparisons to start", func() bool { return inflight.Load() >= bound })
	// A client that gives up while it waits for a slot: its check ends with
	// its request and never compares.
	quitter := plainClient(t)
	quitter.Timeout = 300 * time.Millisecond
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/x", nil)
	req.Header.Set("Proxy-Authorization", "Basic aGlnaDpxdWl0dGVy") // high:quitter
	if resp, err := quitter.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("the waiting request was answered %d while every slot was held", resp.StatusCode)
	}
	// Watch for a while that no comparison beyond the bound starts: the
	// other requests have long arrived (loopback), and without a bound they
	// would all be comparing now.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if n := inflight.Load(); n > bound {
			t.Errorf("%d bcrypt comparisons at once, want at most %d", n, bound)
			break
		}
	}
	waitFor(t, "the quitter's request to end", func() bool {
		return e.logs.FilterMessage("request").FilterField(zap.Int("status", http.StatusProxyAuthRequired)).Len() >= 1
	})
	once.Do(func() { close(release) })
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusProxyAuthRequired {
			t.Errorf("status %d, want 407", st)
		}
	}
	t.Logf("%d parallel requests: at most %d comparisons at once (bound %d), %d comparisons in all",
		requests, peak.Load(), bound, calls.Load())
	if peak.Load() > bound {
		t.Errorf("peak %d comparisons at once, want at most %d", peak.Load(), bound)
	}
	if calls.Load() != requests {
		t.Errorf("%d comparisons, want %d: one per waiting request, none for the one whose client left", calls.Load(), requests)
	}
}
