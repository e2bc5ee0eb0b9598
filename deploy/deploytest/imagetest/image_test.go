package imagetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/deploy/deploytest/internal/repo"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/dockerfile"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// maxImageSize is issue 25's bound on the image.
const maxImageSize = 30_000_000

// nonroot is the image's user, distroless' nonroot.
const nonroot = 65532

// TestImageConfiguration: the image's entry point, command, user,
// healthcheck, environment, stop signal, volume and labels are the
// Dockerfile's, and it is under 30 MB.
func TestImageConfiguration(t *testing.T) {
	p := newPodman(t)
	img := p.inspectImage(p.image(envImage, defaultImage))
	f := dockerfile.Parse(repo.Read(t, "Dockerfile"))

	for _, c := range []struct {
		cmd string
		got []string
	}{{"ENTRYPOINT", img.Config.Entrypoint}, {"CMD", img.Config.Cmd}} {
		want, ok := dockerfile.ExecForm(f.Last(c.cmd))
		if !ok || !reflect.DeepEqual(c.got, want) {
			t.Errorf("%s is %q, the Dockerfile says %s", c.cmd, c.got, f.Last(c.cmd))
		}
	}
	if img.Config.User != f.Last("USER") {
		t.Errorf("USER is %q, the Dockerfile says %q", img.Config.User, f.Last("USER"))
	}
	if img.Config.StopSignal != f.Last("STOPSIGNAL") {
		t.Errorf("STOPSIGNAL is %q, the Dockerfile says %q", img.Config.StopSignal, f.Last("STOPSIGNAL"))
	}
	if _, ok := img.Config.Volumes[f.Last("VOLUME")]; !ok {
		t.Errorf("volumes %v lack the Dockerfile's VOLUME %s", img.Config.Volumes, f.Last("VOLUME"))
	}
	env := map[string]string{}
	for _, kv := range img.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range f.Env() {
		if env[k] != v {
			t.Errorf("ENV %s is %q, the Dockerfile says %q", k, env[k], v)
		}
	}
	// The version label is the build's VERSION argument; the rest is fixed text.
	labels := f.Labels(map[string]string{"VERSION": img.Config.Labels["org.opencontainers.image.version"]})
	if len(labels) == 0 {
		t.Error("the Dockerfile has no LABEL; has its format changed?")
	}
	for k, v := range labels {
		if img.Config.Labels[k] != v {
			t.Errorf("label %s is %q, the Dockerfile says %q", k, img.Config.Labels[k], v)
		}
	}
	checkHealthcheck(t, img, f.Last("HEALTHCHECK"))
	if img.Size <= 0 || img.Size >= maxImageSize {
		t.Errorf("the image is %d bytes, want under %d", img.Size, maxImageSize)
	}
	t.Logf("image: %.1f MB, labels %v", float64(img.Size)/1e6, img.Config.Labels)
}

// checkHealthcheck compares the image's healthcheck (kept only in Docker
// format: scripts/image.sh builds with --format docker) with the
// Dockerfile's HEALTHCHECK [options] CMD [...].
func checkHealthcheck(t *testing.T, img imageInfo, line string) {
	t.Helper()
	if img.HealthCheck == nil {
		t.Fatal("the image has no healthcheck: was it built in OCI format? (scripts/image.sh builds --format docker)")
	}
	opts, cmd, ok := strings.Cut(line, "CMD ")
	argv, isExec := dockerfile.ExecForm(strings.TrimSpace(cmd))
	if !ok || !isExec {
		t.Fatalf("HEALTHCHECK %q: want options and CMD in exec form", line)
	}
	if want := append([]string{"CMD"}, argv...); !reflect.DeepEqual(img.HealthCheck.Test, want) {
		t.Errorf("healthcheck test %q, the Dockerfile says %q", img.HealthCheck.Test, want)
	}
	for _, o := range strings.Fields(opts) {
		k, v, _ := strings.Cut(strings.TrimPrefix(o, "--"), "=")
		var got time.Duration
		switch k {
		case "interval":
			got = img.HealthCheck.Interval
		case "timeout":
			got = img.HealthCheck.Timeout
		case "start-period":
			got = img.HealthCheck.StartPeriod
		case "retries":
			if n, _ := strconv.Atoi(v); n != img.HealthCheck.Retries {
				t.Errorf("healthcheck retries %d, the Dockerfile says %s", img.HealthCheck.Retries, v)
			}
			continue
		default:
			continue
		}
		if want, _ := time.ParseDuration(v); got != want {
			t.Errorf("healthcheck %s %v, the Dockerfile says %s", k, got, v)
		}
	}
}

// TestImageRunsAsDocumented runs the image as deploy/docker-compose.yml
// does (its environment, read-only root, capabilities dropped, no new
// privileges, the certificate folder read-only, its healthcheck, its stop
// grace period), with --network host and free ports in place of 8080 and
// 9090, and a stand-in for the Payrails API on loopback that requires the
// client certificate.
func TestImageRunsAsDocumented(t *testing.T) {
	p := newPodman(t)
	image := p.image(envImage, defaultImage)
	appImage := p.image(envAppImage, defaultAppImage)
	proxySvc, appSvc := readCompose(t)
	w := newWorld(t, proxySvc)

	// The compose file's settings, with the test's upstream address, CA and
	// ports. The admin port differs from the image's 9090, so the healthcheck
	// passes only if `health` follows PAYRAILS_PROXY_ADMIN_LISTEN (issue 25).
	env := map[string]string{}
	for k, v := range proxySvc.Environment {
		env[k] = v
	}
	env["PAYRAILS_PROXY_LISTEN"] = withPort(t, proxySvc.Environment["PAYRAILS_PROXY_LISTEN"], w.proxyPort)
	env["PAYRAILS_PROXY_ADMIN_LISTEN"] = withPort(t, proxySvc.Environment["PAYRAILS_PROXY_ADMIN_LISTEN"], w.adminPort)
	env["PAYRAILS_PROXY_ADDRESS"] = w.api.Addr // dial the stand-in; TLS name and Host stay the file's upstream
	env["PAYRAILS_PROXY_CA_FILE"] = "/ca/ca.pem"
	name := fmt.Sprintf("payrails-imagetest-%d", os.Getpid())
	p.remove(name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, p.logs(name))
		}
		p.remove(name)
	})
	args := append([]string{"run", "--detach", "--name", name, "--network", "host"},
		proxySvc.runFlags(t, env, map[string]string{"./certs": w.certDir})...)
	args = append(args, "--volume", w.caDir+":/ca:ro", image)
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
	checkProcess(t, c)

	t.Run("request carries the client certificate", func(t *testing.T) {
		if got := w.serialThroughProxy(t); got != w.serialA {
			t.Errorf("the stand-in saw client certificate serial %s, want %s (the one in the folder)", got, w.serialA)
		}
	})
	t.Run("sidecar pattern", func(t *testing.T) {
		appEnv := map[string]string{}
		for k, v := range appSvc.Environment {
			if strings.HasPrefix(strings.ToLower(k), "http_proxy") {
				v = "http://" + withPort(t, strings.TrimPrefix(v, "http://"), w.proxyPort)
			}
			appEnv[k] = v
		}
		args := append([]string{"run", "--rm", "--network", "container:" + name}, appSvc.runFlags(t, appEnv, nil)...)
		// One call of the application's loop, through HTTP_PROXY as it makes them.
		out, err := p.run(append(args, appImage, "curl -sS --max-time 20 http://"+w.apiHost+"/merchant/payments")...)
		if err != nil {
			t.Fatal(err)
		}
		var e standin.Echo
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Client.Serial != w.serialA {
			t.Errorf("the application container got %q (%v); want the stand-in's echo with client serial %s", out, err, w.serialA)
		}
	})
	t.Run("rotation by dropping files into the mounted folder", func(t *testing.T) {
		dropped := w.dropNewerCertificate(t)
		poll.Until(t, "requests to use the dropped certificate", 20*time.Second, func() bool {
			return w.serialThroughProxy(t) == w.serialB
		})
		t.Logf("the dropped certificate was used %v after the drop", time.Since(dropped).Round(time.Millisecond))
		if after := p.inspect(name); after.State.Pid != c.State.Pid || after.RestartCount != c.RestartCount {
			t.Errorf("the container restarted (pid %d -> %d, restarts %d -> %d); a rotation needs none",
				c.State.Pid, after.State.Pid, c.RestartCount, after.RestartCount)
		}
	})
	t.Run("SIGTERM drains a request in flight", func(t *testing.T) {
		before := w.api.Requests()
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := w.client().Get("http://" + w.apiHost + "/delay/2s")
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			done <- result{resp.StatusCode, err}
		}()
		poll.Until(t, "the slow request to reach the stand-in", 10*time.Second, func() bool { return w.api.Requests() > before })
		p.must("kill", "--signal", "TERM", name)
		r := <-done
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("the request in flight at SIGTERM ended with status %d, error %v; want 200", r.status, r.err)
		}
		poll.Until(t, "the container to exit", 40*time.Second, func() bool { return p.inspect(name).State.Status == "exited" })
		if code := p.inspect(name).State.ExitCode; code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})
}

// checkProcess reads the container's main process in /proc: uid and gid
// 65532, no effective capabilities, no_new_privs set, and the root file
// system and /certs mounted read-only.
func checkProcess(t *testing.T, c containerInfo) {
	t.Helper()
	if c.State.Pid <= 0 {
		t.Fatalf("the container has no process (state %q)", c.State.Status)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.State.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.Join(strings.Fields(v), " ")
	}
	want := fmt.Sprintf("%d %d %d %d", nonroot, nonroot, nonroot, nonroot)
	for k, w := range map[string]string{"Uid": want, "Gid": want, "CapEff": "0000000000000000",
		"CapPrm": "0000000000000000", "NoNewPrivs": "1"} {
		if fields[k] != w {
			t.Errorf("/proc/%d/status %s: %q, want %q", c.State.Pid, k, fields[k], w)
		}
	}
	if !c.HostConfig.ReadonlyRootfs {
		t.Error("the container's root file system is not read-only")
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.State.Pid))
	if err != nil {
		t.Fatal(err)
	}
	ro := map[string]bool{}
	for line := range strings.Lines(string(mounts)) {
		f := strings.Fields(line) // id parent major:minor root mountpoint options ...
		if len(f) > 5 {
			ro[f[4]] = strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	for _, m := range []string{"/", "/certs"} {
		if !ro[m] {
			t.Errorf("%s is not mounted read-only in the container", m)
		}
	}
}

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
	a := w.issueClient(t, time.Now().Add(-time.Hour))
	writeFor(t, filepath.Join(w.certDir, "domain.pem"), a.CertPEM)
	writeFor(t, filepath.Join(w.certDir, "domain.key"), a.KeyPEM)
	chownNonroot(t, w.certDir)
	w.serialA = serial(a)
	return w
}

func (w *world) issueClient(t *testing.T, notBefore time.Time) *pki.Leaf {
	t.Helper()
	l, err := w.ca.Issue(pki.LeafOptions{CommonName: w.apiHost, Client: true, NotBefore: notBefore, KeyType: pki.KeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	return l
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

// serialThroughProxy sends one request through the proxy and returns the
// client certificate serial the stand-in saw.
func (w *world) serialThroughProxy(t *testing.T) string {
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
	return e.Client.Serial
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
