package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlitelib "modernc.org/sqlite/lib"
)

// Migration brings the schema from one version to the next. SQL runs first
// (it may hold several statements), then Func. Both run in the transaction
// that applies every pending migration and sets the new version, with foreign
// keys not enforced (SQLite's procedure for changing a table; they are checked
// with PRAGMA foreign_key_check before the commit). A migration must not
// change PRAGMA user_version itself, and must give the same schema whatever the
// rows: Open checks a file's tables against those the migrations up to its
// version create in an empty database.
type Migration struct {
	// Name says what the step does; errors quote it.
	Name string
	// SQL is the script of the step.
	SQL string
	// Func, if not nil, runs after SQL.
	Func func(tx *sql.Tx) error
}

// sqliteMagic begins every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// headerSize is the size of an SQLite database file's header.
const headerSize = 100

// dsn is the data source name of path for modernc's driver: a file: URI, so
// that SQLite applies mode=, with the driver's parameters.
func dsn(path string, o Options, params ...string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	abs = filepath.ToSlash(abs)
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs // C:/x on Windows
	}
	params = append(params, "_busy_timeout="+strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10))
	return "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + strings.Join(params, "&")
}

// checkHeader refuses a file that is not an SQLite database or is shorter
// than its header says, before SQLite opens it. An empty file is a new
// database.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	defer f.Close()
	var h [headerSize]byte
	n, err := io.ReadFull(f, h[:])
	switch {
	case n == 0 && err == io.EOF:
		return nil
	case err == io.ErrUnexpectedEOF:
		return fmt.Errorf("%w: %s holds only %d bytes, fewer than the %d of an SQLite database's header; %s",
			ErrNotDatabase, path, n, headerSize, restoreAdvice)
	case err != nil:
		return fmt.Errorf("sqlstore: %w", err)
	case !bytes.HasPrefix(h[:], []byte(sqliteMagic)):
		return fmt.Errorf("%w: %s does not begin with SQLite's header; %s", ErrNotDatabase, path, restoreAdvice)
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("%w: %s: its header gives a page size of %d bytes, which SQLite never writes; %s",
			ErrDamaged, path, pageSize, restoreAdvice)
	}
	// The page count in the header is valid when the change counter equals
	// the "version valid for" field. While a WAL or a rollback journal
	// exists, the file may lag behind the header (a checkpoint cut short);
	// SQLite puts it right from the journal, so only check a file alone.
	pages := int64(binary.BigEndian.Uint32(h[28:]))
	if pages == 0 || binary.BigEndian.Uint32(h[24:]) != binary.BigEndian.Uint32(h[92:]) ||
		nonEmpty(path+"-wal") || nonEmpty(path+"-journal") {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	if want := pages * pageSize; fi.Size() < want {
		return fmt.Errorf("%w: %s is cut short: its header counts %d pages of %d bytes (%d bytes), and the file holds %d; %s",
			ErrDamaged, path, pages, pageSize, want, fi.Size(), restoreAdvice)
	}
	return nil
}

// restoreAdvice ends the refusals of a file that is not a sound database.
const restoreAdvice = "pkiboard will not write over it: move it aside (and its -wal file) and restore the database from a backup"

func nonEmpty(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 0
}

// classify wraps an error of SQLite's about path in the package's errors.
func classify(path, op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlitelib.SQLITE_NOTADB:
			return fmt.Errorf("%w: %s: SQLite says %v; %s", ErrNotDatabase, path, err, restoreAdvice)
		case sqlitelib.SQLITE_CORRUPT:
			return fmt.Errorf("%w: %s: SQLite says %v; %s", ErrDamaged, path, err, restoreAdvice)
		case sqlitelib.SQLITE_BUSY:
			return fmt.Errorf("sqlstore: %s %s: another process held the database locked for longer than the busy timeout: %w", op, path, err)
		case sqlitelib.SQLITE_READONLY, sqlitelib.SQLITE_PERM, sqlitelib.SQLITE_CANTOPEN:
			return fmt.Errorf("sqlstore: %s %s: %w (are the file, its -wal and -shm files and its directory this user's own?)", op, path, err)
		}
	}
	return fmt.Errorf("sqlstore: %s %s: %w", op, path, err)
}

// querier is a *sql.Conn or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// schemaRow is one entry of sqlite_schema.
type schemaRow struct{ typ, name, table, sql string }

// schemaOf returns the tables, indexes, views and triggers of the database
// conn has open, in a fixed order, leaving out SQLite's own (sqlite_*).
func schemaOf(ctx context.Context, q querier) ([]schemaRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema
		WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY type, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []schemaRow
	for rows.Next() {
		var r schemaRow
		if err := rows.Scan(&r.typ, &r.name, &r.table, &r.sql); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// schemaDiff describes how got differs from want, or returns "".
func schemaDiff(got, want []schemaRow) string {
	key := func(r schemaRow) string { return r.typ + " " + r.name }
	wanted := make(map[string]schemaRow, len(want))
	for _, r := range want {
		wanted[key(r)] = r
	}
	var diffs []string
	seen := make(map[string]bool, len(got))
	for _, r := range got {
		seen[key(r)] = true
		w, ok := wanted[key(r)]
		switch {
		case !ok:
			diffs = append(diffs, key(r)+" should not be there")
		case w != r:
			diffs = append(diffs, key(r)+" is not defined as it should be")
		}
	}
	for _, r := range want {
		if !seen[key(r)] {
			diffs = append(diffs, key(r)+" is missing")
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("%d more differences", len(diffs)-5))
	}
	return strings.Join(diffs, ", ")
}

// expectedSchemas applies the migrations one by one to an empty database in
// memory and returns the schema after each: out[v] is the schema of version v.
func expectedSchemas(ctx context.Context, migrations []Migration) ([][]schemaRow, error) {
	mem, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	conn, err := mem.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	out := [][]schemaRow{nil}
	for i, m := range migrations {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if err := apply(ctx, tx, m); err != nil {
			tx.Rollback()
			return nil, fmt.Errorf("sqlstore: migration %d (%s) fails on an empty database: %w", i+1, m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		s, err := schemaOf(ctx, conn)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func apply(ctx context.Context, tx *sql.Tx, m Migration) error {
	if m.SQL != "" {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return err
		}
	}
	if m.Func != nil {
		return m.Func(tx)
	}
	return nil
}

// check reads the database conn has open: SQLite's quick_check must find
// nothing wrong, its version must be one the migrations know, and its schema
// the one its version stands for. It returns the version and the schemas of
// every version.
func check(ctx context.Context, conn *sql.Conn, path string, migrations []Migration) (int, [][]schemaRow, error) {
	if err := quickCheck(ctx, conn, path); err != nil {
		return 0, nil, err
	}
	var version int64
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, nil, classify(path, "read the schema version of", err)
	}
	if version > int64(len(migrations)) {
		return 0, nil, fmt.Errorf("%w: %s is at schema version %d, and this pkiboard knows versions up to %d; run the pkiboard that wrote it, or restore a backup this one made",
			ErrTooNew, path, version, len(migrations))
	}
	if version < 0 {
		return 0, nil, fmt.Errorf("%w: %s gives schema version %d, which no pkiboard writes; %s", ErrSchema, path, version, restoreAdvice)
	}
	want, err := expectedSchemas(ctx, migrations)
	if err != nil {
		return 0, nil, err
	}
	got, err := schemaOf(ctx, conn)
	if err != nil {
		return 0, nil, classify(path, "read the schema of", err)
	}
	if d := schemaDiff(got, want[version]); d != "" {
		return 0, nil, fmt.Errorf("%w: %s says it is at schema version %d, but %s; %s", ErrSchema, path, version, d, restoreAdvice)
	}
	return int(version), want, nil
}

// quickCheck runs PRAGMA quick_check, which reads every page of the file
// (without comparing indexes with their tables, which integrity_check also
// does), and turns what it finds into an error.
func quickCheck(ctx context.Context, conn *sql.Conn, path string) error {
	rows, err := conn.QueryContext(ctx, "PRAGMA quick_check(10)")
	if err != nil {
		return classify(path, "check", err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return classify(path, "check", err)
		}
		found = append(found, s)
	}
	if err := rows.Err(); err != nil {
		return classify(path, "check", err)
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	return fmt.Errorf("%w: %s: SQLite's quick_check found: %s; %s", ErrDamaged, path, strings.Join(found, "; "), restoreAdvice)
}

// prepare checks the database the writer's conn has open, puts it in WAL
// mode and applies the pending migrations in one transaction. It returns the
// version the database is at.
func prepare(ctx context.Context, conn *sql.Conn, path string, migrations []Migration) (int, error) {
	version, want, err := check(ctx, conn, path, migrations)
	if err != nil {
		return 0, err
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return 0, classify(path, "set the journal mode of", err)
	}
	if mode != "wal" {
		return 0, fmt.Errorf("sqlstore: %s: SQLite kept journal mode %q instead of WAL (is the file on a network file system?)", path, mode)
	}
	if version == len(migrations) {
		return version, nil
	}
	if err := migrate(ctx, conn, path, version, migrations, want); err != nil {
		return 0, err
	}
	return len(migrations), nil
}

// migrate applies migrations[from:] in one transaction.
func migrate(ctx context.Context, conn *sql.Conn, path string, from int, migrations []Migration, want [][]schemaRow) (err error) {
	to := len(migrations)
	fail := func(what string, err error) error {
		return fmt.Errorf("sqlstore: %s: migrating from schema version %d to %d: %s: %w; the database stays at version %d",
			path, from, to, what, err, from)
	}
	// foreign_keys cannot change inside a transaction.
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys=OFF"); err != nil {
		return fail("turning foreign keys off", err)
	}
	defer func() {
		if _, ferr := conn.ExecContext(ctx, "PRAGMA foreign_keys=ON"); ferr != nil && err == nil {
			err = fail("turning foreign keys on", ferr)
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return classify(path, "begin the migration of", err)
	}
	defer tx.Rollback()
	for i := from; i < to; i++ {
		if err := apply(ctx, tx, migrations[i]); err != nil {
			return fail(fmt.Sprintf("step %d (%s)", i+1, migrations[i].Name), err)
		}
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version="+strconv.Itoa(to)); err != nil {
		return fail("setting the version", err)
	}
	if err := foreignKeyCheck(ctx, tx); err != nil {
		return fail("checking foreign keys", err)
	}
	got, err := schemaOf(ctx, tx)
	if err != nil {
		return fail("reading the schema", err)
	}
	if d := schemaDiff(got, want[to]); d != "" {
		return fail("comparing the schema with an empty database's", errors.New(d))
	}
	if err := tx.Commit(); err != nil {
		return fail("commit", err)
	}
	return nil
}

// foreignKeyCheck fails if a row refers to a row that does not exist.
func foreignKeyCheck(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var bad []string
	for rows.Next() && len(bad) < 5 {
		var table, parent string
		var rowid sql.NullInt64
		var fk int64
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			return err
		}
		bad = append(bad, fmt.Sprintf("a row (rowid %d) of %s refers to a missing row of %s", rowid.Int64, table, parent))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}
