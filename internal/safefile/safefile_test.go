package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
)

// TestReadNeverBlocks: a FIFO without a writer, a folder and a socket
// are refused at once with ErrNotRegular; a regular file and a symlink to
// one are read.
func TestReadNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "domain.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "secret")
	if err := os.WriteFile(regular, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir} {
		done := make(chan error, 1)
		go func() { _, _, err := safefile.Read(p, 1<<20); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("Read(%s) = %v, want ErrNotRegular", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Read(%s) blocked", p)
		}
	}
	for _, p := range []string{regular, link} {
		if data, _, err := safefile.Read(p, 1<<20); err != nil || string(data) != "s3cret" {
			t.Errorf("Read(%s) = %q, %v", p, data, err)
		}
	}
	if _, _, err := safefile.Read(regular, 3); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("Read over the limit = %v, want ErrTooLarge", err)
	}
}

// TestWarning: a secret file readable by others gets a warning naming
// the file, its mode and the chmod to run; one readable by its owner
// only gets none.
func TestWarning(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o644, true}, {0o604, true}} {
		p := filepath.Join(dir, tt.mode.String())
		if err := os.WriteFile(p, []byte("x"), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tt.mode); err != nil { // not the umask's
			t.Fatal(err)
		}
		_, st, err := safefile.Read(p, 10)
		if err != nil {
			t.Fatal(err)
		}
		w := safefile.Warning("the client secret file", p, st)
		if (w != "") != tt.warn {
			t.Errorf("mode %04o: warning %q, want one: %v", tt.mode, w, tt.warn)
		}
	}
}
