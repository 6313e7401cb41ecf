//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// lockFile takes the exclusive lock on path+".lock" that keeps a second
// daemon (or a second Open in this process: flock locks belong to the open
// file, not to the process) off the database, and writes the process's ID
// into it for the message the next opener gets.
func lockFile(path string) (*os.File, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		var b [32]byte
		if n, _ := f.ReadAt(b[:], 0); n > 0 {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
				holder = fmt.Sprintf("pid %d; ", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (%sis the daemon running?)", ErrLocked, path, holder)
		}
		return nil, fmt.Errorf("sqlstore: lock %s: %w", name, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// unlockFile releases the lock lockFile took. The file stays: removing it
// would let a second opener lock a new file while a third still holds the old.
func unlockFile(f *os.File) {
	if f == nil {
		return
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// checkOwner refuses the database when its file, its -wal, -shm or lock file
// belongs to another user than the one the process runs as, or is not
// writable by its owner: SQLite would open it read-only or not at all, and the
// daemon's writes would fail (a root-owned -shm left by "sudo sqlite3" is the
// usual cause). The message says how to fix it.
func checkOwner(path string) error {
	euid := os.Geteuid()
	for _, name := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
		fi, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sqlstore: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if int(st.Uid) != euid {
			return fmt.Errorf("%w: %s belongs to %s, not to %s, which runs this process, so SQLite could not write it and every write would fail (a command run as another user, such as sudo sqlite3, leaves such files); fix it with: chown %s %s",
				ErrNotOwner, name, describeUser(int(st.Uid)), describeUser(euid), ownerSpec(euid, os.Getegid()), shellQuote(name))
		}
		if fi.Mode().Perm()&0o200 == 0 {
			return fmt.Errorf("%w: %s is not writable by its owner (mode %04o), so every write would fail; fix it with: chmod u+w %s",
				ErrNotOwner, name, fi.Mode().Perm(), shellQuote(name))
		}
	}
	return nil
}

// describeUser says "uid 1001 (pkiboard)", or "uid 1001" for a user without
// a name.
func describeUser(uid int) string {
	s := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		s += " (" + u.Username + ")"
	}
	return s
}

// ownerSpec is chown's USER:GROUP for uid and gid, by name where they have
// one.
func ownerSpec(uid, gid int) string {
	u, g := strconv.Itoa(uid), strconv.Itoa(gid)
	if x, err := user.LookupId(u); err == nil && x.Username != "" {
		u = x.Username
	}
	if x, err := user.LookupGroupId(g); err == nil && x.Name != "" {
		g = x.Name
	}
	return u + ":" + g
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == ':' || r == ',' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
