package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the database to dst, a file that must
// not exist yet, while writers go on: the copy holds every write acknowledged
// before Backup was called, and no part of a later one. It is written with
// mode 0600 and synced, with its directory, before Backup returns; it opens
// with Open as the original does. It works on a database opened read-only
// too, so an operator command can back up while the daemon runs.
//
// The copy is made with VACUUM INTO rather than with SQLite's backup API:
// both copy one snapshot of the database while the WAL lets writers go on,
// but VACUUM INTO runs through database/sql on a read-only connection of its
// own (no driver-specific calls), reads every row through the B-trees (so it
// fails on a damaged page instead of copying it), and writes a compact file
// without free pages. Its cost is rebuilding the indexes, small at the sizes
// of a course. It is written under a temporary name in dst's directory and
// linked to dst once complete, so dst never holds half a copy.
func (db *DB) Backup(ctx context.Context, dst string) (err error) {
	db.mu.RLock()
	closed := db.closed
	db.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	fail := func(err error) error { return fmt.Errorf("sqlstore: back up %s to %s: %w", db.path, dst, err) }
	if _, err := os.Lstat(dst); err == nil {
		return fail(fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*") // mode 0600
	if err != nil {
		return fail(err)
	}
	name := tmp.Name()
	tmp.Close()
	defer func() {
		if err != nil {
			os.Remove(name)
		}
	}()
	// A connection of its own: the readers' query_only forbids VACUUM INTO,
	// and mode=ro alone is enough to keep it off the database.
	src, err := sql.Open("sqlite", dsn(db.path, Options{BusyTimeout: DefaultBusyTimeout}, "mode=ro"))
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	if _, err := src.ExecContext(ctx, "VACUUM INTO ?", name); err != nil {
		return fail(classify(db.path, "copy", err))
	}
	if err := syncFile(name); err != nil {
		return fail(err)
	}
	if err := os.Link(name, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(err)
		}
		// A file system without hard links: rename, having checked above
		// that dst did not exist.
		if err := os.Rename(name, dst); err != nil {
			return fail(err)
		}
	} else {
		os.Remove(name)
	}
	if err := syncFile(dir); err != nil {
		return fail(err)
	}
	return nil
}

// syncFile flushes a file or a directory to stable storage.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
