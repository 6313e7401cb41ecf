package sqlstore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// BackupFile writes a consistent copy of the database at path to dst, as
// [DB.Backup] does, from a read-only connection of its own, whatever the
// database's schema: an operator command can back up a daemon's database
// without the daemon's migrations, whether or not the daemon runs. It takes
// no lock, and refuses a file that is not an SQLite database.
func BackupFile(ctx context.Context, path, dst string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	if err := checkHeader(path); err != nil {
		return err
	}
	return (&DB{path: path, readOnly: true}).Backup(ctx, dst)
}

// TableRows is how many rows a table holds.
type TableRows struct {
	Table string
	Rows  int64
}

// Inspect opens the database file at path read-only, whatever its schema,
// checks it with PRAGMA quick_check, and returns its schema version (PRAGMA
// user_version) and how many rows each of its tables holds, by name. It is
// meant for a copy Backup made.
func Inspect(ctx context.Context, path string) (version int, tables []TableRows, err error) {
	if _, err := os.Stat(path); err != nil {
		return 0, nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := checkHeader(path); err != nil {
		return 0, nil, err
	}
	db, err := sql.Open("sqlite", dsn(path, Options{BusyTimeout: DefaultBusyTimeout}, "mode=ro", "_query_only=1"))
	if err != nil {
		return 0, nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, nil, classify(path, "open", err)
	}
	defer conn.Close()
	if err := quickCheck(ctx, conn, path); err != nil {
		return 0, nil, err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, nil, classify(path, "read the schema version of", err)
	}
	schema, err := schemaOf(ctx, conn)
	if err != nil {
		return 0, nil, classify(path, "read the schema of", err)
	}
	for _, r := range schema {
		if r.typ != "table" {
			continue
		}
		t := TableRows{Table: r.name}
		// The name comes from the file's own schema: quote it as an
		// identifier.
		q := `"` + doubleQuotes(r.name) + `"`
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM "+q).Scan(&t.Rows); err != nil {
			return 0, nil, classify(path, "count the rows of "+r.name+" in", err)
		}
		tables = append(tables, t)
	}
	return version, tables, nil
}

// doubleQuotes doubles the double quotes in s, for an SQL identifier.
func doubleQuotes(s string) string {
	return strings.ReplaceAll(s, `"`, `""`)
}

// bboltMagic is bbolt's magic number, at offset 16 of a bbolt file (its first
// meta page, after the 16-byte page header).
const bboltMagic = 0xED0CDAED

// IsBbolt reports whether the file at path is a bbolt database: the store of
// a pkiboard from before its daemons kept their records in SQLite, which this
// package cannot read. A file that does not exist, or is too short to tell,
// is not one; the caller then opens it, and Open says what it is.
func IsBbolt(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: %w", err)
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return false, nil
	}
	return binary.LittleEndian.Uint32(h[16:]) == bboltMagic || binary.BigEndian.Uint32(h[16:]) == bboltMagic, nil
}
