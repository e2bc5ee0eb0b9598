package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// healthServer starts an admin stand-in on loopback answering with h.
func healthServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// healthRefusedAddr is a loopback address nothing listens on.
func healthRefusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func healthRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHealth(t *testing.T) {
	t.Parallel()
	srv := startHealthServers(t)
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
		notStderr  []string
	}{
		{name: "up", args: []string{"--url", srv.up + "/readyz"}, wantCode: exitOK, wantStdout: []string{"200 OK"}},
		{name: "down", args: []string{"--url", "http://" + healthRefusedAddr(t) + "/readyz"}, wantCode: exitFailure,
			wantStderr: []string{"connection refused", "admin_listen"}},
		{name: "slow", args: []string{"--url", srv.slow + "/readyz", "--timeout", "100ms"}, wantCode: exitFailure,
			wantStderr: []string{"timeout", "100ms"}},
		{name: "503 with a text body", args: []string{"--url", srv.plain503 + "/readyz"}, wantCode: exitFailure,
			wantStderr: []string{"503 Service Unavailable", "no valid certificate for upstream live: domain.pem is a CSR"},
			notStderr:  []string{"second line"}},
		{name: "503 with indented JSON", args: []string{"--url", srv.json503 + "/readyz"}, wantCode: exitFailure,
			wantStderr: []string{"503", `{"ready":false,"upstreams":{"live":{"ready":false,"reason":"expired"}}}`}},
		{name: "redirect not followed", args: []string{"--url", srv.redirect + "/readyz"}, wantCode: exitFailure,
			wantStderr: []string{"302 Found", "/elsewhere", "not followed"}},
		{name: "long body cut", args: []string{"--url", srv.long503 + "/readyz"}, wantCode: exitFailure,
			wantStderr: []string{"503", "xxx..."}, notStderr: []string{srv.huge}},
		{name: "help", args: []string{"-h"}, wantCode: exitOK, wantStderr: []string{"--url", "--timeout", "-url", "-timeout"}},
		{name: "unknown flag", args: []string{"--port", "9090"}, wantCode: exitUsage, wantStderr: []string{"-port"}},
		{name: "stray argument", args: []string{srv.up}, wantCode: exitUsage, wantStderr: []string{"unexpected argument"}},
		{name: "not an http URL", args: []string{"--url", "ftp://127.0.0.1:9090/readyz"}, wantCode: exitUsage,
			wantStderr: []string{"--url", "not an http:// or https:// URL"}},
		{name: "no host", args: []string{"--url", "/readyz"}, wantCode: exitUsage, wantStderr: []string{"--url"}},
		{name: "zero timeout", args: []string{"--timeout", "0s"}, wantCode: exitUsage, wantStderr: []string{"--timeout", "not positive"}},
		{name: "bad timeout", args: []string{"--timeout", "2"}, wantCode: exitUsage, wantStderr: []string{"-timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := healthRun(t, append([]string{"health"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			for _, w := range tc.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q does not contain %q", stdout, w)
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			for _, w := range tc.notStderr {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr %q contains %q", stderr, w)
				}
			}
			if tc.wantCode == exitFailure && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("a failure is one line on stderr, got:\n%s", stderr)
			}
		})
	}
}

// healthServers are the admin stand-ins TestHealth probes, by base URL.
type healthServers struct {
	slow     string // never answers before the client gives up
	up       string // 200 on GET /readyz
	plain503 string // 503 with a text body of several lines
	json503  string // 503 with indented JSON
	redirect string // 302 to /elsewhere
	long503  string // 503 with a body of huge
	huge     string
}

func startHealthServers(t *testing.T) healthServers {
	t.Helper()
	// slow returns when the client hangs up, or at the latest when the test ends.
	release := make(chan struct{})
	slow := healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before slow's Close (cleanups are LIFO)
	s := healthServers{slow: slow, huge: strings.Repeat("x", 10_000)}
	s.up = healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || r.Method != http.MethodGet {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		w.Write([]byte("ok\n"))
	})
	s.plain503 = healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("\nno valid certificate for upstream live: domain.pem is a CSR\nsecond line\n"))
	})
	s.json503 = healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("{\n  \"ready\": false,\n  \"upstreams\": {\n    \"live\": {\"ready\": false, \"reason\": \"expired\"}\n  }\n}\n"))
	})
	s.redirect = healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	s.long503 = healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, s.huge, http.StatusServiceUnavailable)
	})
	return s
}

// TestHealthIgnoresProxyEnvironment: the probe asks the URL itself even
// when the image sets HTTP_PROXY for the application (and NO_PROXY misses
// the admin host), so a proxy that would say 200 must never be asked.
func TestHealthIgnoresProxyEnvironment(t *testing.T) {
	var asked atomic.Int32
	fakeProxy := healthServer(t, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Write([]byte("ok\n"))
	})
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		t.Setenv(k, fakeProxy)
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	// .invalid never resolves (RFC 6761 §6.4): only a proxy could answer.
	code, _, stderr := healthRun(t, "health", "--url", "http://admin.payrails-proxy.invalid:9090/readyz", "--timeout", "2s")
	if code != exitFailure {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailure, stderr)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the proxy from the environment was asked %d times, want 0", n)
	}
}

// TestHealthDefaultURL keeps the default --url on the default admin port.
func TestHealthDefaultURL(t *testing.T) {
	t.Parallel()
	_, _, stderr := healthRun(t, "health", "-h")
	if want := "http://127.0.0.1:9090/readyz"; !strings.Contains(stderr, want) {
		t.Errorf("health -h does not show the default URL %s:\n%s", want, stderr)
	}
}

// healthReadyServer starts an admin stand-in answering 200 on GET /readyz
// on the loopback address host ("127.0.0.1" or "::1") and returns its port.
func healthReadyServer(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no loopback listener on %s here: %v", host, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// healthConfigFile writes a configuration file and returns its path.
func healthConfigFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHealthAsksTheConfiguredAdminAddress: without --url, health asks the
// admin address serve would listen on, from the same sources and with the
// same precedence (flags > PAYRAILS_PROXY_ADMIN_LISTEN > the file of
// --config or PAYRAILS_PROXY_CONFIG > the default), and an address bound to
// all interfaces on loopback (issue 25: the image's HEALTHCHECK asked the
// default port after PAYRAILS_PROXY_ADMIN_LISTEN had moved it).
func TestHealthAsksTheConfiguredAdminAddress(t *testing.T) {
	up := healthReadyServer(t, "127.0.0.1")
	refused := healthRefusedAddr(t)
	// Everything else in the file is what serve would refuse without its
	// own flags (no upstream at all): health needs only admin_listen.
	file := func(admin string) string {
		return healthConfigFile(t, "admin_listen: "+admin+"\nlog: {level: debug}\n")
	}
	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantCode  int
		wantAsked string // in stdout on success, in stderr otherwise
		wantErr   []string
	}{
		{name: "environment, all interfaces", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "0.0.0.0:" + up},
			wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "environment, empty host", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": ":" + up},
			wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "file from PAYRAILS_PROXY_CONFIG", env: map[string]string{"PAYRAILS_PROXY_CONFIG": file("127.0.0.1:" + up)},
			wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "file from --config", args: []string{"--config", file("0.0.0.0:" + up)},
			wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "environment beats the file",
			env:      map[string]string{"PAYRAILS_PROXY_CONFIG": file(refused), "PAYRAILS_PROXY_ADMIN_LISTEN": "127.0.0.1:" + up},
			wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "--admin-listen beats the environment", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": refused},
			args: []string{"--admin-listen", "0.0.0.0:" + up}, wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "--url beats everything", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": refused, "PAYRAILS_PROXY_CONFIG": "/nonexistent.yaml"},
			args: []string{"--url", "http://127.0.0.1:" + up + "/readyz"}, wantCode: exitOK, wantAsked: "http://127.0.0.1:" + up + "/readyz"},
		{name: "the configured address is down", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": refused},
			wantCode: exitFailure, wantAsked: "http://" + refused + "/readyz", wantErr: []string{"connection refused"}},
		{name: "port 0", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "127.0.0.1:0"},
			wantCode: exitUsage, wantErr: []string{"port 0", "--url"}},
		{name: "bad address", env: map[string]string{"PAYRAILS_PROXY_ADMIN_LISTEN": "nine-oh-nine-oh"},
			wantCode: exitUsage, wantErr: []string{"PAYRAILS_PROXY_ADMIN_LISTEN", "HOST:PORT", "--url"}},
		{name: "unreadable file", env: map[string]string{"PAYRAILS_PROXY_CONFIG": "/nonexistent/config.yaml"},
			wantCode: exitUsage, wantErr: []string{"/nonexistent/config.yaml", "--url"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"PAYRAILS_PROXY_ADMIN_LISTEN", "PAYRAILS_PROXY_CONFIG"} {
				t.Setenv(k, tc.env[k]) // empty counts as unset, as for serve
			}
			code, stdout, stderr := healthRun(t, append([]string{"health", "--timeout", "5s"}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q, stderr %q", code, tc.wantCode, stdout, stderr)
			}
			out := stdout
			if code != exitOK {
				out = stderr
			}
			if !strings.Contains(out, tc.wantAsked) {
				t.Errorf("output %q does not name the URL asked, %s", out, tc.wantAsked)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
		})
	}
}

// TestHealthAsksIPv6Loopback: an admin address on all IPv6 interfaces is
// asked on [::1].
func TestHealthAsksIPv6Loopback(t *testing.T) {
	up := healthReadyServer(t, "::1")
	t.Setenv("PAYRAILS_PROXY_CONFIG", "")
	t.Setenv("PAYRAILS_PROXY_ADMIN_LISTEN", "[::]:"+up)
	code, stdout, stderr := healthRun(t, "health")
	if want := "http://[::1]:" + up + "/readyz"; code != exitOK || !strings.Contains(stdout, want) {
		t.Errorf("exit code %d, stdout %q, stderr %q; want 0 and %s asked", code, stdout, stderr, want)
	}
}
