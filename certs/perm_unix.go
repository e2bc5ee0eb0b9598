//go:build unix

package certs

import (
	"io/fs"
	"os"
	"syscall"
)

// groupIsOurs reports whether the file's group is one this process belongs
// to: what Kubernetes arranges with fsGroup so that a non-root container can
// read a Secret mounted with mode 0440.
func groupIsOurs(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	gid := int(sys.Gid)
	if gid == os.Getegid() {
		return true
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}
