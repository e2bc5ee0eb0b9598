//go:build pkcs11 && cgo

package main

import (
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/softhsm"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
	"go.uber.org/zap"
)

// tokenKey makes an RSA-2048 key labelled label in the token (quick; csr's
// RSA-4096 is tested on its own) and returns its public half.
func tokenKey(t testing.TB, tk *softhsm.Token, label string) crypto.PublicKey {
	t.Helper()
	w, err := certs.OpenTokenForWriting(certs.PKCS11{URI: tk.URI(""), ModulePath: tk.Lib, Token: tk.Label,
		PIN: certs.Passphrase{File: tk.PINFile}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	k, _, err := w.GenerateRSA(label, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func tokenCert(t testing.TB, w *world, pub crypto.PublicKey, notBefore time.Time) *pki.Leaf {
	t.Helper()
	l, err := w.ca.Issue(pki.LeafOptions{CommonName: apiHost, Key: pubSigner{pub}, NotBefore: notBefore, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type pubSigner struct{ pub crypto.PublicKey }

func (p pubSigner) Public() crypto.PublicKey { return p.pub }
func (p pubSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, fmt.Errorf("public key only")
}

// TestPKCS11CSR follows the guide with the key in a token: csr --key-uri
// makes the RSA-4096 key inside the token (sensitive, never extractable)
// and writes only domain.csr; openssl verifies the CSR; a CA signs it; check
// with --key-uri accepts the pair, and the sidecar serves with it.
func TestPKCS11CSR(t *testing.T) {
	bin := interop.Tool(t, "openssl")
	tk := softhsm.New(t, "payrails")
	w := newWorld(t)
	work := t.TempDir()
	keyURI := strings.Replace(tk.URI(""), "token=payrails", "token=payrails;object=client-2026", 1)
	code, out, errOut := csrCmd(t, "--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme",
		"--env", "live", "--out-dir", w.certDir, "--key-uri", keyURI)
	if code != exitOK {
		t.Fatalf("csr --key-uri: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"inside the token", "object=client-2026", "never extractable", "domain.csr", "check --cert"} {
		if !strings.Contains(out, want) {
			t.Errorf("csr output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(w.certDir, "domain.key")); !os.IsNotExist(err) {
		t.Errorf("csr --key-uri wrote domain.key (stat: %v); the key must stay in the token", err)
	}
	objs := tk.Tool(t, "--list-objects", "--type", "privkey") + tk.Tool(t, "--list-objects", "--type", "pubkey")
	for _, want := range []string{"client-2026", "RSA 4096 bits", "sensitive", "never extractable"} {
		if !strings.Contains(objs, want) {
			t.Errorf("pkcs11-tool does not show the key %s:\n%s", want, objs)
		}
	}
	csrPath := filepath.Join(w.certDir, "domain.csr")
	verify := runTool(t, bin, work, "req", "-in", csrPath, "-verify", "-noout", "-subject")
	for _, want := range []string{"verify OK", "subject=C = DE, ST = Berlin, O = Acme GmbH, CN = api.acme.payrails.io"} {
		if !strings.Contains(verify, want) {
			t.Errorf("openssl req -verify output does not contain %q:\n%s", want, verify)
		}
	}
	serial := opensslIssue(t, bin, w, work, csrPath, filepath.Join(w.certDir, "domain.pem"))
	if err := os.Remove(csrPath); err != nil {
		t.Fatal(err)
	}

	// The same key again is refused: keys in a token are never replaced.
	if code, _, errOut := csrCmd(t, "--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme",
		"--env", "live", "--out-dir", work, "--key-uri", keyURI); code == exitOK || !strings.Contains(errOut, "already holds") {
		t.Errorf("a second csr with the same object: exit %d, %s", code, errOut)
	}

	code, out, errOut = checkCmd(t, "--cert", filepath.Join(w.certDir, "domain.pem"), "--key-uri", keyURI,
		"--remote", "https://"+apiHost, "--address", w.api.Addr, "--ca-file", w.caFile)
	if code != exitOK || !strings.Contains(out, serial) {
		t.Errorf("check --cert --key-uri --remote: exit %d\n%s%s", code, out, errOut)
	}

	cfg := w.configFile(t, "")
	cfg = withKeyURI(t, cfg, tk.URI(""))
	r := startApp(t, cfg)
	resp := echo(t, r.client(t))
	if resp.Client.Serial != serial || resp.TLS.Version != "TLS 1.3" {
		t.Errorf("the upstream saw serial %s over %s; want %s over TLS 1.3", resp.Client.Serial, resp.TLS.Version, serial)
	}
}

func statusOf(t testing.TB, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getBody(t testing.TB, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dumpOnFailure logs what the store and its upstream know when the test fails.
func dumpOnFailure(t *testing.T, r *running) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		rep := r.app.stores()[0].Report()
		b, _ := json.MarshalIndent(rep, "", "  ")
		t.Logf("store: %s", b)
		for _, e := range r.logs.All() {
			t.Logf("log: %s %v", e.Message, e.ContextMap())
		}
	})
}

// withKeyURI adds key_uri to the one upstream of a configuration file.
func withKeyURI(t testing.TB, cfgPath, uri string) string {
	t.Helper()
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(data), "    cert_dir:", "    key_uri: '"+uri+"'\n    cert_dir:", 1)
	mustWrite(t, cfgPath, []byte(y), 0o600)
	return cfgPath
}

func echo(t testing.TB, c *http.Client) standin.Echo {
	t.Helper()
	resp, err := c.Get("http://" + apiHost + "/v1/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e standin.Echo
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPKCS11ServeRotationUnderLoad: the sidecar serves with the key in the
// token (cert_dir + key_uri naming the token) against an upstream that
// requires the client certificate over TLS 1.3; clients send requests
// continuously while a second key is made in the token and its certificate
// dropped into the folder. No request fails, and the new certificate takes
// over.
func TestPKCS11ServeRotationUnderLoad(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	w := newWorld(t)
	first := tokenCert(t, w, tokenKey(t, tk, "client-1"), time.Now().Add(-2*time.Hour))
	mustWrite(t, filepath.Join(w.certDir, "client-1.pem"), first.CertPEM, 0o644)
	r := startApp(t, withKeyURI(t, w.configFile(t, "reload: {debounce: 50ms, poll_interval: 1s}\n"), tk.URI("")))
	dumpOnFailure(t, r)
	if e := echo(t, r.client(t)); e.Client.Serial != serialOf(first) || e.TLS.Version != "TLS 1.3" {
		t.Fatalf("first request presented %s over %s, want %s over TLS 1.3", e.Client.Serial, e.TLS.Version, serialOf(first))
	}

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		served   atomic.Int64
		lastSeen atomic.Value
	)
	for _, c := range r.clients(t, 8) {
		wg.Go(func() {
			for !stop.Load() {
				serial, err := echoSerial(c)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				served.Add(1)
				lastSeen.Store(serial)
			}
		})
	}
	second := tokenCert(t, w, tokenKey(t, tk, "client-2"), time.Now().Add(-time.Hour))
	mustWrite(t, filepath.Join(w.certDir, "client-2.pem"), second.CertPEM, 0o644)
	poll.Until(t, "requests to present the second token key's certificate", 20*time.Second, func() bool {
		s, _ := lastSeen.Load().(string)
		return s == serialOf(second)
	})
	before := served.Load()
	poll.Until(t, "more requests with the new certificate", 10*time.Second, func() bool { return served.Load() > before+50 })
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the rotation; first: %v", len(failures), served.Load()+int64(len(failures)), failures[0])
	}
	t.Logf("%d requests served during the rotation, none failed", served.Load())
	body := getBody(t, "http://"+r.admin+"/certs")
	for _, want := range []string{`"pkcs11_token"`, `"open": true`, `object=client-2`} {
		if !strings.Contains(body, want) {
			t.Errorf("/certs lacks %s:\n%s", want, body)
		}
	}
	if rep := r.app.stores()[0].Report(); rep.Token == nil || rep.Token.Signatures == 0 || rep.Token.Failures != 0 {
		t.Errorf("/certs token %+v, want signatures counted and no failure", rep.Token)
	}
}

// TestPKCS11ServeKeyRemoved: a key deleted from the token while serving.
// Pooled connections go on (a key signs only handshakes); a request that
// needs a new handshake fails with a proxy error (never a hang), the
// certificate folder reload says that no key in the token matches the
// certificate, and a certificate for another token key restores service.
func TestPKCS11ServeKeyRemoved(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	w := newWorld(t)
	first := tokenCert(t, w, tokenKey(t, tk, "client-1"), time.Now().Add(-2*time.Hour))
	mustWrite(t, filepath.Join(w.certDir, "client-1.pem"), first.CertPEM, 0o644)
	r := startApp(t, withKeyURI(t, w.configFile(t, "reload: {debounce: 50ms, poll_interval: 500ms}\n"), tk.URI("")))
	dumpOnFailure(t, r)
	c := r.client(t)
	if s, err := echoSerial(c); err != nil || s != serialOf(first) {
		t.Fatalf("first request: %s, %v", s, err)
	}
	tk.Tool(t, "--delete-object", "--type", "privkey", "--label", "client-1")
	w.restartAPI(t) // every connection closes: the next request needs a handshake
	poll.Until(t, "a request to fail with 502 client_key_unavailable", 20*time.Second, func() bool {
		resp, err := c.Get("http://" + apiHost + "/v1/echo")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusBadGateway && resp.Header.Get("X-Payrails-Proxy-Error") == "client_key_unavailable"
	})
	if code := statusOf(t, "http://"+r.admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after a failed signature, want 503", code)
	}
	// The failed reload keeps the previous snapshot (the failure rule) and
	// says why in the reload history (/certs).
	poll.Until(t, "the store to report the certificate without its key", 20*time.Second, func() bool {
		return strings.Contains(r.app.stores()[0].Stats().LastError, "no key in the token matches it")
	})
	second := tokenCert(t, w, tokenKey(t, tk, "client-2"), time.Now().Add(-time.Hour))
	mustWrite(t, filepath.Join(w.certDir, "client-2.pem"), second.CertPEM, 0o644)
	poll.Until(t, "service with the second key", 30*time.Second, func() bool {
		s, err := echoSerial(c)
		return err == nil && s == serialOf(second)
	})
	poll.Until(t, "/readyz to be 200 again", 30*time.Second, func() bool {
		return statusOf(t, "http://"+r.admin+"/readyz") == http.StatusOK
	})
}

// TestPKCS11CheckAndToken: check explains token problems in the
// operator's words, and token fetches an access token with the key in the
// token.
func TestPKCS11CheckAndToken(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	w := newWorld(t)
	good := tokenCert(t, w, tokenKey(t, tk, "client-1"), time.Time{})
	certFile := filepath.Join(w.certDir, "domain.pem")
	mustWrite(t, certFile, good.CertPEM, 0o644)
	other := filepath.Join(t.TempDir(), "other.pem")
	mustWrite(t, other, w.clientCert(t, apiHost, time.Time{}).CertPEM, 0o644)
	badPIN := filepath.Join(t.TempDir(), "pin")
	mustWrite(t, badPIN, []byte("0000\n"), 0o600)
	keyURI := func(obj string) string { return tk.URI(obj) }
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"folder", []string{"--cert-dir", w.certDir, "--key-uri", keyURI("")}, exitOK, []string{serialOf(good), "object=client-1"}},
		{"one key", []string{"--cert", certFile, "--key-uri", keyURI("client-1")}, exitOK, []string{serialOf(good)}},
		{"no such token", []string{"--cert-dir", w.certDir, "--key-uri", strings.Replace(keyURI(""), "token=payrails", "token=nope", 1)},
			exitFailure, []string{"no such token", `"payrails"`}},
		{"wrong PIN", []string{"--cert-dir", w.certDir, "--key-uri", strings.Replace(keyURI(""), tk.PINFile, badPIN, 1)},
			exitFailure, []string{"refused the PIN", badPIN, "not tried again"}},
		{"no key matching the certificate", []string{"--cert", other, "--key-uri", keyURI("client-1")},
			exitFailure, []string{"does not belong to the certificate"}},
		{"key and key-uri", []string{"--cert", certFile, "--key", certFile, "--key-uri", keyURI("client-1")}, exitUsage, []string{"not both"}},
		{"pin-value", []string{"--cert-dir", w.certDir, "--key-uri", keyURI("") + "&pin-value=1234"}, exitUsage, []string{"pin-value", "pin-source=file:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := checkCmd(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, want := range tt.want {
				if !strings.Contains(out+errOut, want) {
					t.Errorf("check output lacks %q:\n%s%s", want, out, errOut)
				}
			}
			if strings.Contains(out+errOut, softhsm.PIN) {
				t.Errorf("check printed the PIN")
			}
		})
	}
	t.Run("token", func(t *testing.T) {
		code, out, errOut := runCLI(t, []string{"PAYRAILS_CLIENT_SECRET=s3cret"}, "token", "--client-id", "cid",
			"--upstream", "https://"+apiHost, "--address", w.api.Addr, "--ca-file", w.caFile, "--cert", certFile,
			"--key-uri", keyURI("client-1"))
		if code != exitOK || !strings.Contains(out, "access_token") {
			t.Errorf("token --key-uri: exit %d\n%s%s", code, out, errOut)
		}
	})
}
