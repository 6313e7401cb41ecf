//go:build unix

package roles

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the uid and gid that own the file fi describes; ok is
// false when the system does not say (see owner_windows.go).
func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
