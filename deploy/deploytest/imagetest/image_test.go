package imagetest

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/deploy/deploytest/internal/repo"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/dockerfile"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// maxImageSize is issue 25's bound on the image.
const maxImageSize = 30_000_000

// maxPKCS11ImageSize bounds the -pkcs11 image: its glibc base is about
// 24 MB (as distroless/cc-debian12: glibc with its gconv modules, OpenSSL's
// libcrypto, libstdc++), the cgo binary about 19 MB.
const maxPKCS11ImageSize = 50_000_000

// nonroot is the image's user, distroless' nonroot.
const nonroot = 65532

// flavour is one image the Dockerfile makes.
type flavour struct {
	name         string
	stage        string // the Dockerfile's target; "" for the final stage
	env, image   string // the variable naming the image under test, and its default
	labelSuffix  string // what org.opencontainers.image.version adds to the VERSION build argument
	versionFlavs string // what `version` adds after GOOS/GOARCH ("" or ", pkcs11")
	cgo, tags    string // the binary's build settings CGO_ENABLED and -tags (scripts/build.sh)
	maxSize      int64
}

// flavours are the default image and the -pkcs11 one (scripts/image.sh
// --pkcs11: the Dockerfile's pkcs11 target).
var flavours = []flavour{
	{name: "default", env: envImage, image: defaultImage, cgo: "0", maxSize: maxImageSize},
	{name: "pkcs11", stage: "pkcs11", env: envPKCS11Image, image: defaultPKCS11Image,
		labelSuffix: "-pkcs11", versionFlavs: ", pkcs11", cgo: "1", tags: "pkcs11", maxSize: maxPKCS11ImageSize},
}

// TestImageConfiguration, for each flavour: the image's entry point,
// command, user, healthcheck, environment, stop signal, volume and labels are
// its Dockerfile stage's, it is under its size bound, `version` prints the
// version of its label and names the flavour, and the binary's build
// information is scripts/build.sh's for the flavour.
func TestImageConfiguration(t *testing.T) {
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			p := newPodman(t)
			name := p.image(fl.env, fl.image)
			stage := dockerfile.Parse(repo.Read(t, "Dockerfile")).Stage(fl.stage)
			if stage == nil {
				t.Fatalf("the Dockerfile has no stage %q", fl.stage)
			}
			img := p.inspectImage(name)
			checkConfiguration(t, img, stage, fl)
			checkVersion(t, p, name, img, fl)
			checkBuildInfo(t, p, name, fl)
		})
	}
}

// checkConfiguration compares an image's configuration with its Dockerfile
// stage.
func checkConfiguration(t *testing.T, img imageInfo, f dockerfile.File, fl flavour) {
	t.Helper()
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
	// The version label is the build's VERSION argument (with the flavour's
	// suffix); the rest is fixed text.
	version := strings.TrimSuffix(img.Config.Labels[versionLabel], fl.labelSuffix)
	labels := f.Labels(map[string]string{"VERSION": version})
	if len(labels) == 0 {
		t.Error("the Dockerfile has no LABEL; has its format changed?")
	}
	for k, v := range labels {
		if img.Config.Labels[k] != v {
			t.Errorf("label %s is %q, the Dockerfile says %q", k, img.Config.Labels[k], v)
		}
	}
	checkHealthcheck(t, img, f.Last("HEALTHCHECK"))
	if img.Size <= 0 || img.Size >= fl.maxSize {
		t.Errorf("the image is %d bytes, want under %d", img.Size, fl.maxSize)
	}
	t.Logf("image: %.1f MB, labels %v", float64(img.Size)/1e6, img.Config.Labels)
}

const versionLabel = "org.opencontainers.image.version"

// checkVersion runs `version` in the image: it prints the version its label
// carries and names the flavour ("payrails-mtls-proxy V (go1.27.3,
// linux/amd64, pkcs11)").
func checkVersion(t *testing.T, p podman, name string, img imageInfo, fl flavour) {
	t.Helper()
	out := strings.TrimSpace(p.must("run", "--rm", "--no-healthcheck", "--network", "none", "--read-only", "--cap-drop", "ALL", name, "version"))
	version := strings.TrimSuffix(img.Config.Labels[versionLabel], fl.labelSuffix)
	if !strings.HasPrefix(out, "payrails-mtls-proxy "+version+" (") || !strings.HasSuffix(out, fl.versionFlavs+")") ||
		fl.versionFlavs == "" && strings.Contains(out, "pkcs11") {
		t.Errorf("version printed %q; want payrails-mtls-proxy %s (..%s), as the label %s=%q says",
			out, version, fl.versionFlavs, versionLabel, img.Config.Labels[versionLabel])
	}
	t.Logf("version: %s", out)
}

// checkBuildInfo copies the binary out of the image and reads its build
// information: built with -trimpath, the committed PGO profile, CGO_ENABLED
// and -tags as scripts/build.sh builds the flavour (the static default: cgo
// off, no tags; pkcs11: cgo on, -tags pkcs11), by go.mod's toolchain.
func checkBuildInfo(t *testing.T, p podman, image string, fl flavour) {
	t.Helper()
	bin := p.copyOut(image, "/payrails-mtls-proxy")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading the build information of %s's /payrails-mtls-proxy: %v", image, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// -pgo: the committed profile (cmd/payrails-mtls-proxy/default.pgo), as .ci/run checks of its own build.
	want := map[string]string{"CGO_ENABLED": fl.cgo, "-tags": fl.tags, "-trimpath": "true", "-pgo": "default.pgo"}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q (scripts/build.sh's %s flavour)", k, settings[k], v, fl.name)
		}
	}
	if toolchain := repo.Toolchain(t); info.GoVersion != toolchain {
		t.Errorf("built by %s, want go.mod's toolchain %s", info.GoVersion, toolchain)
	}
	t.Logf("build: %s, CGO_ENABLED=%s, -tags=%q, -pgo=%s", info.GoVersion, settings["CGO_ENABLED"], settings["-tags"], settings["-pgo"])
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
	w.addFilePair(t)
	name := fmt.Sprintf("payrails-imagetest-%d", os.Getpid())
	c := w.startProxy(t, p, name, image, proxySvc, w.env(t, proxySvc, nil))
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
