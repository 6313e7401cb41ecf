package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
)

// checkDataDir makes sure a daemon's data directory is private and usable
// before the daemon keeps anything in it (PROTOCOL.md §7): a missing one is
// created with mode 0700; an existing one must be a directory owned by the
// daemon's user with no access for group or others — the root key, the
// store, the operator socket and the submissions are there — else the daemon
// refuses to start and says exactly how to fix it. It must also be writable,
// so that a read-only one stops the daemon at start with a sentence naming
// it, rather than with whatever first write fails.
func checkDataDir(role, key, dir string) error {
	what := map[string]string{"ca": "the CA keeps its root, its store and its CRL there", "board": "the board keeps its key, its store and the submissions there"}[role]
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("%s: cannot create the data directory %s (%s): %v; %s: make it possible, or set %s", role, dir, key, bareErr(err), what, key)
		}
		if info, err = os.Stat(dir); err != nil {
			return fmt.Errorf("%s: the data directory %s (%s): %w", role, dir, key, err)
		}
	case err != nil:
		return fmt.Errorf("%s: the data directory %s (%s): %w", role, dir, key, err)
	}
	if err := privateDir(info, os.Getuid()); err != nil {
		return fmt.Errorf("%s: the data directory %s (%s) %v; %s, which no other user may reach: %s", role, dir, key, err, what, fix(err, dir))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("%s: the data directory %s (%s) is not writable: %v; %s: make it writable, or set %s", role, dir, key, bareErr(err), what, key)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// A dirProblem is what makes a data directory unsafe.
type dirProblem struct {
	notDir bool
	owner  int         // the directory's owner, if not the daemon's user; -1 if it is
	perm   fs.FileMode // its permission bits, if group or others have any; 0 if not
	uid    int         // the daemon's user
}

func (p *dirProblem) Error() string {
	switch {
	case p.notDir:
		return "is not a directory"
	case p.owner >= 0 && p.perm != 0:
		return fmt.Sprintf("belongs to %s, not to %s, the daemon's user, and has mode %04o, open to group or others", userName(p.owner), userName(p.uid), p.perm)
	case p.owner >= 0:
		return fmt.Sprintf("belongs to %s, not to %s, the daemon's user", userName(p.owner), userName(p.uid))
	}
	return fmt.Sprintf("has mode %04o, open to group or others", p.perm)
}

// privateDir returns a *dirProblem unless info is a directory owned by uid
// with no permission for group or others.
func privateDir(info fs.FileInfo, uid int) error {
	if !info.IsDir() {
		return &dirProblem{notDir: true, owner: -1, uid: uid}
	}
	p := &dirProblem{owner: -1, uid: uid}
	if owner, _, ok := fileOwner(info); ok && owner != uid {
		p.owner = owner
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		p.perm = perm
	}
	if p.owner < 0 && p.perm == 0 {
		return nil
	}
	return p
}

// fix says how to make dir private, for the problem err.
func fix(err error, dir string) string {
	var p *dirProblem
	if !errors.As(err, &p) || p.notDir {
		return "remove it, or set another data_dir"
	}
	var steps []string
	if p.owner >= 0 {
		steps = append(steps, fmt.Sprintf("chown -R %s %s", userName(p.uid), strconv.Quote(dir)))
	}
	if p.perm != 0 {
		steps = append(steps, fmt.Sprintf("chmod 700 %s", strconv.Quote(dir)))
	}
	out := "run " + steps[0]
	if len(steps) > 1 {
		out += " and " + steps[1]
	}
	return out + " (or run the daemon as the directory's owner, or set another data_dir)"
}

// userName returns the name of the user uid, or the uid as a number.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// bareErr returns the system's reason from a path error ("read-only file
// system"), without the path, which the caller names itself.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
