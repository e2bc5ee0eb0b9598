package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// csrCmd runs `payrails-mtls-proxy csr` with args, as main does.
func csrCmd(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"csr"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// acmeArgs is a valid subject for the live environment, with a fast key.
func acmeArgs(outDir string, extra ...string) []string {
	return append([]string{"--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme",
		"--env", "live", "--key-type", "ecdsa-p256", "--out-dir", outDir}, extra...)
}

func readCSR(t testing.TB, path string) *x509.CertificateRequest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("%s holds no CERTIFICATE REQUEST block", path)
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestCSRUsageErrors(t *testing.T) {
	emptyPass := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyPass, []byte("\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	subject := []string{"--state", "Berlin", "--org", "Acme GmbH"}
	tests := []struct {
		name  string
		args  []string
		wants []string // in stderr
	}{
		{"GER", append([]string{"--country", "GER", "--company", "acme", "--env", "live"}, subject...),
			[]string{"--country", `"GER" is not an ISO 3166-1 alpha-2 code`, "DE (Germany)"}},
		{"UK", append([]string{"--country", "UK", "--company", "acme", "--env", "live"}, subject...),
			[]string{"GB (United Kingdom)"}},
		{"everything missing", nil, []string{"--country", "--state: state or province is empty", "--org: organization is empty",
			"the Common Name is missing"}},
		{"both ways to give the common name", append([]string{"--country", "DE", "--company", "acme", "--env", "live",
			"--common-name", "api.acme.payrails.io"}, subject...), []string{"not both"}},
		{"company without env", append([]string{"--country", "DE", "--company", "acme"}, subject...),
			[]string{"--company acme --env live"}},
		{"bad env and company", append([]string{"--country", "DE", "--company", "acme_inc", "--env", "prod"}, subject...),
			[]string{"--env: environment \"prod\"", "--company: not a valid company name"}},
		{"URL as common name", append([]string{"--country", "DE", "--common-name", "https://api.acme.payrails.io"}, subject...),
			[]string{"--common-name", "without https://"}},
		{"key type", append([]string{"--country", "DE", "--company", "acme", "--env", "live", "--key-type", "dsa"}, subject...),
			[]string{"--key-type", "rsa4096"}},
		{"empty passphrase file", append([]string{"--country", "DE", "--company", "acme", "--env", "live",
			"--key-passphrase-file", emptyPass}, subject...), []string{"--key-passphrase-file", "is empty"}},
		{"stray argument", []string{"--country", "DE", "extra"}, []string{"unexpected argument"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			code, _, stderr := csrCmd(t, append(tt.args, "--out-dir", dir)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a usage error wrote %d files", len(entries))
			}
		})
	}
}

func TestCSRCommonName(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		wantCN string
		wantIn string // in stdout
	}{
		{"live", []string{"--company", "acme", "--env", "live"}, "api.acme.payrails.io", "Payrails live API of company acme"},
		{"staging", []string{"--company", "Acme", "--env", "staging"}, "acme-api.staging.payrails.io", "(staging environment)"},
		{"given", []string{"--common-name", "API.acme.payrails.io"}, "api.acme.payrails.io", "--remote https://api.acme.payrails.io"},
		{"not a Payrails host", []string{"--common-name", "api.acme.payrails.test"}, "api.acme.payrails.test", "not a Payrails API host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--country", "de", "--state", "Berlin", "--org", "Acme GmbH", "--key-type", "ecdsa-p256",
				"--out-dir", dir}, tt.args...)
			code, stdout, stderr := csrCmd(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			req := readCSR(t, filepath.Join(dir, "domain.csr"))
			if got := req.Subject.CommonName; got != tt.wantCN {
				t.Errorf("CN %q, want %q", got, tt.wantCN)
			}
			if got := req.Subject.Country; len(got) != 1 || got[0] != "DE" {
				t.Errorf("country %v, want [DE] (upper-cased)", got)
			}
			for _, w := range []string{tt.wantIn, "Subject: C=DE, ST=Berlin, O=Acme GmbH, CN=" + tt.wantCN,
				"mTLS Certificates", "domain.pem", "NO_START_LINE"} {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestCSRDefaultKey: without --key-type the key is RSA-4096, as Payrails
// asks, and domain.key is mode 0600.
func TestCSRDefaultKey(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := csrCmd(t, "--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme",
		"--env", "live", "--out-dir", dir)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	req := readCSR(t, filepath.Join(dir, "domain.csr"))
	if k, ok := req.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 4096 {
		t.Errorf("public key %T, want RSA-4096", req.PublicKey)
	}
	st, err := os.Stat(filepath.Join(dir, "domain.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("domain.key mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestCSRRefusesToOverwriteKey(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "domain.key")
	old := []byte("the key of a certificate already issued\n")
	if err := os.WriteFile(keyPath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := csrCmd(t, acmeArgs(dir)...)
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	for _, w := range []string{"refusing to overwrite", "certificate already issued", "--force"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not contain %q:\n%s", w, stderr)
		}
	}
	if got, _ := os.ReadFile(keyPath); !bytes.Equal(got, old) {
		t.Error("domain.key was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "domain.csr")); err == nil {
		t.Error("domain.csr was written although the key was kept")
	}

	code, _, stderr = csrCmd(t, acmeArgs(dir, "--force")...)
	if code != exitOK {
		t.Fatalf("with --force: exit %d; stderr:\n%s", code, stderr)
	}
	if got, _ := os.ReadFile(keyPath); bytes.Equal(got, old) {
		t.Error("--force did not replace domain.key")
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Errorf("domain.key mode %04o after --force, want 0600", st.Mode().Perm())
	}
}

// TestCSRNeverWritesThroughALink: a symbolic link at domain.key or
// domain.csr (dangling or not) is refused with and without --force, and
// nothing is written where it points; ca init shares the same rule
// (certs.PlaceFile).
func TestCSRNeverWritesThroughALink(t *testing.T) {
	for _, name := range []string{"domain.key", "domain.csr"} {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s force=%v", name, force), func(t *testing.T) {
				dir, outside := t.TempDir(), t.TempDir()
				link := filepath.Join(dir, name)
				if err := os.Symlink(filepath.Join(outside, "target"), link); err != nil {
					t.Fatal(err)
				}
				args := acmeArgs(dir)
				if force {
					args = append(args, "--force")
				}
				code, _, stderr := csrCmd(t, args...)
				if code != exitFailure || !strings.Contains(stderr, link) || !strings.Contains(stderr, "symbolic link") {
					t.Errorf("exit %d, want %d and a refusal naming %s as a symbolic link:\n%s", code, exitFailure, link, stderr)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 0 {
					t.Errorf("csr wrote through the link: %v", entries)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 1 {
					t.Errorf("the folder holds %v, want only the link", entries)
				}
			})
		}
	}
}

// TestCSREncryptedKeyLoads: a key encrypted with --key-passphrase-file opens
// with the same file through certs.Load, paired with the certificate a CA
// issues for the CSR.
func TestCSREncryptedKeyLoads(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := csrCmd(t, acmeArgs(dir, "--key-passphrase-file", passFile)...)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "encrypted with the passphrase in "+passFile) {
		t.Errorf("stdout does not say the key is encrypted:\n%s", stdout)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "domain.key"))
	if !bytes.Contains(key, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("domain.key is not encrypted PKCS#8:\n%s", key)
	}
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, serial := issueForCSR(t, ca, readCSR(t, filepath.Join(dir, "domain.csr")))
	if err := os.WriteFile(filepath.Join(dir, "domain.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pass certs.Passphrase
		ok   bool
	}{{"with the passphrase file", certs.Passphrase{File: passFile}, true}, {"without", certs.Passphrase{}, false}} {
		t.Run(tt.name, func(t *testing.T) {
			snap := certs.Load(certs.Source{Dir: dir, Passphrase: tt.pass}, time.Now())
			if got := snap.Chosen != nil; got != tt.ok {
				t.Fatalf("pair chosen %v, want %v; findings %v", got, tt.ok, snap.Findings)
			}
			if tt.ok && snap.Chosen.Serial != serial {
				t.Errorf("chosen serial %s, want %s", snap.Chosen.Serial, serial)
			}
		})
	}
}

// issueForCSR signs a client certificate for the CSR's public key, as the
// Payrails dashboard does, and returns it as PEM with its serial.
func issueForCSR(t testing.TB, ca *pki.CA, req *x509.CertificateRequest) (certPEM []byte, serial string) {
	t.Helper()
	if err := req.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: req.Subject.CommonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(der), fmt.Sprintf("%X", tmpl.SerialNumber.Bytes())
}

// TestCSROpenSSLInterop follows Payrails' guide with the real openssl
// binary in place of the dashboard: OpenSSL verifies our CSR and reads our
// key (with and without a passphrase), a CA signs the CSR with `openssl
// x509 -req`, and the real sidecar then presents that certificate with our
// key to a server that requires it; check agrees.
func TestCSROpenSSLInterop(t *testing.T) {
	bin := interop.Tool(t, "openssl")
	tests := []struct {
		name    string
		keyType string // "" for the default, RSA-4096
		pass    string
	}{
		{"rsa4096 unencrypted", "", ""},
		{"ecdsa encrypted", "ecdsa-p256", "open sesame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			work := t.TempDir()
			args := []string{"--country", "DE", "--state", "Berlin", "--org", "Acme GmbH", "--company", "acme",
				"--env", "live", "--out-dir", w.certDir}
			var passFile string
			if tt.keyType != "" {
				args = append(args, "--key-type", tt.keyType)
			}
			if tt.pass != "" {
				passFile = filepath.Join(work, "pass")
				mustWriteFile(t, passFile, []byte(tt.pass+"\n"), 0o600)
				args = append(args, "--key-passphrase-file", passFile)
			}
			if code, _, stderr := csrCmd(t, args...); code != exitOK {
				t.Fatalf("csr exit %d:\n%s", code, stderr)
			}
			csrPath, keyPath := filepath.Join(w.certDir, "domain.csr"), filepath.Join(w.certDir, "domain.key")
			out := runTool(t, bin, work, "req", "-in", csrPath, "-verify", "-noout", "-subject")
			for _, want := range []string{"verify OK", "subject=C = DE, ST = Berlin, O = Acme GmbH, CN = api.acme.payrails.io"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl req -verify output does not contain %q:\n%s", want, out)
				}
			}
			pkey := []string{"pkey", "-in", keyPath, "-noout"}
			if passFile != "" {
				if _, err := exec.Command(bin, append(pkey, "-passin", "pass:wrong")...).CombinedOutput(); err == nil {
					t.Error("openssl pkey opened the encrypted key with a wrong passphrase")
				}
				pkey = append(pkey, "-passin", "file:"+passFile)
			}
			runTool(t, bin, work, pkey...)
			serial := opensslIssue(t, bin, w, work, csrPath, filepath.Join(w.certDir, "domain.pem"))
			r := startApp(t, csrConfig(t, w, passFile))
			if got, err := echoSerial(r.client(t)); err != nil || got != serial {
				t.Errorf("the stand-in saw serial %q (%v), want %s from openssl", got, err, serial)
			}
			checkArgs := []string{"--cert-dir", w.certDir, "--remote", "https://" + apiHost, "--address", w.api.Addr,
				"--ca-file", w.caFile}
			if passFile != "" {
				checkArgs = append(checkArgs, "--key-passphrase-file", passFile)
			}
			if code, stdout, _ := checkCmd(t, checkArgs...); code != exitOK || !strings.Contains(stdout, serial) {
				t.Errorf("check exit %d, want 0 naming serial %s:\n%s", code, serial, stdout)
			}
		})
	}
}

// opensslIssue signs the CSR with the world's CA using `openssl x509 -req`
// and a clientAuth extended key usage, and returns the serial OpenSSL prints.
func opensslIssue(t testing.TB, bin string, w *world, work, csrPath, out string) string {
	t.Helper()
	caKey, err := pki.EncodeKeyPKCS8(w.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, filepath.Join(work, "ca.key"), caKey, 0o600)
	mustWriteFile(t, filepath.Join(work, "client.ext"), []byte("extendedKeyUsage = clientAuth\n"), 0o644)
	runTool(t, bin, work, "x509", "-req", "-in", csrPath, "-CA", w.caFile, "-CAkey", "ca.key", "-CAcreateserial",
		"-CAserial", filepath.Join(work, "ca.srl"), "-days", "30", "-out", out, "-extfile", "client.ext")
	serial := runTool(t, bin, work, "x509", "-in", out, "-noout", "-serial")
	return strings.TrimPrefix(strings.TrimSpace(serial), "serial=")
}

// csrConfig is the world's configuration, with the key's passphrase file
// when there is one.
func csrConfig(t testing.TB, w *world, passFile string) string {
	if passFile == "" {
		return w.configFile(t, "")
	}
	y := fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog: {level: debug, format: json}\nupstreams:\n"+
		"  - name: live\n    url: https://%s\n    address: %s\n    cert_dir: %s\n    ca_file: %s\n    key_passphrase_file: %s\n",
		apiHost, w.api.Addr, w.certDir, w.caFile, passFile)
	p := filepath.Join(t.TempDir(), "config.yaml")
	mustWriteFile(t, p, []byte(y), 0o600)
	return p
}

// runTool runs an external program in dir and returns its combined output.
func runTool(t testing.TB, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustWriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
