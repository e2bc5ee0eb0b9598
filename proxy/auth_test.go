package proxy_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	e := startProxy(t, proxy.Config{ProxyAuth: auth, Upstreams: []proxy.UpstreamConfig{
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
			wantProxyError(t, resp, body, tt.status, proxy.KindProxyAuthRequired)
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
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proxy.ParseCredentials([]byte(tt.data), "users")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), ":2\n") {
				t.Error("a password appears in the error")
			}
		})
	}
}
