package sqlstore

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMigrations brings databases to the last version from an empty file,
// step by step, and from each earlier version at once; the rows survive and
// every step's changes are there.
func TestMigrations(t *testing.T) {
	last := len(testMigrations)
	t.Run("from an empty file", func(t *testing.T) {
		path := tempPath(t)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		db := openT(t, path, Options{})
		if db.Version() != last {
			t.Errorf("version: got %d want %d", db.Version(), last)
		}
		if err := db.Update(put("a")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("step by step", func(t *testing.T) {
		path := tempPath(t)
		for v := 1; v <= last; v++ {
			db := openT(t, path, Options{Migrations: testMigrations[:v]})
			if db.Version() != v {
				t.Fatalf("version: got %d want %d", db.Version(), v)
			}
			if err := db.Update(put(fmt.Sprintf("at version %d", v))); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		db := openT(t, path, Options{})
		want := []string{"at version 1", "at version 2", "at version 3"}
		if err := db.Update(func(tx *sql.Tx) error {
			_, err := tx.Exec(`UPDATE items SET owner = (SELECT id FROM owners) WHERE k = 'at version 3'`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := keys(t, db); !slices.Equal(got, want) {
			t.Errorf("items: got %v want %v", got, want)
		}
		assertOwnersSet(t, db)
	})
	for from := 0; from < last; from++ {
		t.Run(fmt.Sprintf("from version %d", from), func(t *testing.T) {
			path := tempPath(t)
			var want []string
			if from == 0 {
				newDatabase(t, path, 0, nil)
			} else {
				newDatabase(t, path, 5, testMigrations[:from])
				want = itemKeys(5)
			}
			db := openT(t, path, Options{})
			if db.Version() != last {
				t.Errorf("version: got %d want %d", db.Version(), last)
			}
			if got := keys(t, db); !slices.Equal(got, want) {
				t.Errorf("items: got %v want %v", got, want)
			}
			assertOwnersSet(t, db)
		})
	}
}

// assertOwnersSet checks the data step of the third migration.
func assertOwnersSet(t *testing.T, db *DB) {
	t.Helper()
	var without int
	if err := db.View(func(tx *sql.Tx) error {
		return tx.QueryRow(`SELECT count(*) FROM items WHERE owner IS NULL`).Scan(&without)
	}); err != nil {
		t.Fatal(err)
	}
	if without != 0 {
		t.Errorf("%d items have no owner after the migration", without)
	}
}

// TestFailedMigrationChangesNothing makes the last step fail, by an error or
// by leaving a row that breaks a foreign key, on a database with rows: Open
// fails, saying which step, and the database stays at its version with its
// rows, so the program before opens it still.
func TestFailedMigrationChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		fn   func(tx *sql.Tx) error
		want string
	}{
		{name: "the step fails", want: "no migration today", fn: func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil || n == 0 {
				return err
			}
			return errors.New("no migration today")
		}},
		{name: "a foreign key breaks", want: "refers to a missing row of owners", fn: func(tx *sql.Tx) error {
			_, err := tx.Exec(`UPDATE items SET owner = 999`)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tempPath(t)
			newDatabase(t, path, 5, testMigrations[:2])
			ms := append(slices.Clone(testMigrations[:2]), Migration{
				Name: "the step",
				SQL:  `CREATE TABLE extra (a INTEGER)`,
				Func: tt.fn,
			})
			_, err := Open(path, Options{Migrations: ms})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "step 3 (the step)") && !strings.Contains(err.Error(), "foreign keys") {
				t.Fatalf("got %v want the step's failure (%s)", err, tt.want)
			}
			if !strings.Contains(err.Error(), "stays at version 2") {
				t.Errorf("the error does not say the database stays at version 2: %v", err)
			}
			db := openT(t, path, Options{Migrations: testMigrations[:2]})
			if got, want := keys(t, db), itemKeys(5); !slices.Equal(got, want) {
				t.Errorf("items: got %v want %v", got, want)
			}
		})
	}
}

// damage returns a copy of data with the byte at off changed.
func damage(data []byte, off int) []byte {
	out := bytes.Clone(data)
	out[off] ^= 0xa5
	return out
}

// withHeader returns a copy of data with a big-endian uint32 set in its
// header.
func withHeader(data []byte, off int, v uint32) []byte {
	out := bytes.Clone(data)
	binary.BigEndian.PutUint32(out[off:], v)
	return out
}

// refusedFiles builds, from a sound database at the last version with rows,
// files that Open must refuse, and the errors it must refuse them with.
func refusedFiles(t testing.TB) (map[string][]byte, map[string][]error) {
	t.Helper()
	dir := t.TempDir()
	// Without the record of a full check, so that Open, read-only too, runs
	// it on every copy.
	goodPath := filepath.Join(dir, "good.db")
	newDatabase(t, goodPath, 40, testMigrations)
	rawExec(t, goodPath, "DROP TABLE "+checkTable, "VACUUM")
	good, err := os.ReadFile(goodPath)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.BigEndian.Uint16(good[16:]))
	pages := len(good) / pageSize
	if pages < 4 {
		t.Fatalf("the database has %d pages; the test wants a few", pages)
	}
	schemaFile := func(name string, stmts ...string) []byte {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		rawExec(t, path, stmts...)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	damaged := []error{ErrDamaged, ErrNotDatabase}
	files := map[string][]byte{
		"newer version":           withHeader(good, 60, 9),
		"text":                    []byte(strings.Repeat("not a database at all\n", 20)),
		"short":                   good[:50],
		"truncated to the header": good[:100],
		"truncated in page 2":     good[:pageSize+pageSize/2],
		"truncated by half":       good[:len(good)/2],
		"truncated by a page":     good[:len(good)-pageSize],
		"truncated by a byte":     good[:len(good)-1],
		"magic changed":           damage(good, 3),
		"page size changed":       damage(good, 16),
		"page count grown":        withHeader(good, 28, uint32(pages+3)),
		"version too low":         withHeader(good, 60, 2),
		"version zero":            withHeader(good, 60, 0),
		"table added":             schemaFile("added.db", `CREATE TABLE intruder (x)`),
		"index dropped":           schemaFile("dropped.db", `DROP INDEX items_owner`),
		"column added":            schemaFile("column.db", `ALTER TABLE owners ADD COLUMN extra TEXT`),
	}
	want := map[string][]error{
		"newer version":           {ErrTooNew},
		"text":                    {ErrNotDatabase},
		"short":                   {ErrNotDatabase},
		"truncated to the header": damaged,
		"truncated in page 2":     damaged,
		"truncated by half":       damaged,
		"truncated by a page":     damaged,
		"truncated by a byte":     damaged,
		"magic changed":           {ErrNotDatabase},
		"page size changed":       damaged,
		"page count grown":        damaged,
		"version too low":         {ErrSchema},
		"version zero":            {ErrSchema},
		"table added":             {ErrSchema},
		"index dropped":           {ErrSchema},
		"column added":            {ErrSchema},
	}
	// The header of every B-tree page: its type (offset 0) and its cell
	// count (offset 3); page 1's header follows the 100-byte file header.
	for p := range pages {
		base := p * pageSize
		if p == 0 {
			base = 100
		}
		for _, off := range []int{0, 3} {
			name := fmt.Sprintf("page %d byte %d", p+1, off)
			files[name] = damage(good, base+off)
			want[name] = damaged
		}
	}
	return files, want
}

// TestRefusals opens files that are not databases, are damaged, or hold
// another schema than their version says: Open refuses each with the error
// for it, in a sentence that names the file and what to do, and leaves the
// file as it was; a read-only open refuses them too.
func TestRefusals(t *testing.T) {
	files, want := refusedFiles(t)
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			path := tempPath(t)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, readOnly := range []bool{false, true} {
				db, err := Open(path, Options{Migrations: testMigrations, ReadOnly: readOnly})
				if err == nil {
					db.Close()
					t.Fatalf("read-only %v: opened, want one of %v", readOnly, want[name])
				}
				if !slices.ContainsFunc(want[name], func(w error) bool { return errors.Is(err, w) }) {
					t.Errorf("read-only %v: got %v want one of %v", readOnly, err, want[name])
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("the error does not name the file: %v", err)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, data) {
				t.Errorf("Open changed the file it refused (%d bytes, now %d)", len(data), len(after))
			}
		})
	}
}

// TestRefusalMessages checks the sentences of the refusals an operator acts
// on.
func TestRefusalMessages(t *testing.T) {
	files, _ := refusedFiles(t)
	tests := []struct{ file, want string }{
		{"newer version", "is at schema version 9, and this pkiboard knows versions up to 3; run the pkiboard that wrote it"},
		{"text", "does not begin with SQLite's header; pkiboard will not write over it: move it aside"},
		{"short", "holds only 50 bytes"},
		{"truncated by a page", "is cut short"},
		{"table added", "says it is at schema version 3, but table intruder should not be there"},
		{"index dropped", "index items_owner is missing"},
		{"column added", "table owners is not defined as it should be"},
		{"page 2 byte 0", "restore the database from a backup"},
	}
	for _, tt := range tests {
		path := tempPath(t)
		if err := os.WriteFile(path, files[tt.file], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, Options{Migrations: testMigrations})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v want it to say %q", tt.file, err, tt.want)
		}
	}
}

// TestLock opens a database twice: the second Open fails with ErrLocked and
// says so, a read-only open works meanwhile and sees what the owner writes,
// and once the owner closes, Open works again.
func TestLock(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	if err := db.Update(put("a")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{Migrations: testMigrations})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v want ErrLocked", err)
	}
	for _, want := range []string{path, "in use by another process", fmt.Sprintf("pid %d", os.Getpid()), "is the daemon running?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	ro := openT(t, path, Options{ReadOnly: true})
	if got := keys(t, ro); !slices.Equal(got, []string{"a"}) {
		t.Errorf("read-only: got %v want [a]", got)
	}
	if err := db.Update(put("b")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, ro); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("read-only after a write: got %v want [a b]", got)
	}
	if err := ro.Update(put("c")); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Update on a read-only database: got %v want ErrReadOnly", err)
	}
	if err := ro.View(put("c")); err == nil {
		t.Error("a write in View of a read-only database succeeded")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, path, Options{})
	if got := keys(t, db); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after reopen: got %v want [a b]", got)
	}
}

// TestReadOnlyRefusals: a read-only open neither creates a database nor
// reads one its daemon has not migrated yet.
func TestReadOnlyRefusals(t *testing.T) {
	path := tempPath(t)
	if _, err := Open(path, Options{Migrations: testMigrations, ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read-only open created the file: %v", err)
	}
	newDatabase(t, path, 3, testMigrations[:2])
	_, err := Open(path, Options{Migrations: testMigrations, ReadOnly: true})
	if !errors.Is(err, ErrTooOld) || !strings.Contains(err.Error(), "start the daemon") {
		t.Errorf("older version: got %v want ErrTooOld", err)
	}
}

// TestOddPath opens a database whose path holds the characters a file: URI
// gives meaning to (?, #, %) and a space, and checks that the file at that
// path, and no other, is the database.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%20chars")
	path := filepath.Join(dir, "store?.db")
	db := openT(t, path, Options{})
	if err := db.Update(put("a")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the directory Open made: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	if got, want := dirNames(t, dir), []string{"store?.db", "store?.db.lock"}; !slices.Equal(got, want) {
		t.Errorf("files: got %v want %v", got, want)
	}
	if got := keys(t, openT(t, path, Options{ReadOnly: true})); !slices.Equal(got, []string{"a"}) {
		t.Errorf("items: got %v want [a]", got)
	}
}
