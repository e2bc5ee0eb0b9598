package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// TestServeEndToEnd runs the wired app from a YAML file: forward and
// base-URL requests reach the stand-in with the certificate from the folder.
func TestServeEndToEnd(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	if _, _, err := leaf.WriteFiles(w.certDir, "domain.pem", "domain.key"); err != nil {
		t.Fatal(err)
	}
	r := startApp(t, w.configFile(t, ""))
	serial, err := echoSerial(r.client(t))
	if err != nil || serial != serialOf(leaf) {
		t.Fatalf("forward mode: serial %q, %v; want %s", serial, err, serialOf(leaf))
	}
	resp, err := http.Get("http://" + r.addr + "/v1/echo")
	if err != nil {
		t.Fatal(err)
	}
	var e standin.Echo
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 200 || e.Host != apiHost || e.Client.Serial != serialOf(leaf) {
		t.Errorf("base-URL mode: status %d host %q serial %q", resp.StatusCode, e.Host, e.Client.Serial)
	}
}

// TestCurlInterop: curl, as legacy services' scripts use it, through
// http_proxy (curl reads only the lower-case one for http://), -x, and the
// base URL.
func TestCurlInterop(t *testing.T) {
	curl := interop.Tool(t, "curl")
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, ""))
	target := "http://" + apiHost + "/v1/payments?x=1"
	cases := []struct {
		name string
		args []string
		env  []string
	}{
		{"http_proxy", []string{"-sS", "-f", target}, []string{"http_proxy=http://" + r.addr}},
		{"-x", []string{"-sS", "-f", "-x", "http://" + r.addr, target}, nil},
		{"base URL", []string{"-sS", "-f", "http://" + r.addr + "/v1/payments?x=1"}, nil},
		{"POST with body", []string{"-sS", "-f", "-x", "http://" + r.addr, "-H", "Content-Type: application/json",
			"-H", "x-idempotency-key: k1", "--data", `{"amount":100}`, target}, nil},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(curl, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			cmd.Env = append(cmd.Env, "no_proxy=", "NO_PROXY=")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl %v: %v: %s", tt.args, err, stderr.String())
			}
			var e standin.Echo
			if err := json.Unmarshal(out, &e); err != nil {
				t.Fatalf("curl output %q: %v", out, err)
			}
			if e.Host != apiHost || e.Path != "/v1/payments" || e.Query != "x=1" || e.Client.Serial != serialOf(leaf) {
				t.Errorf("upstream saw host %q path %q query %q serial %q", e.Host, e.Path, e.Query, e.Client.Serial)
			}
			if strings.Contains(tt.name, "POST") && (e.Method != "POST" || e.BodyBytes != 14 || e.Header["X-Idempotency-Key"][0] != "k1") {
				t.Errorf("POST arrived as %s with %d bytes, headers %v", e.Method, e.BodyBytes, e.Header)
			}
		})
	}
}

// TestSIGHUPReloads: with a debounce too long to matter, only SIGHUP can
// make the app pick up the new certificate.
func TestSIGHUPReloads(t *testing.T) {
	w := newWorld(t)
	old := w.clientCert(t, "old", time.Now().Add(-2*time.Hour))
	old.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, "reload: {debounce: 1h, poll_interval: 1h}\n"))
	c := r.client(t)
	next := w.clientCert(t, "next", time.Now().Add(-time.Hour))
	next.WriteFiles(w.certDir, "domain.pem", "domain.key")
	if s, _ := echoSerial(c); s != serialOf(old) {
		t.Fatalf("before SIGHUP serial %s, want the old %s", s, serialOf(old))
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the new serial "+serialOf(next)+" after SIGHUP", 5*time.Second, func() bool {
		s, err := echoSerial(c)
		return err == nil && s == serialOf(next)
	})
}

// TestCLIFailures: bad configuration exits 2 naming key and file; a taken
// port exits 1 naming the address.
func TestCLIFailures(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	bad := w.configFile(t, "reload: {debounce: soon}\n")
	taken := freeAddrHeld(t)
	tests := []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"no command", nil, exitUsage, []string{"usage:", "serve", "demo"}},
		{"unknown command", []string{"frobnicate"}, exitUsage, []string{"unknown command"}},
		{"bad duration", []string{"serve", "--config", bad}, exitUsage, []string{"reload.debounce", bad}},
		{"http upstream", []string{"serve", "--upstream", "http://" + apiHost, "--cert-dir", w.certDir}, exitUsage,
			[]string{"--upstream", "https://"}},
		{"missing folder", []string{"serve", "--upstream", "https://" + apiHost, "--cert-dir", w.certDir + "/nope"}, exitUsage,
			[]string{"--cert-dir", "nope"}},
		{"port taken", []string{"serve", "--config", w.configFile(t, ""), "--listen", taken}, exitFailure,
			[]string{"cannot listen on " + taken, "another process"}},
		{"version", []string{"version"}, exitOK, []string{"payrails-mtls-proxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, errb.String())
			}
			all := out.String() + errb.String()
			for _, w := range tt.wants {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

// freeAddrHeld returns an address that a listener holds until the test ends.
func freeAddrHeld(t testing.TB) string {
	addr := freeAddr(t)
	ln, err := netListen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return addr
}

// TestDemo runs `demo` as a user would and follows the printed commands.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW, _ := os.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--key-type", "ecdsa"}, outW, &errb)
		outW.Close()
	}()
	var printed bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(printed.String(), "Ctrl-C") {
		n, err := outR.Read(buf)
		printed.Write(buf[:n])
		if err != nil {
			t.Fatalf("demo stopped before printing its commands: %v\n%s\n%s", err, printed.String(), errb.String())
		}
	}
	m := regexp.MustCompile(`curl -s (http://127\.0\.0\.1:\d+)/merchant/payments`).FindStringSubmatch(printed.String())
	if m == nil {
		t.Fatalf("no base-URL command in:\n%s", printed.String())
	}
	resp, err := http.Get(m[1] + "/merchant/payments")
	if err != nil {
		t.Fatal(err)
	}
	var e standin.Echo
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 200 || e.Client.Subject == "" {
		t.Errorf("demo request: status %d, client certificate %q", resp.StatusCode, e.Client.Subject)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("demo exit %d: %s", code, errb.String())
	}
	outR.Close()
}

// TestGracefulShutdown: cancelling the app (what SIGTERM does) lets a
// request in flight finish, then refuses new connections.
func TestGracefulShutdown(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	r := startApp(t, w.configFile(t, ""))
	c := r.client(t)
	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	before := w.api.Requests() // the app's own verification of its certificate counts too
	go func() {
		resp, err := c.Get("http://" + apiHost + "/delay/400ms")
		if err != nil {
			res <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, err}
	}()
	poll.Until(t, "the slow request to reach the upstream", 10*time.Second, func() bool { return w.api.Requests() > before })
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	got := <-res
	if got.err != nil || got.status != http.StatusOK {
		t.Errorf("in-flight request during shutdown: status %d, %v", got.status, got.err)
	}
	<-stopped
	if _, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
		t.Error("the proxy still accepts connections after shutdown")
	}
}
