package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

var acmeSubject = Subject{Country: "DE", State: "Berlin", Organization: "Acme GmbH", CommonName: "api.acme.payrails.io"}

func TestSubjectNormalize(t *testing.T) {
	tests := []struct {
		name       string
		in         Subject
		want       Subject
		wantFields []string // the fields reported wrong, in order
	}{
		{"valid", acmeSubject, acmeSubject, nil},
		{"cleaned", Subject{Country: " de", State: " Berlin ", Organization: "Acme GmbH ", CommonName: "API.acme.payrails.io"},
			acmeSubject, nil},
		{"wrong country", Subject{Country: "GER", State: "Berlin", Organization: "Acme", CommonName: "api.acme.payrails.io"},
			Subject{}, []string{FieldCountry}},
		{"everything missing", Subject{}, Subject{},
			[]string{FieldCountry, FieldState, FieldOrganization, FieldCommonName}},
		{"flag without value", Subject{Country: "DE", State: "--org", Organization: "Acme", CommonName: "api.acme.payrails.io"},
			Subject{}, []string{FieldState}},
		{"common name too long", Subject{Country: "DE", State: "Berlin", Organization: "Acme",
			CommonName: "api.a-very-long-company-name-that-goes-on-and-on-and-on.payrails.io"}, Subject{}, []string{FieldCommonName}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Normalize()
			var fields []string
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				for _, e := range joined.Unwrap() {
					var se *SubjectError
					if !errors.As(e, &se) {
						t.Fatalf("error %v is not a *SubjectError", e)
					}
					fields = append(fields, se.Field)
				}
			}
			if len(fields) != len(tt.wantFields) {
				t.Fatalf("fields reported %v, want %v (error: %v)", fields, tt.wantFields, err)
			}
			for i := range fields {
				if fields[i] != tt.wantFields[i] {
					t.Errorf("field %d = %q, want %q", i, fields[i], tt.wantFields[i])
				}
			}
			if err == nil && got != tt.want {
				t.Errorf("Normalize() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewCSR(t *testing.T) {
	tests := []struct {
		name    string
		kt      KeyType
		pass    string
		keyType string // the key's PEM block type
	}{
		{"rsa4096 default", "", "", "PRIVATE KEY"},
		{"ecdsa-p256", KeyECDSAP256, "", "PRIVATE KEY"},
		{"ecdsa-p256 encrypted", KeyECDSAP256, testPass, "ENCRYPTED PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCSR(acmeSubject, tt.kt, []byte(tt.pass))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Request.CheckSignature(); err != nil {
				t.Errorf("CSR signature: %v", err)
			}
			if got, want := c.Request.Subject.String(), "CN=api.acme.payrails.io,O=Acme GmbH,ST=Berlin,C=DE"; got != want {
				t.Errorf("subject %q, want %q", got, want)
			}
			if len(c.Request.Extensions) != 0 {
				t.Errorf("CSR has %d extensions, want none (as openssl req without -addext)", len(c.Request.Extensions))
			}
			if b, _ := pem.Decode(c.KeyPEM); b == nil || b.Type != tt.keyType {
				t.Errorf("key PEM block %v, want %q", b, tt.keyType)
			}
			if b, _ := pem.Decode(c.CSRPEM); b == nil || b.Type != "CERTIFICATE REQUEST" {
				t.Errorf("CSR PEM block %v, want CERTIFICATE REQUEST", b)
			}
			switch k := c.Request.PublicKey.(type) {
			case *rsa.PublicKey:
				if tt.kt != "" || k.N.BitLen() != 4096 {
					t.Errorf("RSA key of %d bits for key type %q, want 4096 for the default", k.N.BitLen(), tt.kt)
				}
			case *ecdsa.PublicKey:
				if tt.kt != KeyECDSAP256 {
					t.Errorf("ECDSA key for key type %q", tt.kt)
				}
			}
		})
	}
	if _, err := NewCSR(Subject{Country: "UK"}, KeyECDSAP256, nil); err == nil {
		t.Error("NewCSR accepted an invalid subject")
	}
}

func TestCSRWriteFiles(t *testing.T) {
	c, err := NewCSR(acmeSubject, KeyECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "new")
	keyPath, csrPath, err := c.WriteFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, csrPath: 0o644} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %04o", filepath.Base(path), st.Mode().Perm(), err, want)
		}
	}
	t.Run("refuses to overwrite the key", func(t *testing.T) {
		other, err := NewCSR(acmeSubject, KeyECDSAP256, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := other.WriteFiles(dir, false); !errors.Is(err, ErrExists) {
			t.Fatalf("second WriteFiles: %v, want ErrExists", err)
		}
		if got, _ := os.ReadFile(keyPath); !bytes.Equal(got, c.KeyPEM) {
			t.Error("the existing key was changed")
		}
		if got, _ := os.ReadFile(csrPath); !bytes.Equal(got, c.CSRPEM) {
			t.Error("the CSR was replaced although the key was kept")
		}
		if _, _, err := other.WriteFiles(dir, true); err != nil {
			t.Fatalf("WriteFiles with overwrite: %v", err)
		}
		if got, _ := os.ReadFile(keyPath); !bytes.Equal(got, other.KeyPEM) {
			t.Error("overwrite did not replace the key")
		}
		if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
			t.Errorf("overwritten key mode %04o, want 0600", st.Mode().Perm())
		}
	})
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("folder holds %d entries, want domain.key and domain.csr only (no temporary files)", len(entries))
	}
}

// TestCSRKeyRoundTrip: the key csr writes, with and without a passphrase,
// pairs through Load with the certificate a CA issues for the CSR.
func TestCSRKeyRoundTrip(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name     string
		pass     string // used to make the key
		loadPass string // given to Load
		wantCode Code   // "" means the pair loads
	}{
		{"unencrypted", "", "", ""},
		{"encrypted", testPass, testPass, ""},
		{"encrypted, no passphrase", testPass, "", CodePassphraseMissing},
		{"encrypted, wrong passphrase", testPass, "wrong", CodePassphraseWrong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCSR(acmeSubject, KeyECDSAP256, []byte(tt.pass))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if _, _, err := c.WriteFiles(dir, false); err != nil {
				t.Fatal(err)
			}
			cert := signCSR(t, ca, c.Request)
			write(t, dir, CertFileName, pki.EncodeCert(cert.Raw), 0o644)
			src := Source{Dir: dir}
			if tt.loadPass != "" {
				src.Passphrase = Passphrase{File: write(t, t.TempDir(), "pass", []byte(tt.loadPass+"\n"), 0o600)}
			}
			snap := Load(src, time.Now())
			if tt.wantCode != "" {
				if _, ok := findFinding(snap, tt.wantCode); !ok || snap.Chosen != nil {
					t.Fatalf("chosen %v, findings %v; want no pair and %s", snap.Chosen != nil, findingCodes(snap), tt.wantCode)
				}
				return
			}
			if snap.Chosen == nil {
				t.Fatalf("no pair chosen; findings %v", snap.Findings)
			}
			if got, want := snap.Chosen.Serial, Serial(cert); got != want {
				t.Errorf("chosen serial %s, want %s", got, want)
			}
		})
	}
}

func TestPassphraseRead(t *testing.T) {
	f := write(t, t.TempDir(), "pass", []byte("first line\r\nsecond\n"), 0o600)
	if got, err := (Passphrase{File: f}).Read(); err != nil || string(got) != "first line" {
		t.Errorf("Read() = %q, %v; want %q", got, err, "first line")
	}
	if _, err := (Passphrase{File: filepath.Join(t.TempDir(), "missing")}).Read(); err == nil {
		t.Error("Read of a missing file succeeded")
	}
}

// signCSR issues a client certificate for a CSR, as the Payrails dashboard does.
func signCSR(t testing.TB, ca *pki.CA, req *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: req.Subject.CommonName, Organization: req.Subject.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
