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

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
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

// helmVersionFile pins the helm release the chart is tested with; CI builds
// that version (.ci/k8s-tools.sh, in the module .ci/k8s, whose go.mod
// requires it), a laptop installs it with `go install`.
const helmVersionFile = ".ci/helm-version"

// requireHelm finds helm on PATH or in $(go env GOPATH)/bin, where
// `go install` puts it. A helm of another version than the pinned one is
// used with a note, or refused under PAYRAILS_PROXY_REQUIRE_INTEROP=1.
func requireHelm(t testing.TB) string {
	t.Helper()
	want := strings.TrimSpace(string(readRepo(t, helmVersionFile)))
	install := "go install helm.sh/helm/v3/cmd/helm@" + want
	p := interop.Tool(t, "helm")
	got := "unknown"
	// (go install ...@version, or go build of the command in a module that
	// requires helm, as .ci/k8s: either way the build info's main module.)
	if bi, err := buildinfo.ReadFile(p); err == nil && bi.Main.Path == "helm.sh/helm/v3" {
		got = bi.Main.Version
	}
	if got != want {
		if interop.Required() {
			t.Fatalf("%s is helm %s, but %s pins %s; run: %s", p, got, helmVersionFile, want, install)
		}
		t.Logf("note: %s is helm %s, %s pins %s (%s)", p, got, helmVersionFile, want, install)
	}
	return p
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
