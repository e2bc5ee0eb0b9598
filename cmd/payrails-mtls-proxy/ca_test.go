package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// caInit runs `ca init` into dir for one host, with extra flags.
func caInit(t *testing.T, dir string, extra ...string) (int, string) {
	t.Helper()
	code, _, errOut := runCLI(t, nil, append([]string{"ca", "init", "--out-dir", dir, "--host", apiHost}, extra...)...)
	return code, errOut
}

// wantCAPair: dir holds a ca.pem and ca.key that belong together, with
// their modes, both regular files.
func wantCAPair(t *testing.T, dir string) {
	t.Helper()
	for name, mode := range map[string]os.FileMode{"ca.pem": 0o644, "ca.key": 0o600} {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != mode {
			t.Errorf("%s: %v (%v), want a regular file of mode %v", name, st.Mode(), err, mode)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")); err != nil {
		t.Errorf("ca.pem and ca.key do not belong together: %v", err)
	}
}

// TestCAInitFiles: ca init creates its two files exclusively and never
// writes through a symbolic link, with or without --force; --force
// replaces regular files by renaming over them.
func TestCAInitFiles(t *testing.T) {
	t.Run("a fresh folder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "mitm")
		if code, errOut := caInit(t, dir); code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		wantCAPair(t, dir)
	})

	// The links point outside the folder; whatever ca init does, nothing
	// may appear or change there, and the links stay as they were.
	links := []struct {
		name, link string
		dangling   bool
		force      bool
	}{
		{"dangling ca.key", "ca.key", true, false},
		{"dangling ca.key, --force", "ca.key", true, true},
		{"ca.key to an existing file", "ca.key", false, false},
		{"ca.key to an existing file, --force", "ca.key", false, true},
		{"dangling ca.pem", "ca.pem", true, false},
		{"ca.pem to an existing file", "ca.pem", false, false},
		{"ca.pem to an existing file, --force", "ca.pem", false, true},
	}
	for _, tt := range links {
		t.Run(tt.name, func(t *testing.T) { checkCAInitRefusesLink(t, tt.link, tt.dangling, tt.force) })
	}

	t.Run("existing files: refused without --force, replaced with it", func(t *testing.T) {
		for _, name := range []string{"ca.key", "ca.pem"} {
			t.Run(name, func(t *testing.T) { checkCAInitReplaces(t, name) })
		}
	})

	t.Run("the folder is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		mustWrite(t, f, nil, 0o600)
		if code, errOut := caInit(t, f); code == exitOK || !strings.Contains(errOut, f) {
			t.Errorf("exit %d, want a refusal naming %s:\n%s", code, f, errOut)
		}
	})
}

// checkCAInitRefusesLink: with linkName (ca.key or ca.pem) a symbolic link
// to a file outside the folder (dangling: one that does not exist), ca init
// refuses, names the link, and changes nothing there or in the folder.
func checkCAInitRefusesLink(t *testing.T, linkName string, dangling, force bool) {
	t.Helper()
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "target")
	const original = "not yours\n"
	if !dangling {
		mustWrite(t, target, []byte(original), 0o644)
	}
	link := filepath.Join(dir, linkName)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	var args []string
	if force {
		args = append(args, "--force")
	}
	code, errOut := caInit(t, dir, args...)
	if code == exitOK {
		t.Errorf("ca init succeeded with %s a symbolic link to %s", linkName, target)
	}
	if !strings.Contains(errOut, link) || !strings.Contains(errOut, "symbolic link") {
		t.Errorf("the refusal does not name %s as a symbolic link:\n%s", link, errOut)
	}
	got, err := os.ReadFile(target)
	switch {
	case dangling && err == nil:
		t.Errorf("ca init created %s outside the folder through the link %s (%d bytes)", target, linkName, len(got))
	case !dangling && string(got) != original:
		t.Errorf("ca init changed %s outside the folder through the link %s: %q", target, linkName, got)
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 1 || (dangling && len(entries) > 0) {
		t.Errorf("files appeared outside the folder: %v", entries)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link %s was replaced or removed (%v, %v)", link, st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the folder holds %v; want only the link (nothing written after the refusal)", entries)
	}
}

// checkCAInitReplaces: an existing regular file name (ca.key or ca.pem)
// is refused without --force and replaced with it, by renaming over the
// name, so a hard link elsewhere keeps the old content.
func checkCAInitReplaces(t *testing.T, name string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, name)
	mustWrite(t, p, []byte("the old one\n"), 0o600)
	other := filepath.Join(t.TempDir(), "hardlink")
	if err := os.Link(p, other); err != nil {
		t.Fatal(err)
	}
	code, errOut := caInit(t, dir)
	if code == exitOK || !strings.Contains(errOut, p) || !strings.Contains(errOut, "--force") {
		t.Errorf("exit %d, want a refusal naming %s and --force:\n%s", code, p, errOut)
	}
	if got, _ := os.ReadFile(p); string(got) != "the old one\n" {
		t.Errorf("%s changed without --force: %q", name, got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the folder holds %v after the refusal, want only %s", entries, name)
	}
	if code, errOut := caInit(t, dir, "--force"); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, errOut)
	}
	wantCAPair(t, dir)
	if got, _ := os.ReadFile(other); !bytes.Equal(got, []byte("the old one\n")) {
		t.Errorf("--force wrote through the old file (its hard link now holds %q)", got)
	}
}

// TestCAInitPrintsTheListenAddress: with --config, the proxy address ca
// init tells the services to use is the configuration's listen address,
// not the default port (issue 24, item 3); without, the default.
func TestCAInitPrintsTheListenAddress(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:18443\nupstreams:\n  - name: live\n    url: https://"+apiHost+"\n    cert_dir: /certs\n"), 0o600)
	tests := []struct {
		name  string
		flags []string
		want  string
	}{
		{"config", []string{"--config", cfg}, "127.0.0.1:18443"},
		{"no config", nil, "127.0.0.1:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"ca", "init", "--out-dir", filepath.Join(t.TempDir(), "ca"), "--host", apiHost}, tt.flags...)
			code, out, errOut := runCLI(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range []string{"HTTPS_PROXY=http://" + tt.want, "HTTP_PROXY=http://" + tt.want} {
				if !strings.Contains(out, w) {
					t.Errorf("ca init printed no %q:\n%s", w, out)
				}
			}
			if tt.want != "127.0.0.1:8080" && strings.Contains(out, ":8080") {
				t.Errorf("ca init printed the default port:\n%s", out)
			}
		})
	}
}

// TestProxyAddressFor: a wildcard listen address names no address a
// service can use, so ca init prints a placeholder for its host.
func TestProxyAddressFor(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8080": "127.0.0.1:8080",
		"[::1]:8443":     "[::1]:8443",
		"0.0.0.0:8080":   "PROXY-HOST:8080",
		"[::]:8080":      "PROXY-HOST:8080",
		":8080":          "PROXY-HOST:8080",
	} {
		if got := proxyAddressFor(listen); got != want {
			t.Errorf("proxyAddressFor(%q) = %q, want %q", listen, got, want)
		}
	}
}
