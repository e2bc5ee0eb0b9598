package certs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPlaceFile: which names PlaceFile writes, replaces or refuses, and
// that a refusal writes nothing anywhere.
func TestPlaceFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		make    func(t *testing.T, path, outside string)
		replace bool
		want    error // nil: written
	}{
		{"free name", func(*testing.T, string, string) {}, false, nil},
		{"free name, replace", func(*testing.T, string, string) {}, true, nil},
		{"regular file", writeOld, false, ErrExists},
		{"regular file, replace", writeOld, true, nil},
		{"dangling link", linkOutside, false, ErrNotRegular},
		{"dangling link, replace", linkOutside, true, ErrNotRegular},
		{"directory", mkdir, false, ErrExists},
		{"directory, replace", mkdir, true, ErrNotRegular},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			path := filepath.Join(dir, "f")
			tt.make(t, path, outside)
			err := PlaceFile(path, []byte("new"), 0o640, tt.replace)
			if tt.want == nil {
				got, rerr := os.ReadFile(path)
				st, _ := os.Lstat(path)
				if err != nil || rerr != nil || string(got) != "new" || st.Mode() != 0o640 {
					t.Fatalf("PlaceFile: %v; file %q (%v), mode %v; want written, mode 0640", err, got, rerr, st.Mode())
				}
			} else if !errors.Is(err, tt.want) {
				t.Fatalf("PlaceFile: %v, want %v", err, tt.want)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside the folder: %v", entries)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("the folder holds %v, want one name (no temporary file left)", entries)
			}
		})
	}
}

func writeOld(t *testing.T, path, _ string) {
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func linkOutside(t *testing.T, path, outside string) {
	if err := os.Symlink(filepath.Join(outside, "target"), path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path, _ string) {
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}
