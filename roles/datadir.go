package roles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// checkDataDir makes sure a daemon's data directory exists and is writable,
// so that a read-only or unusable one stops the daemon at start with a
// sentence naming it, rather than with whatever first write fails.
func checkDataDir(role, key, dir string) error {
	what := map[string]string{"ca": "the CA keeps its root, its store and its CRL there", "board": "the board keeps its key, its store and the submissions there"}[role]
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: cannot create the data directory %s (%s): %v; %s: make it possible, or set %s", role, dir, key, bareErr(err), what, key)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("%s: the data directory %s (%s) is not writable: %v; %s: make it writable, or set %s", role, dir, key, bareErr(err), what, key)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
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
