package certs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// openssl runs the openssl binary in dir and returns its standard output.
func openssl(t testing.TB, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// opensslCA makes a CA with openssl in dir: ca.pem and ca.key.
func opensslCA(t testing.TB, bin, dir string) {
	t.Helper()
	openssl(t, bin, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=openssl test CA", "-days", "30")
	if err := os.WriteFile(filepath.Join(dir, "client.ext"), []byte("extendedKeyUsage = clientAuth\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// opensslSign makes a CSR for the key with openssl and signs it with the CA
// in caDir, writing out. It returns the serial as `openssl x509 -serial`
// prints it.
func opensslSign(t testing.TB, bin, dir, caDir, key, passin, out string) string {
	t.Helper()
	args := []string{"req", "-new", "-key", key, "-out", "sign.csr", "-subj", "/C=DE/ST=Berlin/O=Acme GmbH/CN=" + liveHost}
	if passin != "" {
		args = append(args, "-passin", "pass:"+passin)
	}
	openssl(t, bin, dir, args...)
	openssl(t, bin, dir, "x509", "-req", "-in", "sign.csr", "-CA", filepath.Join(caDir, "ca.pem"),
		"-CAkey", filepath.Join(caDir, "ca.key"), "-CAcreateserial", "-days", "30", "-out", out,
		"-extfile", filepath.Join(caDir, "client.ext"))
	if err := os.Remove(filepath.Join(dir, "sign.csr")); err != nil {
		t.Fatal(err)
	}
	serial := openssl(t, bin, dir, "x509", "-in", out, "-noout", "-serial")
	return strings.TrimPrefix(strings.TrimSpace(serial), "serial=")
}

// TestLoadWhatOpenSSLWrites: keys, certificates and bundles made by the
// openssl binary, the way merchants make them, load and pair with the
// serial OpenSSL itself reports.
func TestLoadWhatOpenSSLWrites(t *testing.T) {
	bin := interop.Tool(t, "openssl")
	caDir := t.TempDir()
	opensslCA(t, bin, caDir)
	const pass = "s3cret passphrase"
	tests := []struct {
		name    string
		keygen  [][]string // openssl commands that write domain.key
		passin  string     // the key's passphrase, "" for none
		keyKind Kind
		holds   string // what the key file must hold, to be sure of the format under test
	}{
		{"req -newkey rsa:2048 -nodes", [][]string{{"req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "domain.key",
			"-out", "unused.csr", "-subj", "/CN=unused"}}, "", KindKey, "BEGIN PRIVATE KEY"},
		{"req without -nodes (encrypted PKCS#8)", [][]string{{"req", "-new", "-newkey", "rsa:2048", "-keyout", "domain.key",
			"-passout", "pass:" + pass, "-out", "unused.csr", "-subj", "/CN=unused"}}, pass, KindEncryptedKey, "BEGIN ENCRYPTED PRIVATE KEY"},
		{"genpkey rsa -aes-256-cbc", [][]string{{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
			"-aes-256-cbc", "-pass", "pass:" + pass, "-out", "domain.key"}}, pass, KindEncryptedKey, "BEGIN ENCRYPTED PRIVATE KEY"},
		{"rsa -aes256 -traditional", [][]string{{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "plain.key"},
			{"rsa", "-in", "plain.key", "-aes256", "-traditional", "-passout", "pass:" + pass, "-out", "domain.key"}}, pass, KindEncryptedKey, "Proc-Type: 4,ENCRYPTED"},
		{"ecparam -genkey prime256v1", [][]string{{"ecparam", "-genkey", "-name", "prime256v1", "-out", "domain.key"}}, "", KindKey, "BEGIN EC PARAMETERS"},
		{"genpkey ec", [][]string{{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "domain.key"}}, "", KindKey, "BEGIN PRIVATE KEY"},
		{"genpkey ed25519", [][]string{{"genpkey", "-algorithm", "ed25519", "-out", "domain.key"}}, "", KindKey, "BEGIN PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work, dir := t.TempDir(), t.TempDir()
			for _, args := range tt.keygen {
				openssl(t, bin, work, args...)
			}
			key := filepath.Join(work, "domain.key")
			if data, err := os.ReadFile(key); err != nil || !bytes.Contains(data, []byte(tt.holds)) {
				t.Fatalf("openssl wrote a key without %q (%v): not the format under test", tt.holds, err)
			}
			serial := opensslSign(t, bin, work, caDir, key, tt.passin, filepath.Join(dir, "domain.pem"))
			copyFile(t, key, filepath.Join(dir, "domain.key"))
			snap := loadWithPass(t, dir, tt.passin)
			if kind := fileKind(snap, filepath.Join(dir, "domain.key")); kind != tt.keyKind {
				t.Errorf("domain.key kind %q, want %q", kind, tt.keyKind)
			}
			requireSerial(t, snap, serial)
		})
	}
}

// TestLoadOpenSSLPKCS12: `openssl pkcs12 -export` with OpenSSL 3's defaults
// (AES-256-CBC, PBKDF2, SHA-256 MAC) and a password.
func TestLoadOpenSSLPKCS12(t *testing.T) {
	bin := interop.Tool(t, "openssl")
	caDir, work, dir := t.TempDir(), t.TempDir(), t.TempDir()
	opensslCA(t, bin, caDir)
	const pass = "p12 password"
	openssl(t, bin, work, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "domain.key")
	serial := opensslSign(t, bin, work, caDir, "domain.key", "", "domain.pem")
	openssl(t, bin, work, "pkcs12", "-export", "-in", "domain.pem", "-inkey", "domain.key",
		"-certfile", filepath.Join(caDir, "ca.pem"), "-passout", "pass:"+pass, "-out", filepath.Join(dir, "bundle.p12"))
	snap := loadWithPass(t, dir, pass)
	if kind := fileKind(snap, filepath.Join(dir, "bundle.p12")); kind != KindPKCS12 {
		t.Errorf("bundle.p12 kind %q, want %q", kind, KindPKCS12)
	}
	requireSerial(t, snap, serial)
	if n := len(snap.Chosen.Certificate.Certificate); n != 2 {
		t.Errorf("chain of %d certificates, want the leaf and the CA from -certfile", n)
	}
}

func loadWithPass(t testing.TB, dir, pass string) *Snapshot {
	t.Helper()
	src := Source{Dir: dir}
	if pass != "" {
		src.Passphrase = Passphrase{File: write(t, t.TempDir(), "pass.txt", []byte(pass+"\n"), 0o600)}
	}
	return Load(src, time.Now())
}

func requireSerial(t testing.TB, snap *Snapshot, want string) {
	t.Helper()
	if snap.Chosen == nil {
		t.Fatalf("no pair chosen; findings %v", snap.Findings)
	}
	if snap.Chosen.Serial != want {
		t.Errorf("chosen serial %s, want %s (openssl x509 -serial)", snap.Chosen.Serial, want)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
