// Package safefile reads the files an operator hands the proxy: keys,
// certificates, CA bundles, passphrases, client secrets and credentials.
// It opens only regular files, without ever blocking on a FIFO, socket or
// device, and tells when a file holding a secret can be read by others.
//
// A FIFO moved over a key file made open(2) block for good: the reload
// that read it never ended, a later valid drop was never used, nothing was
// logged, and SIGTERM no longer stopped the process (issue 22). Checking
// the path first is not enough (a file can be swapped between the check
// and the open), so Read opens with O_NONBLOCK, which returns at once for
// a FIFO without a writer, and checks the file it opened with fstat.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// ErrNotRegular is wrapped by Read's error for a path that is not a
// regular file (or a symlink to one).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Read's error for a file larger than the limit.
var ErrTooLarge = errors.New("file too large")

// Read returns the content of the regular file at path (symlinks
// followed), at most max bytes, and its FileInfo (also on ErrTooLarge). It
// never blocks on a FIFO, socket or device: those fail with ErrNotRegular.
func Read(path string, max int64) ([]byte, fs.FileInfo, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, st, fmt.Errorf("%s is %s, %w: give the file itself", path, describe(st.Mode()), ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, st, err
	}
	if int64(len(data)) > max {
		return nil, st, fmt.Errorf("%s is larger than %d bytes: %w", path, max, ErrTooLarge)
	}
	return data, st, nil
}

// Info returns the FileInfo of the regular file at path (symlinks
// followed), opened as Read opens it: never waited on.
func Info(path string) (fs.FileInfo, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return st, fmt.Errorf("%s is %s, %w: give the file itself", path, describe(st.Mode()), ErrNotRegular)
	}
	return st, nil
}

// describe names a file type for messages.
func describe(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0 || m&fs.ModeCharDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	}
	return "not a regular file"
}

// Exposure is who besides the owner can read a file.
type Exposure int

const (
	OwnerOnly Exposure = iota // mode 0600 or stricter
	// OwnGroup: readable by its group only, and that group is this
	// process's own: how Kubernetes lets a non-root container read a
	// Secret (fsGroup turns defaultMode 0400 into 0440). Fine while no
	// other process shares the group.
	OwnGroup
	Others // readable by another group or by everyone
)

// ExposureOf tells who can read the file st describes.
func ExposureOf(st fs.FileInfo) Exposure {
	perm := st.Mode().Perm()
	switch {
	case perm&0o077 == 0:
		return OwnerOnly
	case perm&0o007 == 0 && groupIsOurs(st):
		return OwnGroup
	}
	return Others
}

// Warning is the operator's warning about a file holding a secret (what,
// such as "the client secret file") that others can read, or "" when
// only the owner or this process's own group can.
func Warning(what, path string, st fs.FileInfo) string {
	if st == nil || ExposureOf(st) != Others {
		return ""
	}
	return fmt.Sprintf("%s %s is readable by group or others (mode %04o): run `chmod 600 %s` (Kubernetes: "+
		"defaultMode 0400 with the pod's fsGroup set to the container's group)", what, path, st.Mode().Perm(), path)
}
