package main

import (
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/dockerfile"
	"go.yaml.in/yaml/v3"
)

// deployDockerfileEnv returns the variables the image sets with ENV.
func deployDockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	return dockerfile.Parse(deployRead(t, "Dockerfile")).Env()
}

// deployPort is the port of a HOST:PORT.
func deployPort(t *testing.T, hostPort string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("%q: no port: %v %v", hostPort, err, err2)
	}
	return n
}

func deployDefaultShutdown(t *testing.T) time.Duration {
	t.Helper()
	def, err := deployParse(t, []byte("upstreams: [{url: https://api.acme.payrails.io, cert_dir: /certs}]"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return def.Timeouts.Shutdown
}

func TestDeployCompose(t *testing.T) {
	var c struct {
		Services map[string]struct {
			NetworkMode     string            `yaml:"network_mode"`
			Environment     map[string]string `yaml:"environment"`
			Volumes         []string          `yaml:"volumes"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
			Healthcheck     struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(deployRead(t, "deploy/docker-compose.yml"), &c); err != nil {
		t.Fatal(err)
	}
	side, ok := c.Services["payrails-mtls-proxy"]
	if !ok {
		t.Fatal("docker-compose.yml has no payrails-mtls-proxy service")
	}
	if !slices.Contains(side.Volumes, "./certs:/certs:ro") {
		t.Errorf("the sidecar's volumes %q do not mount the certificate folder read-only at /certs", side.Volumes)
	}
	if !slices.Contains(side.Healthcheck.Test, "health") {
		t.Errorf("the sidecar's healthcheck %q does not use the health command", side.Healthcheck.Test)
	}
	if grace, err := time.ParseDuration(side.StopGracePeriod); err != nil || grace <= deployDefaultShutdown(t) {
		t.Errorf("stop_grace_period %q must exceed timeouts.shutdown %v", side.StopGracePeriod, deployDefaultShutdown(t))
	}
	apps := 0
	proxyURL := "http://127.0.0.1:" + strconv.Itoa(deployPort(t, config.DefaultListen))
	for name, s := range c.Services {
		if s.NetworkMode != "service:payrails-mtls-proxy" {
			continue
		}
		apps++
		if s.Environment["HTTP_PROXY"] != proxyURL || s.Environment["http_proxy"] != proxyURL {
			t.Errorf("service %s: HTTP_PROXY %q, http_proxy %q; want both %s", name,
				s.Environment["HTTP_PROXY"], s.Environment["http_proxy"], proxyURL)
		}
	}
	if apps == 0 {
		t.Error(`no service shares the sidecar's network namespace (network_mode: "service:payrails-mtls-proxy")`)
	}
}

func TestDeployDockerfile(t *testing.T) {
	f := dockerfile.Parse(deployRead(t, "Dockerfile"))
	var runs []string
	for _, i := range f {
		if i.Cmd == "RUN" {
			runs = append(runs, i.Args)
		}
	}
	// The base images are build arguments; their defaults are the public images.
	froms := f.Stages()
	if !slices.ContainsFunc(runs, func(r string) bool { return strings.Contains(r, "scripts/build.sh") }) {
		t.Errorf("no RUN step calls scripts/build.sh: %q", runs)
	}
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			t.Errorf("RUN %q: the release build command lives only in scripts/build.sh", r)
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") {
		t.Errorf("stages %q: want a build stage and a final gcr.io/distroless/static stage", froms)
	}
	// The build stage's Go is the release toolchain go.mod pins, which
	// scripts/build.sh, .ci/run and the README export as GOTOOLCHAIN.
	toolchain := deployToolchain(t)
	if len(froms) > 0 && !strings.Contains(froms[0], "golang:"+strings.TrimPrefix(toolchain, "go")+"-") {
		t.Errorf("build stage %q: want the golang image of go.mod's toolchain %s", froms[0], toolchain)
	}
	for _, from := range froms {
		if strings.Contains(from, "golang:") && !strings.Contains(from, "golang:"+strings.TrimPrefix(toolchain, "go")+"-") {
			t.Errorf("stage %q: every Go build stage takes go.mod's toolchain %s (GO_IMAGE)", from, toolchain)
		}
	}
	// Every image's health check asks the admin address serve listens on
	// (health without --url), so a changed PAYRAILS_PROXY_ADMIN_LISTEN keeps
	// it right (issue 25).
	for _, i := range f {
		if i.Cmd == "HEALTHCHECK" && strings.Contains(i.Args, "--url") {
			t.Errorf("HEALTHCHECK %s pins --url; leave it out so that health follows admin_listen", i.Args)
		}
	}
	for _, f := range []string{"scripts/build.sh", ".ci/run", "README.md"} {
		if !strings.Contains(string(deployRead(t, f)), "GOTOOLCHAIN="+toolchain) {
			t.Errorf("%s does not export GOTOOLCHAIN=%s, go.mod's toolchain", f, toolchain)
		}
	}
	for cmd, want := range map[string]string{
		"USER":        "nonroot",
		"HEALTHCHECK": `"health"`,
		"ENTRYPOINT":  `["/payrails-mtls-proxy"]`,
		"CMD":         `["serve"]`,
		"VOLUME":      "/certs",
	} {
		if !strings.Contains(f.Last(cmd), want) {
			t.Errorf("%s %q does not contain %s", cmd, f.Last(cmd), want)
		}
	}
	env := deployDockerfileEnv(t)
	if got, want := deployPort(t, env["PAYRAILS_PROXY_LISTEN"]), deployPort(t, config.DefaultListen); got != want {
		t.Errorf("ENV PAYRAILS_PROXY_LISTEN port %d, want the default %d", got, want)
	}
	if host, _, _ := net.SplitHostPort(env["PAYRAILS_PROXY_LISTEN"]); !net.ParseIP(host).IsLoopback() {
		t.Errorf("ENV PAYRAILS_PROXY_LISTEN=%s: the proxy port must stay on loopback", env["PAYRAILS_PROXY_LISTEN"])
	}

	build := string(deployRead(t, "scripts/build.sh"))
	for _, want := range []string{"CGO_ENABLED=0 go build -trimpath", "-X main.version=", "./cmd/payrails-mtls-proxy"} {
		if !strings.Contains(build, want) {
			t.Errorf("scripts/build.sh does not contain %q", want)
		}
	}
}

// deployToolchain is go.mod's toolchain line: "go1.27.3".
func deployToolchain(t *testing.T) string {
	t.Helper()
	for line := range strings.Lines(string(deployRead(t, "go.mod"))) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			return v
		}
	}
	t.Fatal("go.mod has no toolchain line; pin the release toolchain (toolchain goX.Y.Z)")
	return ""
}

func TestDeploySystemd(t *testing.T) {
	unit := map[string][]string{}
	for line := range strings.Lines(string(deployRead(t, "deploy/systemd/payrails-mtls-proxy.service"))) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	if r := strings.Join(unit["ExecReload"], " "); !strings.Contains(r, "-HUP") || !strings.Contains(r, "$MAINPID") {
		t.Errorf("ExecReload=%s: want kill -HUP $MAINPID (SIGHUP re-reads the certificates)", r)
	}
	stop, err := time.ParseDuration(strings.Join(unit["TimeoutStopSec"], ""))
	if err != nil || stop <= deployDefaultShutdown(t) {
		t.Errorf("TimeoutStopSec=%q must be a duration above timeouts.shutdown %v", unit["TimeoutStopSec"], deployDefaultShutdown(t))
	}
	if !strings.Contains(strings.Join(unit["ExecStart"], ""), " serve ") {
		t.Errorf("ExecStart=%q does not run serve", unit["ExecStart"])
	}
}

// TestDeployDockerfilePKCS11: the Dockerfile's pkcs11 target builds the
// pkcs11 flavour with scripts/build.sh --pkcs11 (cgo), natively, and runs it
// on a glibc base (a static base cannot dlopen an HSM's library) as the
// default image runs its binary: non-root, with the health check.
func TestDeployDockerfilePKCS11(t *testing.T) {
	ins := dockerfile.Parse(deployRead(t, "Dockerfile"))
	stage := ""
	seen := map[string]map[string]string{}
	for _, i := range ins {
		if i.Cmd == "FROM" {
			f := strings.Fields(i.Args)
			stage = f[len(f)-1]
			if len(f) < 3 {
				stage = "(final)"
			}
			seen[stage] = map[string]string{"FROM": i.Args}
			continue
		}
		if seen[stage] != nil {
			seen[stage][i.Cmd] += i.Args + "\n"
		}
	}
	build, final := seen["build-pkcs11"], seen["pkcs11"]
	if build == nil || final == nil {
		t.Fatalf("no build-pkcs11 and pkcs11 stages in the Dockerfile (stages %v)", slices.Collect(maps.Keys(seen)))
	}
	if !strings.Contains(build["RUN"], "scripts/build.sh --pkcs11") || strings.Contains(build["FROM"], "BUILDPLATFORM") {
		t.Errorf("build-pkcs11: FROM %q, RUN %q; want a native build with scripts/build.sh --pkcs11", build["FROM"], build["RUN"])
	}
	// Its base is a build argument (CC_BASE_IMAGE) whose default is the public
	// distroless/cc: glibc, libstdc++ and OpenSSL, which vendors' libraries need.
	from := ""
	for _, s := range ins.Stages() {
		if strings.HasSuffix(s, " AS pkcs11") {
			from = s
		}
	}
	if !strings.HasPrefix(from, "gcr.io/distroless/cc-debian12:nonroot ") || !strings.Contains(final["FROM"], "${CC_BASE_IMAGE}") {
		t.Errorf("pkcs11 stage FROM %q (%q with the build arguments' defaults): want ${CC_BASE_IMAGE}, default gcr.io/distroless/cc-debian12:nonroot, a glibc base, non-root",
			final["FROM"], from)
	}
	for cmd, want := range map[string]string{"USER": "nonroot", "HEALTHCHECK": `"health"`, "ENTRYPOINT": `["/payrails-mtls-proxy"]`,
		"COPY": "--from=build-pkcs11"} {
		if !strings.Contains(final[cmd], want) {
			t.Errorf("pkcs11 stage %s %q does not contain %s", cmd, final[cmd], want)
		}
	}
}

// TestDeployCIFuzzesEveryTarget: .ci/run runs every fuzz target of the
// module (the README's list follows it), in the package that holds it, so
// that a new parser's target cannot be left out of CI unnoticed.
func TestDeployCIFuzzesEveryTarget(t *testing.T) {
	ci := string(deployRead(t, ".ci/run"))
	readme := string(deployRead(t, "README.md"))
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	found := 0
	err := filepath.WalkDir(deployRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deployRoot, path)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // a nested module: its own CI lines, not this module's
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(data), -1) {
			found++
			pkg := "./" + filepath.ToSlash(filepath.Dir(rel)) + "/"
			want := fmt.Sprintf("-fuzz='^%s$'", m[1])
			line := ""
			for _, l := range strings.Split(ci, "\n") {
				if strings.Contains(l, want) {
					line = l
				}
			}
			switch {
			case line == "":
				t.Errorf("%s: .ci/run does not run %s (add: go test -run='^$' %s -fuzztime=8s -fuzzminimizetime=1s -parallel=1 %s)", rel, m[1], want, pkg)
			case !strings.HasSuffix(strings.TrimSpace(line), " "+pkg):
				t.Errorf(".ci/run runs %s as %q, want it in %s", m[1], line, pkg)
			}
			if !strings.Contains(readme, "`"+m[1]+"`") {
				t.Errorf("README.md's list of the fuzz targets CI runs lacks `%s`", m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no fuzz target found: the walk is looking in the wrong place")
	}
}
