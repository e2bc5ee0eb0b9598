package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGoproxyKindsCoverItsWarnings reads the source of the goproxy module
// this build uses and checks that every format it passes to Warnf has a
// kind in goproxyKinds, so that an upgrade adding warnings is noticed
// (they would be logged as "unknown", never with their arguments).
func TestGoproxyKindsCoverItsWarnings(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/elazarl/goproxy").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m github.com/elazarl/goproxy: %v (%q)", err, out)
	}
	warnf := regexp.MustCompile(`\.Warnf\(\s*"((?:[^"\\]|\\.)*)"`)
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(src), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue // the examples in doc comments
			}
			for _, m := range warnf.FindAllStringSubmatch(line, -1) {
				seen++
				if goproxyKind(m[1]) == goproxyUnknownKind {
					t.Errorf("%s: goproxy warns %q, which goproxyKinds does not name", filepath.Base(f), m[1])
				}
			}
		}
	}
	if seen < 10 {
		t.Errorf("found %d Warnf calls in %s; the pattern no longer matches goproxy's source", seen, dir)
	}
}
