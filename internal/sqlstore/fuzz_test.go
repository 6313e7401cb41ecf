package sqlstore

import (
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/fuzzseed"
)

var update = flag.Bool("update", false, "rewrite the seed corpus under testdata/fuzz/")

// smallDatabase writes a database with 512-byte pages (small seeds) at the
// version of ms with n items, closed, and returns its bytes.
func smallDatabase(t testing.TB, path string, n int, ms []Migration) []byte {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rawExec(t, path, `PRAGMA page_size=512`, `PRAGMA journal_mode=WAL`)
	return newDatabase(t, path, n, ms)
}

// fuzzOpenSeeds are sound databases of each version with items, and damaged
// copies of the last one.
func fuzzOpenSeeds(t testing.TB) map[string][]byte {
	dir := t.TempDir()
	good := smallDatabase(t, filepath.Join(dir, "v3.db"), 12, testMigrations)
	const page = 512
	seeds := map[string][]byte{
		"empty":           {},
		"v0":              smallDatabase(t, filepath.Join(dir, "v0.db"), 0, nil),
		"v1-items":        smallDatabase(t, filepath.Join(dir, "v1.db"), 12, testMigrations[:1]),
		"v2-items":        smallDatabase(t, filepath.Join(dir, "v2.db"), 12, testMigrations[:2]),
		"v3-items":        good,
		"newer":           withHeader(good, 60, 9),
		"version-zero":    withHeader(good, 60, 0),
		"text":            []byte("SQLite format 2\x00 and then some words"),
		"short":           good[:60],
		"truncated-half":  good[:len(good)/2],
		"truncated-page":  good[:len(good)-page],
		"truncated-byte":  good[:len(good)-1],
		"pagecount-grown": withHeader(good, 28, uint32(len(good)/page+2)),
		"page-size":       damage(good, 16),
		"schema-type":     damage(good, 100),
		"schema-cells":    damage(good, 103),
	}
	for p := 1; p < len(good)/page; p++ {
		seeds[fmt.Sprintf("page%d-type", p+1)] = damage(good, p*page)
		seeds[fmt.Sprintf("page%d-cells", p+1)] = damage(good, p*page+3)
		seeds[fmt.Sprintf("page%d-cell-pointer", p+1)] = damage(good, p*page+9)
		seeds[fmt.Sprintf("page%d-tail", p+1)] = damage(good, p*page+page-20)
	}
	return seeds
}

// TestFuzzOpenCorpus checks (or, with -update, writes) the committed seed
// corpus of FuzzOpen. The files are compared by count only: their bytes
// change with the SQLite version.
func TestFuzzOpenCorpus(t *testing.T) {
	seeds := fuzzseed.Bytes(fuzzOpenSeeds(t))
	if *update {
		if err := fuzzseed.Write("FuzzOpen", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzOpen", seeds, false, "run go test ./internal/sqlstore -run TestFuzzOpenCorpus -update")
}

// readDirectly reads the items of a copy of the input with a plain
// read-only connection: what the file holds, whatever Open makes of it.
func readDirectly(path string) ([]string, error) {
	db, err := sql.Open("sqlite", dsn(path, Options{}, "mode=ro"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return keysIn(db)
}

// FuzzOpen writes the input as a database file and opens it with the test
// schema and the full check. Open must never panic, and either refuse the file with an error
// of the package, or open a store that can be read and written and holds
// exactly the items the file held (none only if it was a new database):
// never a store silently emptied, never one that fails on the first read.
func FuzzOpen(f *testing.F) {
	for _, seed := range fuzzOpenSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path, ref := filepath.Join(dir, "store.db"), filepath.Join(dir, "ref.db")
		for _, p := range []string{path, ref} {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		want, refErr := readDirectly(ref)
		// With the full check every time: a seed may hold the record of a
		// recent one, and without it Open does not read every page.
		db, err := Open(path, Options{Migrations: testMigrations, FullCheckEvery: time.Nanosecond})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sqlstore: ") || !strings.Contains(err.Error(), path) {
				t.Errorf("a refusal that does not say who refuses which file: %v", err)
			}
			return
		}
		defer db.Close()
		var got []string
		if err := db.View(func(tx *sql.Tx) error {
			var err error
			got, err = keysIn(tx)
			return err
		}); err != nil {
			t.Fatalf("Open accepted a store it cannot read: %v", err)
		}
		switch {
		case refErr == nil && !slices.Equal(got, want):
			t.Fatalf("the file held %d items, the opened store %d", len(want), len(got))
		case refErr != nil && !strings.Contains(refErr.Error(), "no such table: items"):
			t.Fatalf("Open accepted a file SQLite cannot read (%v)", refErr)
		case refErr != nil && len(got) != 0:
			t.Fatalf("a new database opened with %d items", len(got))
		}
		if err := db.Update(func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT OR REPLACE INTO items (k) VALUES ('written after the open')`)
			return err
		}); err != nil {
			t.Fatalf("Open accepted a store it cannot write: %v", err)
		}
	})
}
