package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// resolve makes s's path absolute and clean: relative paths from the file
// resolve against the file's directory, those from flags or environment
// against the working directory. It returns "" for an unset setting.
func (b *values) resolve(s setting) string {
	if !s.set {
		return ""
	}
	p := s.value
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	if s.at.fromFile {
		return filepath.Join(b.baseDir, p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		b.addCause(s.at, err, "cannot make %q absolute (%v); give an absolute path", p, err)
		return filepath.Clean(p)
	}
	return abs
}

// file resolves s and, when checking files, requires a regular file there
// (symlinks followed, as Kubernetes Secret volumes are symlinks).
func (b *values) file(s setting) string {
	p := b.resolve(s)
	if p == "" || !b.checkFiles {
		return p
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		b.statProblem(s, p, "file", err)
	case fi.IsDir():
		b.add(s.at, "%q is a directory, not a file; point to the file itself", p)
	case !fi.Mode().IsRegular():
		b.add(s.at, "%q is not a regular file (%s); point to a regular file", p, fi.Mode().Type())
	}
	return p
}

// module resolves s, key_uri's module-path, and, when checking files,
// requires a file there like file, saying where a missing library comes
// from: the -pkcs11 image carries none (docs/deployment.md).
func (b *values) module(s setting) string {
	p := b.resolve(s)
	if p == "" || !b.checkFiles {
		return p
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		b.addCause(s.at, err, "module-path %q: no PKCS#11 library there; install the HSM vendor's library at that path "+
			"(SoftHSM2: apt-get install softhsm2) or fix module-path. In a container, the -pkcs11 image has no library "+
			"of its own: mount it read-only (-v /host/path/lib.so:%s:ro) or build an image FROM it that copies the "+
			"library in (docs/deployment.md)", p, p)
		return p
	}
	return b.file(s)
}

// dir resolves s and, when checking files, requires a directory there.
func (b *values) dir(s setting) string {
	p := b.resolve(s)
	if p == "" || !b.checkFiles {
		return p
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		b.statProblem(s, p, "directory", err)
	case !fi.IsDir():
		b.add(s.at, "%q is a file, not a directory; give the folder holding the certificate and key, or use cert_file and key_file", p)
	}
	return p
}

// statProblem reports why p could not be used.
func (b *values) statProblem(s setting, p, what string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint := ""
		if strings.HasPrefix(s.value, "~") {
			hint = " (~ is not expanded; write the full path)"
		}
		b.addCause(s.at, err, "%s %q does not exist; create it or fix the path%s", what, p, hint)
	case errors.Is(err, fs.ErrPermission):
		b.addCause(s.at, err, "cannot access %s %q: permission denied; let the proxy's user read it and search its parent directories", what, p)
	default:
		b.addCause(s.at, err, "cannot access %s %q: %v; fix the path", what, p, unwrapPathError(err))
	}
}

// unwrapPathError drops the "stat PATH:" prefix the message already has.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
