// Package repo finds the repository's files for the deployment tests, which
// run in their own package folders under deploy/deploytest.
package repo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Root returns the repository's top folder: the nearest folder above the
// working directory that holds scripts/build.sh and the sidecar's go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if isFile(filepath.Join(d, "scripts", "build.sh")) && isFile(filepath.Join(d, "go.mod")) {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no repository (scripts/build.sh and go.mod) above %s", dir)
		}
	}
}

// Path returns the file rel (slash-separated, from the top) as a path.
func Path(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(Root(t), filepath.FromSlash(rel))
}

// Read returns the content of the file rel, failing the test if it cannot.
func Read(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Toolchain returns the sidecar's go.mod toolchain line ("go1.27.3"): the
// Go that scripts/build.sh and the images build with.
func Toolchain(t testing.TB) string {
	t.Helper()
	for line := range strings.Lines(string(Read(t, "go.mod"))) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			return v
		}
	}
	t.Fatal("go.mod has no toolchain line (toolchain goX.Y.Z)")
	return ""
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
