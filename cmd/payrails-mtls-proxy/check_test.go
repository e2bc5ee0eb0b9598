package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

// checkCmd runs `payrails-mtls-proxy check` with args, as main does.
func checkCmd(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"check"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

const liveCN = "api.acme.payrails.io"

// issueLive issues a client certificate for the live Payrails host valid
// from nb to na (zero: an hour ago for a year).
func issueLive(t testing.TB, ca *pki.CA, nb, na time.Time) *pki.Leaf {
	t.Helper()
	l, err := ca.Issue(pki.LeafOptions{CommonName: liveCN, NotBefore: nb, NotAfter: na, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeLeaf(t testing.TB, l *pki.Leaf, dir, cert, key string) {
	t.Helper()
	if _, _, err := l.WriteFiles(dir, cert, key); err != nil {
		t.Fatal(err)
	}
}

// TestCheckFolders runs check on the folders operators end up with.
func TestCheckFolders(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		setup    func(t *testing.T, ca *pki.CA, dir string) []string // lays out dir, returns the flags
		wantCode int
		wants    []string // in stdout
	}{
		{"good pair", func(t *testing.T, ca *pki.CA, dir string) []string {
			writeLeaf(t, issueLive(t, ca, time.Time{}, time.Time{}), dir, "domain.pem", "domain.key")
			return []string{"--cert-dir", dir}
		}, exitOK, []string{"domain.pem   certificate: CN api.acme.payrails.io", "domain.key   private key, mode 0600",
			"domain.pem + domain.key   <- in use", "Payrails live API of company acme", "SHA-256", "valid, 36",
			"In use: domain.pem + domain.key", "the only valid certificate", "Findings: none.", "OK: the proxy would present"}},
		{"CSR in place of the certificate", func(t *testing.T, ca *pki.CA, dir string) []string {
			l := issueLive(t, ca, time.Time{}, time.Time{})
			mustWriteFile(t, filepath.Join(dir, "domain.csr"), csrOf(t, l), 0o644)
			mustWriteFile(t, filepath.Join(dir, "domain.key"), l.KeyPEM, 0o600)
			return []string{"--cert", filepath.Join(dir, "domain.csr"), "--key", filepath.Join(dir, "domain.key")}
		}, exitFailure, []string{"domain.csr  certificate signing request", "ERROR", "NO_START_LINE", "domain.pem",
			"NOT READY", "503"}},
		{"only the CSR and the key in the folder", func(t *testing.T, ca *pki.CA, dir string) []string {
			l := issueLive(t, ca, time.Time{}, time.Time{})
			mustWriteFile(t, filepath.Join(dir, "domain.csr"), csrOf(t, l), 0o644)
			mustWriteFile(t, filepath.Join(dir, "domain.key"), l.KeyPEM, 0o600)
			return []string{"--cert-dir", dir}
		}, exitFailure, []string{"NO_START_LINE", "NOT READY"}},
		{"mismatched pair", func(t *testing.T, ca *pki.CA, dir string) []string {
			a, b := issueLive(t, ca, time.Time{}, time.Time{}), issueLive(t, ca, time.Time{}, time.Time{})
			writeLeaf(t, a, dir, "domain.pem", "a.key")
			writeLeaf(t, b, dir, "b.pem", "domain.key")
			return []string{"--cert", filepath.Join(dir, "domain.pem"), "--key", filepath.Join(dir, "domain.key")}
		}, exitFailure, []string{"pairs: none", "matches no certificate", "no private key here matches it", "NOT READY"}},
		{"expired certificate", func(t *testing.T, ca *pki.CA, dir string) []string {
			writeLeaf(t, issueLive(t, ca, now.Add(-400*24*time.Hour), now.Add(-24*time.Hour)), dir, "domain.pem", "domain.key")
			return []string{"--cert-dir", dir}
		}, exitFailure, []string{"EXPIRED", "expired on", "In use: none", "NOT READY"}},
		{"expired next to a valid one", func(t *testing.T, ca *pki.CA, dir string) []string {
			writeLeaf(t, issueLive(t, ca, now.Add(-400*24*time.Hour), now.Add(-24*time.Hour)), dir, "old.pem", "old.key")
			writeLeaf(t, issueLive(t, ca, time.Time{}, time.Time{}), dir, "domain.pem", "domain.key")
			return []string{"--cert-dir", dir}
		}, exitOK, []string{"1 expired or not yet valid ignored", "old.pem + old.key", "EXPIRED", "OK:"}},
		{"expires soon", func(t *testing.T, ca *pki.CA, dir string) []string {
			writeLeaf(t, issueLive(t, ca, time.Time{}, now.Add(10*24*time.Hour)), dir, "domain.pem", "domain.key")
			return []string{"--cert-dir", dir}
		}, exitOK, []string{"EXPIRES SOON: 9 days left", "WARNING", "expires in 9 days", "OK:"}},
		{"three valid certificates for one host", func(t *testing.T, ca *pki.CA, dir string) []string {
			for i, name := range []string{"one", "two", "three"} {
				writeLeaf(t, issueLive(t, ca, now.Add(-time.Duration(i+1)*time.Hour), time.Time{}), dir, name+".pem", name+".key")
			}
			return []string{"--cert-dir", dir}
		}, exitOK, []string{"newest (latest NotBefore) of 3 valid certificates", "Payrails live API of company acme: 3 valid",
			"WARNING", "3 valid certificates name api.acme.payrails.io", "at most 2", "OK:"}},
		{"key readable by others", func(t *testing.T, ca *pki.CA, dir string) []string {
			writeLeaf(t, issueLive(t, ca, time.Time{}, time.Time{}), dir, "domain.pem", "domain.key")
			if err := os.Chmod(filepath.Join(dir, "domain.key"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--cert-dir", dir}
		}, exitOK, []string{"mode 0644", "WARNING", "chmod 600", "OK:"}},
		{"empty folder", func(t *testing.T, ca *pki.CA, dir string) []string {
			return []string{"--cert-dir", dir}
		}, exitFailure, []string{"folder holds no files", "NOT READY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := pki.NewCA("test CA")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			code, stdout, stderr := checkCmd(t, tt.setup(t, ca, dir)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			// Long lines are wrapped: compare with all white space collapsed.
			flat := strings.Join(strings.Fields(stdout), " ")
			for _, w := range tt.wants {
				if !strings.Contains(flat, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("output does not contain %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", stdout)
			}
		})
	}
}

// TestCheckPassphraseFromEnvironment: PAYRAILS_PROXY_KEY_PASSPHRASE opens
// an encrypted key, as it does for serve.
func TestCheckPassphraseFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := csrCmd(t, acmeArgs(dir, "--key-passphrase-file", writePass(t, "env secret"))...)
	if code != exitOK {
		t.Fatalf("csr exit %d: %s", code, stderr)
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, serial := issueForCSR(t, ca, readCSR(t, filepath.Join(dir, "domain.csr")))
	mustWriteFile(t, filepath.Join(dir, "domain.pem"), certPEM, 0o644)
	if code, stdout, _ := checkCmd(t, "--cert-dir", dir); code != exitFailure || !strings.Contains(stdout, "no passphrase is configured") {
		t.Errorf("without a passphrase: exit %d, want 1 and the missing passphrase named:\n%s", code, stdout)
	}
	t.Setenv("PAYRAILS_PROXY_KEY_PASSPHRASE", "env secret")
	if code, stdout, _ := checkCmd(t, "--cert-dir", dir); code != exitOK || !strings.Contains(stdout, serial) {
		t.Errorf("with the environment variable: exit %d, want 0 naming serial %s:\n%s", code, serial, stdout)
	}
}

func writePass(t testing.TB, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass")
	mustWriteFile(t, p, []byte(pass+"\n"), 0o600)
	return p
}

func TestCheckUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "give --cert-dir DIR"},
		{"both forms", []string{"--cert-dir", dir, "--cert", "a", "--key", "b"}, "not both"},
		{"cert without key", []string{"--cert", "a"}, "go together"},
		{"address without remote", []string{"--cert-dir", dir, "--address", "127.0.0.1:1"}, "only apply with --remote"},
		{"http remote", []string{"--cert-dir", dir, "--remote", "http://api.acme.payrails.io"}, "https://HOST"},
		{"unreadable ca file", []string{"--cert-dir", dir, "--remote", "https://api.acme.payrails.io", "--ca-file",
			filepath.Join(dir, "missing.pem")}, "--ca-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := checkCmd(t, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
}

// TestCheckRemote: --remote tells apart a certificate the server accepts,
// one it refuses, a server we do not trust, a server that never asks for a
// certificate, an edge error page and no server at all.
func TestCheckRemote(t *testing.T) {
	w := newWorld(t)
	writeLeaf(t, w.clientCert(t, liveCN, time.Now().Add(-time.Hour)), w.certDir, "domain.pem", "domain.key")
	strangers, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	strangerDir := t.TempDir()
	writeLeaf(t, issueLive(t, strangers, time.Time{}, time.Time{}), strangerDir, "domain.pem", "domain.key")
	serverLeaf, err := w.ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	plain := tlsServer(t, serverLeaf, tls.NoClientCert, "application/json", http.StatusOK, `{"ok":true}`)
	edge := tlsServer(t, serverLeaf, tls.RequestClientCert, "text/html", http.StatusBadRequest,
		"<html><body>400 The SSL certificate error</body></html>")
	tests := []struct {
		name     string
		dir      string
		address  string
		caFile   string
		wantCode int
		wants    []string
	}{
		{"accepted", w.certDir, w.api.Addr, w.caFile, exitOK,
			[]string{"ACCEPTED", "asked for the client certificate and accepted it", "HTTP 200", "the server accepted it"}},
		{"refused", strangerDir, w.api.Addr, w.caFile, exitFailure,
			[]string{"REFUSED", "unknown certificate authority", "other environment", "not issued by Payrails",
				"fine locally", "NOT READY"}},
		{"server not trusted", w.certDir, w.api.Addr, "", exitFailure,
			[]string{"SERVER NOT TRUSTED", "--ca-file", "NOT READY"}},
		{"no client certificate asked for", w.certDir, plain, w.caFile, exitFailure,
			[]string{"NOT TESTED", "without asking for a client certificate", "says nothing about the certificate"}},
		{"edge error page", w.certDir, edge, w.caFile, exitFailure,
			[]string{"REFUSED AT THE EDGE", "HTML error page", "HTTP 400"}},
		{"nothing listening", w.certDir, freeAddr(t), w.caFile, exitFailure,
			[]string{"UNREACHABLE", "no TCP connection", "--address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--cert-dir", tt.dir, "--remote", "https://" + apiHost, "--address", tt.address}
			if tt.caFile != "" {
				args = append(args, "--ca-file", tt.caFile)
			}
			code, stdout, stderr := checkCmd(t, args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			flat := strings.Join(strings.Fields(stdout), " ")
			for _, want := range tt.wants {
				if !strings.Contains(flat, want) {
					t.Errorf("output does not contain %q", want)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", stdout)
			}
		})
	}
}

// tlsServer starts an HTTPS server with the given client-certificate policy
// that answers every request with one fixed response, and returns its address.
func tlsServer(t testing.TB, leaf *pki.Leaf, auth tls.ClientAuthType, contentType string, status int, body string) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", contentType)
		rw.WriteHeader(status)
		rw.Write([]byte(body))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}, ClientAuth: auth}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestCheckRemoteNginx: nginx with ssl_verify_client on completes the
// handshake with a certificate it does not trust and answers with an HTML
// 400 page, as an edge in front of an API does; check calls that refused.
func TestCheckRemoteNginx(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	serverLeaf, err := w.ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeLeaf(t, serverLeaf, dir, "server.pem", "server.key")
	ng := startNginx(t, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), w.caFile,
		`location / { default_type application/json; return 200 '{"ok":true}'; }`)
	strangers, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := t.TempDir(), t.TempDir()
	writeLeaf(t, w.clientCert(t, liveCN, time.Now().Add(-time.Hour)), mine, "domain.pem", "domain.key")
	writeLeaf(t, issueLive(t, strangers, time.Time{}, time.Time{}), theirs, "domain.pem", "domain.key")
	for _, tt := range []struct {
		name     string
		dir      string
		wantCode int
		want     string
	}{
		{"trusted certificate", mine, exitOK, "ACCEPTED"},
		{"untrusted certificate", theirs, exitFailure, "REFUSED AT THE EDGE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, _ := checkCmd(t, "--cert-dir", tt.dir, "--remote", "https://"+apiHost, "--address", ng.addr,
				"--ca-file", w.caFile)
			if code != tt.wantCode || !strings.Contains(stdout, tt.want) {
				t.Errorf("exit %d, want %d and %q:\n%s", code, tt.wantCode, tt.want, stdout)
			}
		})
	}
}
