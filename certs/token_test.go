//go:build pkcs11 && cgo

package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/softhsm"
	"go.uber.org/zap/zaptest"
)

// testKeyBits keeps the tests' token keys quick to make; csr's RSA-4096 is
// tested by cmd.
const testKeyBits = 2048

func tokenConfig(tk *softhsm.Token, object string) PKCS11 {
	return PKCS11{URI: tk.URI(object), ModulePath: tk.Lib, Token: tk.Label, Object: object, PIN: Passphrase{File: tk.PINFile}}
}

// openToken opens the token for serving, closed at the end of the test.
func openTestToken(t *testing.T, cfg PKCS11) *Token {
	t.Helper()
	tok, err := OpenToken(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

// makeKey makes a key labelled label in the token through a writing session.
func makeKey(t *testing.T, tk *softhsm.Token, label string) crypto.PublicKey {
	t.Helper()
	w, err := OpenTokenForWriting(tokenConfig(tk, ""), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	k, uri, err := w.GenerateRSA(label, testKeyBits)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(uri, "object="+label) {
		t.Errorf("key URI %q does not name object=%s", uri, label)
	}
	return k.Public()
}

func TestTokenSigns(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	pub := makeKey(t, tk, "client-1").(*rsa.PublicKey)
	tok := openTestToken(t, tokenConfig(tk, "client-1"))
	keys, err := tok.keys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys() = %v, %v; want the one key", keys, err)
	}
	s := keys[0].signer
	if !publicKeyEqual(s.Public(), pub) || KeySource(&tls.Certificate{PrivateKey: s}) != KeySourcePKCS11 {
		t.Fatalf("signer public key or source differ")
	}
	if keys[0].schemes != nil {
		t.Errorf("schemes = %v, want nil (SoftHSM2 offers RSA-PSS)", keys[0].schemes)
	}
	digest := sha256.Sum256([]byte("handshake"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
		t.Errorf("PKCS#1 v1.5 signature: %v, verifies: %v", err, rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig))
	}
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	sig, err = s.Sign(rand.Reader, digest[:], pss)
	if err != nil || rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, pss) != nil {
		t.Errorf("PSS signature: %v", err)
	}
}

func TestTokenKeyIsNotExtractable(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	makeKey(t, tk, "client-1")
	out := tk.Tool(t, "--list-objects", "--type", "privkey")
	for _, want := range []string{"client-1", "sensitive", "never extractable"} {
		if !strings.Contains(out, want) {
			t.Errorf("pkcs11-tool --list-objects does not show %q:\n%s", want, out)
		}
	}
	w, err := OpenTokenForWriting(tokenConfig(tk, ""), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, err := w.GenerateRSA("client-1", testKeyBits); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a second key of the same label: err = %v, want a refusal", err)
	}
}

// tokenFolder issues certificates for the token's keys into a folder.
func tokenFolder(t *testing.T, ca *pki.CA, keys map[string]crypto.PublicKey) string {
	t.Helper()
	dir := t.TempDir()
	for name, pub := range keys {
		l, err := ca.Issue(pki.LeafOptions{CommonName: "api.acme.payrails.io", Key: publicOnly{pub}, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, name+".pem", l.CertPEM, 0o644)
	}
	return dir
}

// publicOnly is a signer that only knows a public key: enough to issue a
// certificate for it.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }
func (p publicOnly) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("public key only")
}

func TestLoadPairsFolderWithToken(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	ca := newCA(t)
	pub1 := makeKey(t, tk, "client-1")
	makeKey(t, tk, "pending") // a key whose CSR awaits its certificate
	dir := tokenFolder(t, ca, map[string]crypto.PublicKey{"domain": pub1})
	stray := issue(t, ca, "stray", pki.KeyECDSA, time.Time{}, time.Time{})
	write(t, dir, "old.key", stray.KeyPEM, 0o600)
	tok := openTestToken(t, tokenConfig(tk, ""))
	snap := Load(Source{Dir: dir, Token: tok}, time.Now())
	if err := snap.Err(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !strings.Contains(snap.Chosen.KeyFile, "object=client-1") || KeySource(snap.Chosen.Certificate) != KeySourcePKCS11 {
		t.Errorf("chosen key %q, want the token's client-1", snap.Chosen.KeyFile)
	}
	codes := map[Code]Severity{}
	for _, f := range snap.Findings {
		codes[f.Code] = f.Severity
	}
	if codes[CodeKeyOnDisk] != Warning {
		t.Errorf("a key file beside token keys: findings %v, want a key_on_disk warning", snap.Findings)
	}
	if sev, ok := codes[CodeTokenKeyUnmatched]; !ok || sev != Info {
		t.Errorf("a pending token key: findings %v, want token_key_unmatched info", snap.Findings)
	}
	// The chosen pair signs a real TLS handshake digest through the token.
	digest := sha256.Sum256([]byte("x"))
	if _, err := snap.Chosen.Certificate.PrivateKey.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("signing with the chosen pair: %v", err)
	}
}

func TestLoadTokenProblems(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	makeKey(t, tk, "client-1")
	ca := newCA(t)
	other := issue(t, ca, "api.acme.payrails.io", pki.KeyECDSA, time.Time{}, time.Time{})
	certFile := write(t, t.TempDir(), "domain.pem", other.CertPEM, 0o644)
	dir := filepath.Dir(certFile)
	tests := []struct {
		name string
		cfg  func(PKCS11) PKCS11
		src  func(*Token) Source
		code Code
		want []string
	}{
		{"no such token", func(c PKCS11) PKCS11 {
			c.Token = "nope"
			c.URI = strings.Replace(c.URI, "payrails", "nope", 1)
			return c
		},
			func(tok *Token) Source { return Source{Dir: dir, Token: tok} }, CodeTokenNotFound, []string{"no such token", `"payrails"`, "--list-tokens"}},
		{"wrong PIN", func(c PKCS11) PKCS11 {
			c.PIN = Passphrase{Value: []byte("a-wrong-pin"), Env: "PAYRAILS_PROXY_PKCS11_PIN"}
			return c
		},
			func(tok *Token) Source { return Source{Dir: dir, Token: tok} }, CodePINWrong, []string{"PAYRAILS_PROXY_PKCS11_PIN", "wrong", "not tried again"}},
		{"no key matching the certificate", func(c PKCS11) PKCS11 { c.Object = "client-1"; return c },
			func(tok *Token) Source { return Source{CertFile: certFile, Token: tok} }, CodeTokenKeyUnmatched, []string{"does not belong to the certificate"}},
		{"no such key", func(c PKCS11) PKCS11 { c.Object = "nope"; return c },
			func(tok *Token) Source { return Source{CertFile: certFile, Token: tok} }, CodeTokenKeyNotFound, []string{"holds no private key", "csr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := openTestToken(t, tt.cfg(tokenConfig(tk, "")))
			snap := Load(tt.src(tok), time.Now())
			err := snap.Err()
			if err == nil {
				t.Fatalf("Load: no error, want %s", tt.code)
			}
			var found *Finding
			for i := range snap.Findings {
				if snap.Findings[i].Code == tt.code {
					found = &snap.Findings[i]
				}
			}
			if found == nil || found.Severity != Error {
				t.Fatalf("findings %v, want an error %s", snap.Findings, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(found.Message, w) {
					t.Errorf("message %q, want %q in it", found.Message, w)
				}
			}
			if strings.Contains(err.Error(), "a-wrong-pin") || strings.Contains(err.Error(), softhsm.PIN) {
				t.Errorf("the error shows a PIN: %v", err)
			}
		})
	}
}

func TestWrongPINNotRetried(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	makeKey(t, tk, "client-1")
	if err := os.WriteFile(tk.PINFile, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := openTestToken(t, tokenConfig(tk, ""))
	tok.now = func() time.Time { return time.Now().Add(time.Hour) } // every back-off has passed
	for range 5 {
		if _, err := tok.keys(); !errors.Is(err, ErrPINWrong) {
			t.Fatalf("keys() = %v, want ErrPINWrong", err)
		}
	}
	// SoftHSM2 counts failed logins in the token's flags; one only.
	if out := tk.Util(t, "--show-slots"); strings.Contains(out, "final try") || strings.Contains(out, "locked") {
		t.Errorf("the token shows PIN trouble after a refused PIN was not retried:\n%s", out)
	}
	if err := os.WriteFile(tk.PINFile, []byte(softhsm.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := tok.keys(); err != nil || len(keys) != 1 {
		t.Errorf("after the PIN file was fixed: keys() = %d keys, %v; want the key", len(keys), err)
	}
}

func TestTokenRecovers(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	makeKey(t, tk, "client-1")
	tok := openTestToken(t, tokenConfig(tk, "client-1"))
	keys, err := tok.keys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys() = %v, %v", keys, err)
	}
	signer := keys[0].signer
	digest := sha256.Sum256([]byte("x"))
	sign := func() error { _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); return err }
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	t.Run("library finalised behind its back", func(t *testing.T) {
		tok.mu.RLock()
		_ = tok.mod.ctx.Finalize()
		tok.mu.RUnlock()
		if err := sign(); !errors.Is(err, ErrTokenUnavailable) {
			t.Fatalf("sign after C_Finalize = %v, want ErrTokenUnavailable", err)
		}
		poll.Until(t, "the token to be re-opened after the library was finalised", 15*time.Second, func() bool { return sign() == nil })
	})
	t.Run("token removed and re-inserted", func(t *testing.T) {
		moved := tk.Dir + ".away"
		if err := os.Rename(tk.Dir, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(tk.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "signatures to fail with the token gone", 15*time.Second, func() bool { return sign() != nil })
		if err := os.Remove(tk.Dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(moved, tk.Dir); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "signatures to work again once the token is back", 30*time.Second, func() bool { return sign() == nil })
	})
	t.Run("key removed", func(t *testing.T) {
		tk.Tool(t, "--delete-object", "--type", "privkey", "--label", "client-1")
		poll.Until(t, "signatures to fail once the key is deleted", 15*time.Second, func() bool { return sign() != nil })
		// Once the token is re-opened, the key is looked for and not found:
		// the failure names the key, and the folder's next load has no pair.
		poll.Until(t, "the signature to say that the key is gone", 15*time.Second, func() bool { return errors.Is(sign(), ErrKeyNotFound) })
		if err := sign(); !strings.Contains(err.Error(), "object=client-1") {
			t.Errorf("sign() = %v, want the key's URI in it", err)
		}
		if keys, err := tok.keys(); err != nil || len(keys) != 0 {
			t.Errorf("keys() after the deletion = %d keys, %v; want none, no error", len(keys), err)
		}
	})
}

// TestTokenECDSAKey: an ECDSA P-256 key made with pkcs11-tool signs through
// the token, and the signature verifies with the public key read from the
// token's public key object.
func TestTokenECDSAKey(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	tk.Tool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec-1", "--id", "01")
	tok := openTestToken(t, tokenConfig(tk, "ec-1"))
	keys, err := tok.keys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys() = %v, %v", keys, err)
	}
	pub, ok := keys[0].signer.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("public key %T, want ECDSA", keys[0].signer.Public())
	}
	digest := sha256.Sum256([]byte("handshake"))
	sig, err := keys[0].signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Errorf("ECDSA signature: %v, verifies: %v", err, err == nil && ecdsa.VerifyASN1(pub, digest[:], sig))
	}
}

// TestTokenWithoutPSS: a token that does not offer RSA-PSS gives its RSA
// keys PKCS#1 v1.5 schemes only (SupportedSignatureAlgorithms), refuses a
// PSS signature, and so can authenticate TLS 1.2 but not TLS 1.3 (RFC 8446
// §4.2.3): the upstream client caps such an upstream at TLS 1.2.
func TestTokenWithoutPSS(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	pub := makeKey(t, tk, "client-1")
	tok := openTestToken(t, tokenConfig(tk, "client-1"))
	if _, err := tok.keys(); err != nil {
		t.Fatal(err)
	}
	tok.pss.Store(false) // as a token without CKM_RSA_PKCS_PSS reports
	ca := newCA(t)
	dir := tokenFolder(t, ca, map[string]crypto.PublicKey{"domain": pub})
	snap := Load(Source{Dir: dir, Token: tok}, time.Now())
	if err := snap.Err(); err != nil {
		t.Fatal(err)
	}
	cert := snap.Chosen.Certificate
	want := []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512}
	if !slices.Equal(cert.SupportedSignatureAlgorithms, want) {
		t.Fatalf("SupportedSignatureAlgorithms = %v, want %v", cert.SupportedSignatureAlgorithms, want)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := cert.PrivateKey.(crypto.Signer).Sign(rand.Reader, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256,
		SaltLength: rsa.PSSSaltLengthEqualsHash}); err == nil || !strings.Contains(err.Error(), "RSA-PSS") {
		t.Errorf("PSS signature without PSS: %v, want a refusal naming RSA-PSS", err)
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: "api.acme.payrails.io", DNSNames: []string{"api.acme.payrails.io"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version uint16
		ok      bool
	}{{tls.VersionTLS12, true}, {tls.VersionTLS13, false}} {
		err := handshake(t, srv.TLS(), ca, *cert, tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("handshake capped at %x: %v, want success %v", tc.version, err, tc.ok)
		}
	}
}

// handshake runs one client-authenticated TLS handshake on loopback, and
// one byte each way so that both sides have finished it.
func handshake(t *testing.T, server tls.Certificate, ca *pki.CA, client tls.Certificate, max uint16) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		sc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: ca.Pool()})
		if err := sc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = sc.Write([]byte{1})
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cc := tls.Client(conn, &tls.Config{ServerName: "api.acme.payrails.io", RootCAs: ca.Pool(), MaxVersion: max,
		Certificates: []tls.Certificate{client}})
	if err := cc.Handshake(); err != nil {
		conn.Close()
		<-done
		return err
	}
	if _, err := cc.Read(make([]byte, 1)); err != nil {
		conn.Close()
		<-done
		return err
	}
	return <-done
}

// TestWatcherFollowsPINFile: a store whose token refused the PIN is loaded
// again as soon as the PIN file is fixed (the watcher follows its folder),
// without waiting for the poll.
func TestWatcherFollowsPINFile(t *testing.T) {
	tk := softhsm.New(t, "payrails")
	pub := makeKey(t, tk, "client-1")
	dir := tokenFolder(t, newCA(t), map[string]crypto.PublicKey{"domain": pub})
	if err := os.WriteFile(tk.PINFile, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := openTestToken(t, tokenConfig(tk, ""))
	s := NewStore("live", Source{Dir: dir, Token: tok}, zaptest.NewLogger(t))
	if s.Certificate() != nil {
		t.Fatal("a certificate was loaded with a wrong PIN")
	}
	startWatcher(t, WatchOptions{Debounce: 10 * time.Millisecond, PollInterval: time.Hour}, zaptest.NewLogger(t), s)
	writeAtomic(t, tk.PINFile, []byte(softhsm.PIN+"\n"), 0o600)
	poll.Until(t, "the store to load the pair once the PIN file is fixed", 10*time.Second, func() bool { return s.Certificate() != nil })
}
