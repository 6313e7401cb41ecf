package sqlstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestBackupFile checks the schema-free backup of a database file that this
// process has not opened as a store (the daemon has, holding its lock): the
// copy holds every acknowledged write, opens as a store, and Inspect counts
// its rows; files that are not databases, and an existing destination, are
// refused.
func TestBackupFile(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	for i := range 25 {
		if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := BackupFile(t.Context(), path, dst); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy: %v, mode %v; want 0600", err, fi.Mode())
	}
	version, tables, err := Inspect(t.Context(), dst)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(version, tables); got != "3 [{items 25} {owners 1}]" {
		t.Errorf("Inspect: got %s", got)
	}
	copyDB := openT(t, dst, Options{ReadOnly: true})
	if copyDB.Version() != len(testMigrations) {
		t.Errorf("the copy opens at version %d", copyDB.Version())
	}

	if err := BackupFile(t.Context(), path, dst); !errors.Is(err, fs.ErrExist) {
		t.Errorf("a backup over an existing file: got %v, want ErrExist", err)
	}
	notDB := filepath.Join(t.TempDir(), "not.db")
	if err := os.WriteFile(notDB, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := BackupFile(t.Context(), notDB, filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, ErrNotDatabase) {
		t.Errorf("a backup of a file of zeros: got %v, want ErrNotDatabase", err)
	}
	if _, _, err := Inspect(t.Context(), notDB); !errors.Is(err, ErrNotDatabase) {
		t.Errorf("Inspect of a file of zeros: got %v, want ErrNotDatabase", err)
	}
	if err := BackupFile(t.Context(), filepath.Join(t.TempDir(), "missing.db"), filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a backup of a missing file: got %v, want ErrNotExist", err)
	}
}
