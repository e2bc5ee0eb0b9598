package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrExists: PlaceFile was asked to create a file whose name is taken (by
// a file, a directory or a symbolic link, even a dangling one).
var ErrExists = errors.New("the file already exists")

// ErrNotRegular: the name PlaceFile was asked to replace is a symbolic link
// or something else than a regular file. PlaceFile never writes through a
// link (it could point anywhere, e.g. outside the folder) and never
// replaces one either: what the link stood for is the operator's to
// decide.
var ErrNotRegular = errors.New("not a regular file")

// CheckPlace reports whether PlaceFile(path, ..., replace) would be
// allowed now: nil when path does not exist, or exists as a regular file
// and replace is true. Callers that write several files check every name
// first, so that a refusal leaves nothing half written. The answer can go
// stale; PlaceFile decides again when it writes.
func CheckPlace(path string, replace bool) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("checking %q: %w", path, err)
	case st.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(path)
		return &placeError{ErrNotRegular, fmt.Sprintf("%q is a symbolic link (to %q): files are never written "+
			"through a link nor over one; remove the link or choose another folder", path, target)}
	case !replace:
		return fmt.Errorf("%q: %w", path, ErrExists)
	case !st.Mode().IsRegular():
		return &placeError{ErrNotRegular, fmt.Sprintf("%q is not a regular file (%s); move it away or choose "+
			"another folder", path, st.Mode().Type())}
	}
	return nil
}

// placeError is a refusal whose message says it all; errors.Is matches
// its sentinel.
type placeError struct {
	sentinel error
	msg      string
}

func (e *placeError) Error() string        { return e.msg }
func (e *placeError) Is(target error) bool { return target == e.sentinel }

// PlaceFile writes data to path with mode so that it appears complete or
// not at all: written and synced under a hidden temporary name in the same
// folder, then moved into place, so a watcher of the folder never reads
// half a key. It never follows a symbolic link at path.
//
// Without replace the name must be free (CheckPlace), and the file is
// linked into place: link(2) fails on any existing name, so a file made
// meanwhile by a concurrent writer is never replaced either; the error
// wraps ErrExists. With replace an existing regular file is renamed over:
// the name gets the new content, and another hard link to the old file
// keeps the old one. A symbolic link or anything else than a regular file
// is refused (ErrNotRegular), whatever replace says.
func PlaceFile(path string, data []byte, mode os.FileMode, replace bool) error {
	if err := CheckPlace(path, replace); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a rename or link this removes nothing, or only the spare name
	err = tmp.Chmod(mode)       // CreateTemp makes 0600; set the mode before any byte is written
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	// rename(2) and link(2) act on the name itself: neither follows a
	// symbolic link that appeared at path since CheckPlace.
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%q: %w", path, ErrExists)
	} else if err != nil {
		err = os.Rename(tmp.Name(), path) // a filesystem without hard links: checked above
	}
	if err != nil {
		return fmt.Errorf("moving %q into place: %w", path, err)
	}
	return nil
}
