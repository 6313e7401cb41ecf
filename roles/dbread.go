package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// readAsOwner refuses to read the database at path as another user than the
// one it belongs to (the daemon's). SQLite creates the database's -wal and
// -shm files for a reader when the daemon is not running, and leaves them
// behind: created by root (sudo pkiboard submissions), they would stop the
// daemon at its next start, since it cannot write files it does not own
// (sqlstore.ErrNotOwner). Another user than root cannot reach the data
// directory at all (mode 0700). A database that does not exist yet is the
// caller's to report.
func readAsOwner(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	uid, _, ok := fileOwner(fi)
	if !ok || uid == os.Geteuid() {
		return nil
	}
	owner := userName(uid)
	return fmt.Errorf("%s belongs to %s, and this command runs as %s: reading it as another user would leave SQLite's %s-wal and %s-shm files owned by %s, and the daemon, which cannot write them, would refuse to start; run the command as the daemon's user, e.g. sudo -u %s %s",
		path, owner, userName(os.Geteuid()), filepath.Base(path), filepath.Base(path), userName(os.Geteuid()), owner, commandLine())
}

// commandLine is how this process was run, for a message that says to run it
// again otherwise.
func commandLine() string {
	s := ""
	for i, a := range os.Args {
		if i > 0 {
			s += " "
		}
		s += shellWord(a)
	}
	return s
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	for _, r := range s {
		if !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == ',' || r == '+' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	if s == "" {
		return "''"
	}
	return s
}
