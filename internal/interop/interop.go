// Package interop finds the third-party programs the tests run against
// (curl, openssl, nginx, squid, promtool, helm, the client matrix's
// runtimes, ...). Test support only:
// nothing in the binary imports it.
//
// Without a program a test skips, with a message that says how to install
// it; where PAYRAILS_PROXY_REQUIRE_INTEROP=1 (as in CI, whose .ci/run
// installs every one of them) it fails instead, so that CI never passes by
// skipping.
package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvRequire is the variable that turns a missing program into a failure.
const EnvRequire = "PAYRAILS_PROXY_REQUIRE_INTEROP"

// Required reports whether a missing or wrong program fails the test
// (EnvRequire=1) rather than skipping it.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// install says how to get each program on Debian, as .ci/run does; helm's
// pinned version is in .ci/helm-version.
var install = map[string]string{
	"curl":                           "apt-get install -y curl",
	"openssl":                        "apt-get install -y openssl",
	"nginx":                          "apt-get install -y nginx-light",
	"python3":                        "apt-get install -y python3",
	"javac":                          "apt-get install -y default-jdk-headless",
	"java":                           "apt-get install -y default-jdk-headless",
	"keytool":                        "apt-get install -y default-jdk-headless",
	"wget":                           "apt-get install -y wget",
	"php":                            "apt-get install -y php-cli php-curl",
	"ruby":                           "apt-get install -y ruby",
	"node":                           "apt-get install -y nodejs npm (where the machine has no Node.js), then bash .ci/clients-npm.sh DIR",
	"promtool":                       "apt-get install -y prometheus",
	"squid":                          "apt-get install -y squid",
	"/usr/lib/squid/basic_ncsa_auth": "apt-get install -y squid",
	"softhsm2-util":                  "apt-get install -y softhsm2",
	"pkcs11-tool":                    "apt-get install -y opensc",
	"helm":                           "go install helm.sh/helm/v3/cmd/helm@$(cat .ci/helm-version)",
	"podman":                         "apt-get install -y podman runc (in a sandbox like CI's, also bash .ci/podman-setup.sh)",
	"etcd":                           "apt-get install -y etcd-server",
}

// Tool returns the path of the program name: found on PATH, or where `go
// install` puts programs ($GOBIN, $GOPATH/bin), or name itself when it is
// an absolute path that exists. Without it, t skips (or, under
// EnvRequire=1, fails) saying how to install it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, ok := find(name); ok {
		return p
	}
	how := install[name]
	if how == "" {
		how = "see .ci/run for what the tests need"
	}
	if Required() {
		t.Fatalf("%s is required (%s=1) but not installed; install it: %s", name, EnvRequire, how)
	}
	t.Skipf("%s not installed (%s); set %s=1 to make this a failure", name, how, EnvRequire)
	return ""
}

func find(name string) (string, bool) {
	if filepath.IsAbs(name) {
		return name, isExecutable(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range goBinDirs() {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// goBinDirs are where `go install` puts programs: $GOBIN, else each
// $GOPATH's bin, else ~/go/bin.
func goBinDirs() []string {
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var dirs []string
		if len(lines) > 0 && lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		for _, gp := range lines[1:] {
			for _, d := range filepath.SplitList(gp) {
				dirs = append(dirs, filepath.Join(d, "bin"))
			}
		}
		return dirs
	}
	if home, err := os.UserHomeDir(); err == nil {
		return []string{filepath.Join(home, "go", "bin")}
	}
	return nil
}
