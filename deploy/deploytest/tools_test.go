package deploytest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
