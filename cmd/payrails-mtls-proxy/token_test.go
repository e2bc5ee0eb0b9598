package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// tokenPKI is a CA, an nginx server certificate and a client certificate,
// written as files.
type tokenPKI struct {
	dir, caFile, serverCert, serverKey, clientCert, clientKey string
}

func newTokenPKI(t testing.TB) *tokenPKI {
	t.Helper()
	ca, err := pki.NewCA("token test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, Organization: "Acme GmbH", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	p := &tokenPKI{dir: t.TempDir()}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	mustWrite(t, p.caFile, ca.CertPEM, 0o644)
	if p.serverCert, p.serverKey, err = srv.WriteFiles(p.dir, "server.pem", "server.key"); err != nil {
		t.Fatal(err)
	}
	if p.clientCert, p.clientKey, err = cl.WriteFiles(p.dir, "domain.pem", "domain.key"); err != nil {
		t.Fatal(err)
	}
	return p
}

// nginxTokenLocation answers like Payrails' token endpoint: a fixed token
// for the right x-api-key, Payrails' error shape otherwise.
const nginxTokenLocation = `
    location = /auth/token/cid {
      default_type application/json;
      if ($http_x_api_key != "s3cret") {
        return 401 '{"errors":[{"id":"e1","code":"unauthorized","detail":"Invalid x-api-key.","reason":"Unauthorized","docUrl":"https://docs.payrails.com/"}]}';
      }
      return 200 '{"access_token":"tok-from-nginx","token_type":"Bearer","expires_in":3600}';
    }`

func runCLI(t testing.TB, env []string, args ...string) (int, string, string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestTokenAgainstNginx: our token command against nginx with
// ssl_verify_client on gives the very bytes curl --cert --key gets, and
// a wrong secret gives a readable Payrails error and a failure exit.
func TestTokenAgainstNginx(t *testing.T) {
	curl := interop.Tool(t, "curl")
	p := newTokenPKI(t)
	ng := startNginx(t, p.serverCert, p.serverKey, p.caFile, nginxTokenLocation)
	_, port, _ := net.SplitHostPort(ng.addr)
	secretFile := filepath.Join(p.dir, "secret")
	mustWrite(t, secretFile, []byte("s3cret\n"), 0o600)
	wrongFile := filepath.Join(p.dir, "wrong")
	mustWrite(t, wrongFile, []byte("nope\n"), 0o600)
	base := []string{"token", "--client-id", "cid", "--upstream", "https://" + apiHost, "--address", ng.addr,
		"--ca-file", p.caFile, "--cert", p.clientCert, "--key", p.clientKey}

	code, out, errOut := runCLI(t, nil, append(base, "--client-secret-file", secretFile)...)
	if code != exitOK {
		t.Fatalf("token exit %d: %s", code, errOut)
	}
	// The guide's curl, against the same nginx.
	cmd := exec.Command(curl, "-sS", "-X", "POST", "--cert", p.clientCert, "--key", p.clientKey, "--cacert", p.caFile,
		"--connect-to", apiHost+":443:127.0.0.1:"+port, "-H", "x-api-key: s3cret", "-H", "Accept: application/json",
		"https://"+apiHost+"/auth/token/cid")
	curlOut, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if strings.TrimSpace(out) != strings.TrimSpace(string(curlOut)) {
		t.Errorf("token printed %q, curl got %q", out, curlOut)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal([]byte(out), &tok); tok.AccessToken != "tok-from-nginx" {
		t.Errorf("token %q", out)
	}

	code, out, _ = runCLI(t, []string{"PAYRAILS_CLIENT_SECRET=s3cret"}, append(base, "--output", "env")...)
	if code != exitOK || out != "export PAYRAILS_ACCESS_TOKEN='tok-from-nginx'\nexport PAYRAILS_ACCESS_TOKEN_EXPIRES_IN=3600\n" {
		t.Errorf("--output env (secret from env): exit %d, %q", code, out)
	}

	code, out, errOut = runCLI(t, nil, append(base, "--client-secret-file", wrongFile)...)
	if code != exitFailure || out != "" {
		t.Errorf("wrong secret: exit %d, stdout %q", code, out)
	}
	for _, w := range []string{"401", "unauthorized", "Invalid x-api-key", "Client ID"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("wrong-secret message lacks %q: %s", w, errOut)
		}
	}
	if strings.Contains(errOut, "nope") {
		t.Error("the error message contains the secret")
	}
}

// TestTokenAgainstStandin: the stand-in API issues a token; a certificate
// it does not trust is reported as refused.
func TestTokenAgainstStandin(t *testing.T) {
	w := newWorld(t)
	leaf := w.clientCert(t, "merchant", time.Now().Add(-time.Hour))
	leaf.WriteFiles(w.certDir, "domain.pem", "domain.key")
	secret := filepath.Join(t.TempDir(), "secret")
	mustWrite(t, secret, []byte("s3cret"), 0o600)
	args := []string{"token", "--client-id", "cid", "--client-secret-file", secret, "--upstream", "https://" + apiHost,
		"--address", w.api.Addr, "--ca-file", w.caFile}
	code, out, errOut := runCLI(t, nil, append(args, "--cert-dir", w.certDir)...)
	if code != exitOK || !strings.Contains(out, `"token_type":"Bearer"`) {
		t.Fatalf("exit %d, out %q, err %s", code, out, errOut)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	mustWrite(t, wrong, []byte("not-it"), 0o600)
	wargs := append([]string{}, args...)
	wargs[4] = wrong
	code, _, errOut = runCLI(t, nil, append(wargs, "--cert-dir", w.certDir)...)
	if code != exitFailure || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "Invalid client id or x-api-key") {
		t.Errorf("wrong secret: exit %d: %s", code, errOut)
	}
	// A certificate from another CA: refused by the server, said so.
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := other.Issue(pki.LeafOptions{CommonName: "stranger", Client: true})
	dir := t.TempDir()
	stranger.WriteFiles(dir, "domain.pem", "domain.key")
	code, _, errOut = runCLI(t, nil, append(args, "--cert-dir", dir)...)
	if code != exitFailure || !strings.Contains(errOut, "refused the client certificate") {
		t.Errorf("stranger: exit %d: %s", code, errOut)
	}
	// No secret anywhere: a usage error, not a request.
	os.Unsetenv("PAYRAILS_CLIENT_SECRET")
	code, _, errOut = runCLI(t, nil, "token", "--client-id", "cid", "--upstream", "https://"+apiHost, "--cert-dir", w.certDir)
	if code != exitUsage || !strings.Contains(errOut, "PAYRAILS_CLIENT_SECRET") {
		t.Errorf("no secret: exit %d: %s", code, errOut)
	}
}
