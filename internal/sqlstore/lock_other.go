//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sqlstore

import "os"

// lockFile takes no lock on these systems (the daemons run on Linux): nothing
// but SQLite's own locking, which keeps the file consistent, stands between
// two daemons writing one database.
func lockFile(path string) (*os.File, error) { return nil, nil }

func unlockFile(f *os.File) {}

// checkOwner checks nothing on these systems: file ownership as the daemons
// use it on Linux does not apply.
func checkOwner(path string) error { return nil }
