package sqlstore

import (
	"database/sql"
	"errors"
	"slices"
	"testing"
)

const (
	testInsert = `INSERT INTO items (k, v) VALUES (?, ?)`
	testSelect = `SELECT v FROM items WHERE k = ?`
	testList   = `SELECT k FROM items ORDER BY k`
)

// TestPrepared checks that the statements of Options.Prepared run prepared
// (Stats.Unprepared stays 0) in Update's and View's transactions, in a
// transaction of its own and in a shared one whose other function fails and
// is rolled back to its savepoint, with the same results as from their text;
// and that a statement not named is run from its text and counted.
func TestPrepared(t *testing.T) {
	tests := []struct {
		name           string
		prepared       []string
		wantUnprepared int64
	}{
		{"every statement named", []string{testInsert, testSelect, testList}, 0},
		{"none named", nil, 11}, // 3 inserts (one rolled back); twice a list and 3 selects
		{"the list not named", []string{testInsert, testSelect}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openT(t, tempPath(t), Options{Prepared: tt.prepared})
			insert := func(k string) func(*sql.Tx) error {
				return func(tx *sql.Tx) error {
					_, err := Exec(tx, testInsert, k, []byte("value of "+k))
					return err
				}
			}
			if err := db.Update(insert("a")); err != nil {
				t.Fatal(err)
			}

			// A shared transaction: b fails after its insert (rolled back to
			// its savepoint), c commits.
			release, first := blockCommitter(t, db)
			failed := errors.New("b fails")
			errb, errc := make(chan error, 1), make(chan error, 1)
			go func() {
				errb <- db.Update(func(tx *sql.Tx) error {
					if err := insert("b")(tx); err != nil {
						return err
					}
					return failed
				})
			}()
			waitQueued(t, db, 1)
			go func() { errc <- db.Update(insert("c")) }()
			waitQueued(t, db, 2)
			release()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-errb; !errors.Is(err, failed) {
				t.Fatalf("b: got %v want %v", err, failed)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}

			var got []string
			read := func(tx *sql.Tx) error {
				got = got[:0]
				rows, err := Query(tx, testList)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var k string
					if err := rows.Scan(&k); err != nil {
						return err
					}
					var v []byte
					if err := QueryRow(tx, testSelect, k).Scan(&v); err != nil {
						return err
					}
					if string(v) != "value of "+k && k != "blocker" {
						t.Errorf("item %s: got %q", k, v)
					}
					got = append(got, k)
				}
				return rows.Err()
			}
			if err := db.View(read); err != nil {
				t.Fatal(err)
			}
			if want := []string{"a", "blocker", "c"}; !slices.Equal(got, want) {
				t.Fatalf("items: got %v want %v", got, want)
			}
			// Reads in a write transaction too (the writer's statements).
			if err := db.Update(func(tx *sql.Tx) error { return read(tx) }); err != nil {
				t.Fatal(err)
			}
			if want := []string{"a", "blocker", "c"}; !slices.Equal(got, want) {
				t.Fatalf("items read by the writer: got %v want %v", got, want)
			}
			if n := db.Stats().Unprepared; n != tt.wantUnprepared {
				t.Fatalf("statements run from their text: got %d want %d", n, tt.wantUnprepared)
			}
		})
	}
}
