package interop

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestToolFinds: a program on PATH and one in $GOBIN are found; an
// absolute path is returned as it is when executable.
func TestToolFinds(t *testing.T) {
	bin := t.TempDir()
	gobin := t.TempDir()
	for _, p := range []string{filepath.Join(bin, "onpath"), filepath.Join(gobin, "ingobin")} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("GOBIN", gobin)
	for name, want := range map[string]string{
		"onpath":                        filepath.Join(bin, "onpath"),
		"ingobin":                       filepath.Join(gobin, "ingobin"),
		filepath.Join(gobin, "ingobin"): filepath.Join(gobin, "ingobin"),
	} {
		if got := Tool(t, name); got != want {
			t.Errorf("Tool(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestToolMissing: a missing program skips the test, or fails it under
// PAYRAILS_PROXY_REQUIRE_INTEROP=1, saying how to install it.
func TestToolMissing(t *testing.T) {
	t.Setenv("GOBIN", t.TempDir())
	for _, required := range []string{"0", "1"} {
		t.Setenv(EnvRequire, required)
		rec := &recorder{TB: t}
		done := make(chan struct{})
		go func() { // Skip and Fatal end the goroutine, as in a real test
			defer close(done)
			Tool(rec, "squid-that-is-not-there")
		}()
		<-done
		if wantFail := required == "1"; rec.failed != wantFail || rec.skipped == wantFail {
			t.Errorf("%s=%s: failed %v, skipped %v; want failed %v", EnvRequire, required, rec.failed, rec.skipped, wantFail)
		}
		if rec.msg == "" {
			t.Errorf("%s=%s: no message", EnvRequire, required)
		}
	}
}

// recorder stands in for a test's Fatalf and Skipf.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, format
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, format
	runtime.Goexit()
}
