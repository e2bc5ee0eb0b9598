package deploytest

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// root is the repository's top, where deploy/, .ci/ and go.mod are.
const root = "../.."

func repoPath(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

func readRepo(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// requireTool returns the path of a program, from PATH or else from extra
// places; without it the test skips, or fails when
// PAYRAILS_PROXY_REQUIRE_INTEROP=1 (as in CI, which installs it).
func requireTool(t testing.TB, name, install string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range extra {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	if os.Getenv("PAYRAILS_PROXY_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is required (PAYRAILS_PROXY_REQUIRE_INTEROP=1) but not on PATH; install it: %s", name, install)
	}
	t.Skipf("%s not installed (%s); set PAYRAILS_PROXY_REQUIRE_INTEROP=1 to make this a failure", name, install)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// helmVersionFile pins the helm release the chart is tested with; .ci/run
// installs that version from it.
const helmVersionFile = ".ci/helm-version"

// requireHelm finds helm on PATH or in $(go env GOPATH)/bin, where
// `go install` puts it. A helm of another version than the pinned one is
// used with a note, or refused under PAYRAILS_PROXY_REQUIRE_INTEROP=1.
func requireHelm(t testing.TB) string {
	t.Helper()
	want := strings.TrimSpace(string(readRepo(t, helmVersionFile)))
	install := "go install helm.sh/helm/v3/cmd/helm@" + want
	p := requireTool(t, "helm", install, goBinDirs()...)
	got := "unknown"
	if bi, err := buildinfo.ReadFile(p); err == nil && bi.Main.Path == "helm.sh/helm/v3" {
		got = bi.Main.Version
	}
	if got != want {
		if os.Getenv("PAYRAILS_PROXY_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s is helm %s, but %s pins %s; run: %s", p, got, helmVersionFile, want, install)
		}
		t.Logf("note: %s is helm %s, %s pins %s (%s)", p, got, helmVersionFile, want, install)
	}
	return p
}

// goBinDirs are where `go install` puts programs: $GOBIN, else $GOPATH/bin.
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

// runTool runs a program with a deadline and returns its combined output.
func runTool(t testing.TB, dir string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
