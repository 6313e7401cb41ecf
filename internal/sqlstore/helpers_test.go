package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the crash helper when asked to (see
// TestAcknowledgedWritesSurviveKill), and otherwise fails the package's tests
// if any goroutine outlives them.
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(crashHelper(path))
	}
	goleak.VerifyTestMain(m)
}

// testMigrations is the schema of the tests: three versions, with a column
// added, a table with a foreign key, an index and a step that changes rows.
var testMigrations = []Migration{
	{Name: "items", SQL: `CREATE TABLE items (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB)`},
	{Name: "owners", SQL: `CREATE TABLE owners (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
		ALTER TABLE items ADD COLUMN owner INTEGER REFERENCES owners(id)`},
	{Name: "every item has an owner", SQL: `CREATE INDEX items_owner ON items(owner);
		INSERT OR IGNORE INTO owners (name) VALUES ('nobody')`,
		Func: func(tx *sql.Tx) error {
			_, err := tx.Exec(`UPDATE items SET owner = (SELECT id FROM owners WHERE name = 'nobody') WHERE owner IS NULL`)
			return err
		}},
}

func openT(t testing.TB, path string, o Options) *DB {
	t.Helper()
	if o.Migrations == nil {
		o.Migrations = testMigrations
	}
	db, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// put inserts the item k.
func put(k string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO items (k, v) VALUES (?, ?)`, k, []byte("value of "+k))
		return err
	}
}

// keys returns the items' keys, sorted.
func keys(t testing.TB, db *DB) []string {
	t.Helper()
	var out []string
	err := db.View(func(tx *sql.Tx) error {
		var err error
		out, err = keysIn(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keysIn(q interface {
	Query(string, ...any) (*sql.Rows, error)
}) ([]string, error) {
	rows, err := q.Query(`SELECT k FROM items ORDER BY k`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// rawExec runs statements on path with a plain connection, outside the
// package: to build files of other versions and damaged ones.
func rawExec(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, Options{}, "mode=rw"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// waitQueued waits until n writers are queued behind the committer.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(db.reqs) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := len(db.reqs); got != n {
		t.Fatalf("queued writers: got %d want %d", got, n)
	}
}

// blockCommitter makes the committer run a function that waits for release,
// so that the writers after it queue up. It returns release (safe to call
// twice) and the first writer's result.
func blockCommitter(t *testing.T, db *DB) (release func(), firstErr <-chan error) {
	t.Helper()
	entered, released := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- db.Update(func(tx *sql.Tx) error {
			close(entered)
			<-released
			return put("blocker")(tx)
		})
	}()
	<-entered
	closed := false
	release = func() {
		if !closed {
			closed = true
			close(released)
		}
	}
	t.Cleanup(release)
	return release, errc
}

// sqlite3Bin returns the path of the sqlite3 shell. Without one the test is
// skipped, unless PKIBOARD_REQUIRE_SQLITE3=1, in which case it fails.
func sqlite3Bin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		msg := fmt.Sprintf("sqlite3 not found on PATH (make deps installs it): %v", err)
		if os.Getenv("PKIBOARD_REQUIRE_SQLITE3") == "1" {
			t.Fatalf("%s (PKIBOARD_REQUIRE_SQLITE3=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_SQLITE3=1 to make this a failure", msg)
	}
	return bin
}

// newDatabase writes a database at the last version with n items and closes
// it (so the file holds everything: the last close checkpoints the WAL and
// removes it), and returns its bytes.
func newDatabase(t testing.TB, path string, n int, ms []Migration) []byte {
	t.Helper()
	db, err := Open(path, Options{Migrations: ms})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the -wal file is still there after Close: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func itemKeys(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("k%03d", i))
	}
	return out
}

// dirNames lists a directory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func tempPath(t testing.TB) string { return filepath.Join(t.TempDir(), "store.db") }
