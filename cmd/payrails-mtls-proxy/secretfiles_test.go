package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestSecretFilesWarned (issue 22, item 7): the client secret, proxy-auth
// and via-auth files readable by group or others each get a warning at
// start naming the file, its mode and the chmod to run, as key files do;
// files readable by their owner only get none.
func TestSecretFilesWarned(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	w := newWorld(t)
	secret := file("client-secret", 0o644, "s3cret\n")
	via := file("via-auth", 0o644, "user:pw\n")
	auth := file("proxy-auth", 0o604, "user:pw\n") // others, not just this process's group
	private := file("private-secret", 0o600, "s3cret\n")
	cfgPath := w.configFile(t, `    token: {client_id: cid, client_secret_file: `+secret+`}
    via: http://127.0.0.1:3128
    via_auth_file: `+via+`
  - name: staging
    url: https://staging.`+apiHost+`
    cert_dir: `+w.certDir+`
    token: {client_id: cid, client_secret_file: `+private+`}
access: {proxy_auth_file: `+auth+`}`)
	cfg, err := config.Load(cfgPath, func(string) (string, bool) { return "", false }, config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	warnExposedSecrets(cfg, zap.New(core))
	got := map[string]string{}
	for _, e := range logs.All() {
		got[e.ContextMap()["file"].(string)] = e.Message
	}
	for _, p := range []string{secret, via, auth} {
		if msg, ok := got[p]; !ok || !strings.Contains(msg, "chmod 600 "+p) {
			t.Errorf("no warning naming %s and the chmod to run: %v", p, got)
		}
	}
	if _, ok := got[private]; ok || len(got) != 3 {
		t.Errorf("warnings %v, want exactly the three files readable by others", got)
	}
}

// TestSecretFileFIFO (issue 22, item 10): a FIFO moved over the client
// secret file after start (config refuses one at start) fails the next
// token fetch at once with a message naming it, never a reader waiting
// for a writer: requests get 502 token, and the app still stops.
func TestSecretFileFIFO(t *testing.T) {
	w := newWorld(t)
	if _, _, err := w.clientCert(t, "a", time.Now().Add(-time.Hour)).WriteFiles(w.certDir, "domain.pem", "domain.key"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte("wrong-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startApp(t, w.configFile(t, "    token: {client_id: cid, client_secret_file: "+secret+"}"))
	c := r.client(t)
	c.Timeout = 3 * time.Second
	get := func() int {
		resp, err := c.Get("http://" + apiHost + "/v1/x")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get(); st != http.StatusBadGateway {
		t.Fatalf("with a wrong secret: status %d, want 502 token", st)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, secret); err != nil {
		t.Fatal(err)
	}
	names := func() bool {
		for _, e := range r.logs.FilterMessage("request").All() {
			if cause, _ := e.ContextMap()["cause"].(string); strings.Contains(cause, "is a FIFO (named pipe)") {
				return true
			}
		}
		return false
	}
	poll.Until(t, "a request's log line to name the FIFO (the fetch after the back-off)", 15*time.Second, func() bool {
		if st := get(); st != http.StatusBadGateway {
			t.Fatalf("status %d (0: no answer within 3 s), want 502 token", st)
		}
		return names()
	})
}
