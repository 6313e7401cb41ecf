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

// TestIsBbolt checks the test for an older pkiboard's store: the committed
// bbolt files of the CA and the board are bbolt, and an SQLite database, an
// empty or short file, other bytes and a missing file are not.
func TestIsBbolt(t *testing.T) {
	dir := t.TempDir()
	sqlitePath := filepath.Join(dir, "sqlite.db")
	openT(t, sqlitePath, Options{}).Close()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	magicAt := func(off int) []byte {
		b := make([]byte, 4096)
		copy(b[off:], []byte{0xed, 0xda, 0x0c, 0xed})
		return b
	}
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"the CA's bbolt ca.db", filepath.Join("..", "..", "testdata", "older-stores", "ca.db"), true},
		{"the board's bbolt board.db", filepath.Join("..", "..", "testdata", "older-stores", "board.db"), true},
		{"the magic at offset 16", write("magic16", magicAt(16)), true},
		{"the magic elsewhere", write("magic20", magicAt(20)), false},
		{"an SQLite database", sqlitePath, false},
		{"an empty file", write("empty", nil), false},
		{"19 bytes", write("short", magicAt(16)[:19]), false},
		{"no file", filepath.Join(dir, "missing"), false},
	}
	for _, tt := range tests {
		got, err := IsBbolt(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("%s: IsBbolt = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}
