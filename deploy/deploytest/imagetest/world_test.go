package imagetest

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// world is the test's side: the certificate folder the container mounts,
// the CA, the stand-in API, and the ports.
type world struct {
	ca               *pki.CA
	api              *standin.Server
	apiHost          string // the compose file's upstream host
	certDir, caDir   string
	proxyPort        string
	adminPort        string
	serialA, serialB string
}

// newWorld starts the stand-in API with a fresh CA, and makes an empty
// certificate folder for uid 65532 and the CA's folder.
func newWorld(t *testing.T, proxySvc composeService) *world {
	t.Helper()
	u, err := url.Parse(proxySvc.Environment["PAYRAILS_PROXY_UPSTREAM"])
	if err != nil || u.Hostname() == "" {
		t.Fatalf("%s: PAYRAILS_PROXY_UPSTREAM %q is not a URL: %v", composeFile, proxySvc.Environment["PAYRAILS_PROXY_UPSTREAM"], err)
	}
	w := &world{apiHost: u.Hostname(), proxyPort: freePort(t), adminPort: freePort(t)}
	if w.ca, err = pki.NewCA("imagetest CA"); err != nil {
		t.Fatal(err)
	}
	server, err := w.ca.Issue(pki.LeafOptions{CommonName: w.apiHost, DNSNames: []string{w.apiHost}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if w.api, err = standin.Start(standin.Options{Certificate: server.TLS(), ClientCAs: w.ca.Pool()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.api.Close() })

	dir := t.TempDir()
	w.certDir, w.caDir = filepath.Join(dir, "certs"), filepath.Join(dir, "ca")
	for _, d := range []string{w.certDir, w.caDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFor(t, filepath.Join(w.caDir, "ca.pem"), w.ca.CertPEM)
	chownNonroot(t, w.caDir)
	chownNonroot(t, w.certDir)
	return w
}

// addFilePair puts a client certificate and its key file into the folder
// (serialA).
func (w *world) addFilePair(t *testing.T) {
	t.Helper()
	a := w.issueClient(t, time.Now().Add(-time.Hour))
	writeFor(t, filepath.Join(w.certDir, "domain.pem"), a.CertPEM)
	writeFor(t, filepath.Join(w.certDir, "domain.key"), a.KeyPEM)
	w.serialA = serial(a)
}

func (w *world) issueClient(t *testing.T, notBefore time.Time) *pki.Leaf {
	t.Helper()
	l, err := w.ca.Issue(pki.LeafOptions{CommonName: w.apiHost, Client: true, NotBefore: notBefore, KeyType: pki.KeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// env is the compose file's environment for the proxy service with the
// test's ports (the file's hosts), the stand-in's address (TLS name and Host
// stay the file's upstream) and the CA mounted at /ca, then extra on top.
// The admin port differs from the image's 9090, so the healthcheck passes
// only if `health` follows PAYRAILS_PROXY_ADMIN_LISTEN (issue 25).
func (w *world) env(t *testing.T, proxySvc composeService, extra map[string]string) map[string]string {
	t.Helper()
	env := maps.Clone(proxySvc.Environment)
	env["PAYRAILS_PROXY_LISTEN"] = withPort(t, proxySvc.Environment["PAYRAILS_PROXY_LISTEN"], w.proxyPort)
	env["PAYRAILS_PROXY_ADMIN_LISTEN"] = withPort(t, proxySvc.Environment["PAYRAILS_PROXY_ADMIN_LISTEN"], w.adminPort)
	env["PAYRAILS_PROXY_ADDRESS"] = w.api.Addr
	env["PAYRAILS_PROXY_CA_FILE"] = "/ca/ca.pem"
	maps.Copy(env, extra)
	return env
}

// startProxy runs image as a container named name the way the compose file
// runs the proxy service (runFlags: read-only, capabilities dropped, its
// healthcheck...) with --network host, the environment env, the test's
// certificate folder and CA, and extra podman run arguments (more mounts).
// It returns the container's state once its healthcheck passes; the
// container is removed when the test ends, its logs shown if it failed.
func (w *world) startProxy(t *testing.T, p podman, name, image string, proxySvc composeService, env map[string]string, extra ...string) containerInfo {
	t.Helper()
	p.remove(name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, p.logs(name))
		}
		p.remove(name)
	})
	args := append([]string{"run", "--detach", "--name", name, "--network", "host"},
		proxySvc.runFlags(t, env, map[string]string{"./certs": w.certDir})...)
	args = append(args, "--volume", w.caDir+":/ca:ro")
	args = append(append(args, extra...), image)
	p.must(append(args, proxySvc.Command...)...)

	start := time.Now()
	var lastErr error
	t.Cleanup(func() {
		if t.Failed() && lastErr != nil {
			t.Logf("the last healthcheck: %v", lastErr)
		}
	})
	poll.Until(t, "podman healthcheck run "+name+" to pass", 60*time.Second, func() bool {
		_, lastErr = p.run("healthcheck", "run", name)
		return lastErr == nil
	})
	t.Logf("healthy %v after start", time.Since(start).Round(time.Millisecond))
	c := p.inspect(name)
	if st := c.healthStatus(); st != "healthy" {
		t.Errorf("health status %q, want healthy", st)
	}
	return c
}

// dropNewerCertificate puts a second certificate (newer, so chosen) into the
// mounted folder the way an operator does: files written elsewhere, then
// moved in. It returns when the last file is in place.
func (w *world) dropNewerCertificate(t *testing.T) time.Time {
	t.Helper()
	b := w.issueClient(t, time.Now().Add(-time.Minute))
	w.serialB = serial(b)
	stage := t.TempDir()
	for name, data := range map[string][]byte{"domain-2026.key": b.KeyPEM, "domain-2026.pem": b.CertPEM} {
		tmp := filepath.Join(stage, name)
		writeFor(t, tmp, data)
		if err := os.Rename(tmp, filepath.Join(w.certDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return time.Now()
}

// client is an HTTP client using the proxy as HTTP_PROXY, as the docs'
// services do.
func (w *world) client() *http.Client {
	proxyURL := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", w.proxyPort)}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
}

// echoThroughProxy sends one request through the proxy and returns what the
// stand-in saw of it (the client certificate, the TLS version).
func (w *world) echoThroughProxy(t *testing.T) standin.Echo {
	t.Helper()
	resp, err := w.client().Get("http://" + w.apiHost + "/merchant/payments")
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e standin.Echo
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil {
		t.Fatalf("GET through the proxy: %s: %s", resp.Status, body)
	}
	return e
}

// serialThroughProxy sends one request through the proxy and returns the
// client certificate serial the stand-in saw.
func (w *world) serialThroughProxy(t *testing.T) string {
	t.Helper()
	return w.echoThroughProxy(t).Client.Serial
}

func serial(l *pki.Leaf) string { return fmt.Sprintf("%X", l.Cert.SerialNumber.Bytes()) }

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// writeFor writes a file for the container's user: mode 0600 when the test
// can give it to uid 65532 (as root, as the docs say: chown -R 65532), else
// 0644 (rootless podman maps the caller to root inside, and the proxy then
// warns that the key is readable by others).
func writeFor(t *testing.T, path string, data []byte) {
	t.Helper()
	mode := os.FileMode(0o600)
	if os.Geteuid() != 0 {
		mode = 0o644
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, nonroot, nonroot); err != nil {
			t.Fatal(err)
		}
	}
}

// chownNonroot gives a folder to the container's user (as root), or opens
// it for reading (otherwise).
func chownNonroot(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, nonroot, nonroot); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// chownTreeNonroot makes a folder and everything in it writable by the
// container's user: given to uid 65532 (as root), or opened to everyone
// (otherwise: rootless podman maps 65532 to a user of its own).
func chownTreeNonroot(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			return os.Lchown(p, nonroot, nonroot)
		}
		mode := os.FileMode(0o666)
		if d.IsDir() {
			mode = 0o777
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatalf("giving %s to uid %d: %v", dir, nonroot, err)
	}
}
