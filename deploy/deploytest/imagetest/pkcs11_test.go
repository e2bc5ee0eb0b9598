package imagetest

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/softhsm"
)

// Where the -pkcs11 container finds SoftHSM2: its library (the path
// key_uri's module-path names, as in DESIGN.md's example), its configuration
// and token folder (Debian's places), and the PIN file (a mounted secret).
const (
	hsmModule   = "/usr/lib/softhsm/libsofthsm2.so"
	hsmConfDir  = "/etc/softhsm"
	hsmTokenDir = "/var/lib/softhsm/tokens"
	hsmSecrets  = "/run/secrets"
	hsmPINFile  = hsmSecrets + "/hsm-pin"
	hsmToken    = "payrails"
	hsmKey      = "client-2026"
)

// TestImagePKCS11ServesWithTokenKey runs the -pkcs11 image (scripts/image.sh
// --pkcs11) as the compose file runs the sidecar, with the client key in a
// SoftHSM2 token and no key file anywhere: the token and an RSA key in it
// are made on the host (softhsm2-util, pkcs11-tool), the test CA issues the
// key's certificate into the folder, and the container gets SoftHSM2's
// library and configuration and the PIN read-only, the token folder
// writable by uid 65532 (SoftHSM2 takes lock files there), and key_uri
// naming the token. The library runs on the image's own glibc, libstdc++
// and libcrypto. A request through the container reaches the stand-in,
// which requires the client certificate, over TLS 1.3 (RSA-PSS in the
// token); the proxy counts the token's signature; SIGTERM ends it with 0.
func TestImagePKCS11ServesWithTokenKey(t *testing.T) {
	p := newPodman(t)
	image := p.image(envPKCS11Image, defaultPKCS11Image)
	proxySvc, _ := readCompose(t)
	w := newWorld(t, proxySvc)

	tk := softhsm.New(t, hsmToken)
	tk.Tool(t, "--keypairgen", "--key-type", "rsa:2048", "--label", hsmKey, "--id", "2026")
	leaf, err := w.ca.Issue(pki.LeafOptions{CommonName: w.apiHost, Client: true, Key: publicOnly{tokenPublicKey(t, tk, hsmKey)},
		NotBefore: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	writeFor(t, filepath.Join(w.certDir, "domain.pem"), leaf.CertPEM)

	// The container's view of SoftHSM2: the host's library, a configuration
	// naming the token folder where it is mounted, the token folder (made by
	// root on the host, so given to 65532), and the PIN.
	lib, err := filepath.EvalSymlinks(tk.Lib)
	if err != nil {
		t.Fatal(err)
	}
	hsm := t.TempDir()
	confDir, secrets := filepath.Join(hsm, "conf"), filepath.Join(hsm, "secrets")
	for _, d := range []string{confDir, secrets} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", hsmTokenDir)
	writeFor(t, filepath.Join(confDir, "softhsm2.conf"), []byte(conf))
	writeFor(t, filepath.Join(secrets, filepath.Base(hsmPINFile)), []byte(softhsm.PIN+"\n"))
	chownNonroot(t, confDir)
	chownNonroot(t, secrets)
	chownTreeNonroot(t, tk.Dir)

	keyURI := "pkcs11:token=" + hsmToken + "?module-path=" + hsmModule + "&pin-source=file:" + hsmPINFile
	env := w.env(t, proxySvc, map[string]string{"PAYRAILS_PROXY_KEY_URI": keyURI, "SOFTHSM2_CONF": hsmConfDir + "/softhsm2.conf"})
	name := fmt.Sprintf("payrails-imagetest-pkcs11-%d", os.Getpid())
	c := w.startProxy(t, p, name, image, proxySvc, env,
		"--volume", lib+":"+hsmModule+":ro",
		"--volume", confDir+":"+hsmConfDir+":ro",
		"--volume", secrets+":"+hsmSecrets+":ro",
		"--volume", tk.Dir+":"+hsmTokenDir)
	checkProcess(t, c)

	t.Run("request carries the certificate of the token's key", func(t *testing.T) {
		e := w.echoThroughProxy(t)
		if e.Client.Serial != serial(leaf) || e.TLS.Version != "TLS 1.3" {
			t.Errorf("the stand-in saw client certificate serial %q over %s; want %s (the token key's) over TLS 1.3",
				e.Client.Serial, e.TLS.Version, serial(leaf))
		}
		if n := w.signatures(t, "pkcs11"); n < 1 {
			t.Errorf("payrails_proxy_client_key_signatures_total{source=\"pkcs11\",result=\"ok\"} is %v; want the token's handshake signature counted", n)
		}
	})
	t.Run("SIGTERM", func(t *testing.T) {
		p.must("kill", "--signal", "TERM", name)
		poll.Until(t, "the container to exit", 40*time.Second, func() bool { return p.inspect(name).State.Status == "exited" })
		if code := p.inspect(name).State.ExitCode; code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0 (the token closed)", code)
		}
	})
}

// TestImagePKCS11ModuleProblems: the -pkcs11 image started with a
// module-path that names nothing (the library not mounted: the image has
// none of its own) or a file that is no library refuses to start (exit 2)
// and says what to do: mount the library or copy it into a derived image;
// for a file that does not load, the dynamic loader's reason.
func TestImagePKCS11ModuleProblems(t *testing.T) {
	p := newPodman(t)
	image := p.image(envPKCS11Image, defaultPKCS11Image)
	secrets := t.TempDir()
	writeFor(t, filepath.Join(secrets, filepath.Base(hsmPINFile)), []byte(softhsm.PIN+"\n"))
	writeFor(t, filepath.Join(secrets, "libvendor-pkcs11.so"), []byte(strings.Repeat("not a shared library\n", 20)))
	chownNonroot(t, secrets)
	for _, tt := range []struct {
		name, module string
		want         []string
	}{
		{"not mounted", "/usr/lib/vendor/libvendor-pkcs11.so",
			[]string{`module-path "/usr/lib/vendor/libvendor-pkcs11.so": no PKCS#11 library there`, "mount it read-only", "FROM"}},
		{"not a library", hsmSecrets + "/libvendor-pkcs11.so",
			[]string{"does not load as a PKCS#11 library: invalid ELF header", "give module-path= the vendor's library", "FROM"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keyURI := "pkcs11:token=" + hsmToken + "?module-path=" + tt.module + "&pin-source=file:" + hsmPINFile
			out, code := p.runExit("run", "--rm", "--no-healthcheck", "--network", "none", "--read-only", "--cap-drop", "ALL",
				"--security-opt", "no-new-privileges", "--volume", secrets+":"+hsmSecrets+":ro",
				"--env", "PAYRAILS_PROXY_UPSTREAM=https://api.acme.payrails.io", "--env", "PAYRAILS_PROXY_KEY_URI="+keyURI, image)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (refusing to start); output:\n%s", code, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("the output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// tokenPublicKey reads the public half of the token's key labelled label
// (pkcs11-tool writes it as DER SubjectPublicKeyInfo).
func tokenPublicKey(t *testing.T, tk *softhsm.Token, label string) crypto.PublicKey {
	t.Helper()
	der := filepath.Join(t.TempDir(), "pub.der")
	tk.Tool(t, "--read-object", "--type", "pubkey", "--label", label, "--output-file", der)
	data, err := os.ReadFile(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(data)
	if err != nil {
		t.Fatalf("pkcs11-tool --read-object --type pubkey wrote %s: %v", der, err)
	}
	return pub
}

// publicOnly is a key whose private half the test never holds: the CA
// needs only its public key to issue the certificate.
type publicOnly struct{ pub crypto.PublicKey }

func (k publicOnly) Public() crypto.PublicKey { return k.pub }
func (k publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("the private key is in the token")
}

// signatures sums payrails_proxy_client_key_signatures_total with result
// "ok" and source source on the container's admin port.
func (w *world) signatures(t *testing.T, source string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + net.JoinHostPort("127.0.0.1", w.adminPort) + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	var sum float64
	for line := range strings.Lines(string(body)) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(series, "payrails_proxy_client_key_signatures_total{") ||
			!strings.Contains(series, `source="`+source+`"`) || !strings.Contains(series, `result="ok"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}
