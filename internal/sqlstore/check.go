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
	"time"

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
		WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' AND tbl_name != '`+checkTable+`' ORDER BY type, name`)
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

// check reads the database conn has open: its version must be one the
// migrations know, and its schema the one its version stands for; and, when
// decideCheck says so, SQLite's quick_check must find nothing wrong. It
// returns the version, the schemas of every version and what it checked.
func check(ctx context.Context, conn *sql.Conn, path string, o Options, walLeft bool) (int, [][]schemaRow, Checked, error) {
	start := time.Now()
	last, err := lastFullCheck(ctx, conn)
	if err != nil {
		return 0, nil, Checked{}, classify(path, "read the last check of", err)
	}
	c := decideCheck(walLeft, last, o.Now(), o.FullCheckEvery, o.ReadOnly)
	if c.Full {
		c.At = o.Now()
		if err := quickCheck(ctx, conn, path); err != nil {
			return 0, nil, Checked{}, err
		}
	}
	var version int64
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, nil, Checked{}, classify(path, "read the schema version of", err)
	}
	if version > int64(len(o.Migrations)) {
		return 0, nil, Checked{}, fmt.Errorf("%w: %s is at schema version %d, and this pkiboard knows versions up to %d; run the pkiboard that wrote it, or restore a backup this one made",
			ErrTooNew, path, version, len(o.Migrations))
	}
	if version < 0 {
		return 0, nil, Checked{}, fmt.Errorf("%w: %s gives schema version %d, which no pkiboard writes; %s", ErrSchema, path, version, restoreAdvice)
	}
	want, err := expectedSchemas(ctx, o.Migrations)
	if err != nil {
		return 0, nil, Checked{}, err
	}
	got, err := schemaOf(ctx, conn)
	if err != nil {
		return 0, nil, Checked{}, classify(path, "read the schema of", err)
	}
	if d := schemaDiff(got, want[version]); d != "" {
		return 0, nil, Checked{}, fmt.Errorf("%w: %s says it is at schema version %d, but %s; %s", ErrSchema, path, version, d, restoreAdvice)
	}
	c.Took = time.Since(start)
	return int(version), want, c, nil
}

// DefaultFullCheckEvery is how old the last full check of a database may be
// before Open runs another, unless Options.FullCheckEvery says otherwise.
const DefaultFullCheckEvery = 7 * 24 * time.Hour

// checkTable records, in the database itself, when Open last ran the full
// check and found nothing wrong: one row, the Unix time in seconds. It is the
// package's own, outside the migrations' schema (schemaOf leaves it out).
const checkTable = "sqlstore_check"

// Checked is what Open checked a database file with, and why.
//
// Every Open checks the file's header (before SQLite opens it), its schema
// version and its schema. The full check, SQLite's PRAGMA quick_check, reads
// every page of the file: seconds for a file of hundreds of MiB. Open runs it
// when the last stop was not clean (the WAL file was left behind: SQLite
// removes it when the last connection closes, so it is left only by a process
// that died, or by a machine that stopped, with the database open), when no
// full check is recorded in the file, or when the last one is older than
// Options.FullCheckEvery; a read-only open, which cannot record one, runs it
// only when none is recorded. A full check that finds nothing wrong is
// recorded in the file.
type Checked struct {
	// Full is true when Open ran PRAGMA quick_check.
	Full bool
	// Reason says why Open ran the full check, or why not.
	Reason string
	// Last is when the last full check before this Open ran (zero if none
	// is recorded).
	Last time.Time
	// At is when this Open's full check ran (zero if it did not).
	At time.Time
	// Took is how long Open's checks took.
	Took time.Duration
}

// String says which check ran and why, for a daemon's start log line.
func (c Checked) String() string {
	if c.Full {
		return fmt.Sprintf("full check (quick_check of every page, %s): %s", c.Took.Round(time.Millisecond), c.Reason)
	}
	return fmt.Sprintf("header, version and schema checked (%s), full check skipped: %s", c.Took.Round(time.Millisecond), c.Reason)
}

// decideCheck decides whether Open runs the full check: walLeft says that
// the last stop left its WAL behind; last is the last recorded full check
// (zero if none).
func decideCheck(walLeft bool, last, now time.Time, every time.Duration, readOnly bool) Checked {
	c := Checked{Last: last}
	lastText := last.UTC().Format(time.RFC3339)
	switch {
	case walLeft:
		c.Full, c.Reason = true, "the last stop was not clean (it left the WAL file behind)"
	case last.IsZero():
		c.Full, c.Reason = true, "no full check is recorded in the file"
	case readOnly:
		c.Reason = "a read-only open leaves the full check to the daemon's start; the last one ran " + lastText
	case last.After(now.Add(time.Hour)):
		c.Full, c.Reason = true, "the last full check is recorded at "+lastText+", later than the clock's now"
	case now.Sub(last) >= every:
		c.Full, c.Reason = true, fmt.Sprintf("the last full check ran %s, %s or more ago", lastText, days(every))
	default:
		c.Reason = fmt.Sprintf("the last stop was clean and the last full check ran %s, less than %s ago", lastText, days(every))
	}
	return c
}

// days says d in days when it is a whole number of them.
func days(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "a day"
	case d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

// lastFullCheck reads when the last full check ran from checkTable; zero if
// none is recorded.
func lastFullCheck(ctx context.Context, conn *sql.Conn) (time.Time, error) {
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, checkTable).Scan(&n); err != nil {
		return time.Time{}, err
	}
	if n == 0 {
		return time.Time{}, nil
	}
	var at int64
	err := conn.QueryRowContext(ctx, `SELECT at FROM `+checkTable+` WHERE id = 1`).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(at, 0), nil
}

// recordFullCheck records in the file that a full check ran at at and found
// nothing wrong.
func recordFullCheck(ctx context.Context, conn *sql.Conn, at time.Time) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+checkTable+` (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		at INTEGER NOT NULL
	) STRICT`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+checkTable+` (id, at) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET at = excluded.at`, at.Unix()); err != nil {
		return err
	}
	return tx.Commit()
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
// mode, applies the pending migrations in one transaction and records a full
// check that ran. It returns the version the database is at and what was
// checked.
func prepare(ctx context.Context, conn *sql.Conn, path string, o Options, walLeft bool) (int, Checked, error) {
	version, want, checked, err := check(ctx, conn, path, o, walLeft)
	if err != nil {
		return 0, Checked{}, err
	}
	version, err = prepareChecked(ctx, conn, path, o.Migrations, version, want)
	if err != nil {
		return 0, Checked{}, err
	}
	if checked.Full {
		if err := recordFullCheck(ctx, conn, checked.At); err != nil {
			return 0, Checked{}, classify(path, "record the full check of", err)
		}
	}
	return version, checked, nil
}

// prepareChecked puts the database the writer's conn has open, which check
// has read, in WAL mode, and applies the pending migrations.
func prepareChecked(ctx context.Context, conn *sql.Conn, path string, migrations []Migration, version int, want [][]schemaRow) (int, error) {
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
