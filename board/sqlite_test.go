package board

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/internal/sqlstore"
	"pkiboard/wire"
)

// commitMessage receives and commits a small message for sid.
func commitMessage(t *testing.T, s *Store, sid, text string) *Record {
	t.Helper()
	in := receive(t, s, sid, "message.txt", []byte(text))
	rec, err := s.Commit(submission(t, sid, in), "127.0.0.1:40000", testBoard(t).sign)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestBoltStoreRefused checks that a board.db bbolt wrote (the committed
// fixture testdata/older-stores/board.db) is refused, by
// Open and by OpenReadOnly, with a sentence that says what it is and what to
// do, and is left as it was.
func TestBoltStoreRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DBFile)
	before, err := os.ReadFile(filepath.Join("..", "testdata", "older-stores", DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, before, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		s, err := open(dir)
		if err == nil {
			s.Close()
			t.Fatalf("%s opened a bbolt board.db", name)
		}
		if !errors.Is(err, ErrBoltStore) || !strings.Contains(err.Error(), "mv "+path+" "+path+".bbolt") {
			t.Errorf("%s: got %v, want ErrBoltStore saying how to move it aside", name, err)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the bbolt file was changed")
	}
}

// TestSecondOpenRefused checks that a second board on the same directory is
// refused by the database's lock, while a read-only open is not.
func TestSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(dir); !errors.Is(err, sqlstore.ErrLocked) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("a second Open: got %v, want ErrLocked", err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("a read-only open beside the board: %v", err)
	}
	ro.Close()
}

// TestReadOnlyStore checks that a read-only store sees what the board
// commits while it runs, and refuses to commit or remove anything.
func TestReadOnlyStore(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenReadOnly(dir); err == nil || !strings.Contains(err.Error(), "has not run with board.data_dir") {
		t.Errorf("read-only open of a directory without board.db: got %v", err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := commitMessage(t, s, "a", "one")
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	second := commitMessage(t, s, "b", "two")
	recs, err := ro.List()
	if err != nil || len(recs) != 2 || recs[0].ID != first.ID || recs[1].ID != second.ID {
		t.Fatalf("read-only list: got %d records, %v", len(recs), err)
	}
	if got, err := ro.Get(second.ID); err != nil || !bytes.Equal(got.Receipt, second.Receipt) {
		t.Errorf("read-only get: %v", err)
	}
	in := receive(t, s, "c", "message.txt", []byte("three"))
	if _, err := ro.Commit(submission(t, "c", in), "127.0.0.1:1", testBoard(t).sign); err == nil {
		t.Error("a read-only store committed")
	}
	if _, err := ro.RemoveOrphans(); err == nil {
		t.Error("a read-only store removed orphans")
	}
}

// TestIDs checks the ids: in sequence, never reused after a commit that
// failed (its receipt signed and not stored), continued after a reopen, and
// a content file named by its id, which RemoveOrphans removes when no row
// names it.
func TestIDs(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := commitMessage(t, s, "a", "one").ID; got != "000001" {
		t.Errorf("first id %s", got)
	}
	// A signer that fails: nothing stored, the upload discarded, the id gone.
	in := receive(t, s, "a", "message.txt", []byte("two"))
	if _, err := s.Commit(submission(t, "a", in), "127.0.0.1:1", func(*wire.Receipt) error { return errors.New("no key") }); err == nil {
		t.Fatal("a commit whose receipt could not be signed succeeded")
	}
	// A receipt signed with another certificate than the session's.
	in = receive(t, s, "a", "message.txt", []byte("two"))
	if _, err := s.Commit(submission(t, "a", in), "127.0.0.1:1", newBoardSigner(t, nil, nil).sign); err == nil || !strings.Contains(err.Error(), "not signed with the board certificate of its session") {
		t.Fatalf("a receipt signed by another board: %v", err)
	}
	if got := commitMessage(t, s, "a", "three").ID; got != "000004" {
		t.Errorf("the id after two failed commits: %s, want 000004", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash after the content of 000005 was placed, before its row.
	orphan := filepath.Join(dir, ContentDir, "000005"+contentSuffix)
	if err := os.WriteFile(orphan, []byte("lost"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.RemoveOrphans(); n != 1 || err != nil {
		t.Errorf("RemoveOrphans: %d, %v; want 1", n, err)
	}
	rec := commitMessage(t, s, "b", "four")
	if rec.ID != "000005" || rec.File != "000005.dat" {
		t.Errorf("after the restart: id %s file %s, want 000005", rec.ID, rec.File)
	}
	if got, err := os.ReadFile(s.ContentPath(rec)); err != nil || string(got) != "four" {
		t.Errorf("content of %s: %q, %v", rec.ID, got, err)
	}
	recs, _ := s.List()
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[000001 000004 000005]" {
		t.Errorf("ids %v", ids)
	}
}

// TestSchemaChecks checks that the table's CHECK constraints and types refuse
// a row that breaks the conventions (each change of a valid row alone), so
// that a row written by hand or by a bug cannot pass for evidence.
func TestSchemaChecks(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sum := sha256.Sum256([]byte("x"))
	valid := map[string]any{
		"seq": 7, "id": "000007", "sid": "a", "serial": "0a1b", "name": "message.txt", "size": 1,
		"sha256": fmt.Sprintf("%x", sum), "suite": "aes-256-ctr-hmac-sha256", "received": "2026-11-29T10:14:01.123Z",
		"peer": "127.0.0.1:1", "resumed": 0, "file": "000007.dat", "student_certificate": []byte{1},
		"transcript": make([]byte, 32), "statement": []byte{1}, "signature": []byte{1}, "board_certificate": []byte{1}, "receipt": []byte{1},
	}
	insert := func(row map[string]any) error {
		var names []string
		var args []any
		for k, v := range row {
			names = append(names, k)
			args = append(args, v)
		}
		return s.db.Update(func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT INTO submissions ("+strings.Join(names, ", ")+") VALUES (?"+strings.Repeat(", ?", len(names)-1)+")", args...)
			return err
		})
	}
	for _, tt := range []struct {
		column string
		value  any
	}{
		{"id", "7"},
		{"id", "000008"},
		{"sid", ""},
		{"serial", "0A1B"},
		{"serial", "a1b"},
		{"serial", "zz"},
		{"name", ""},
		{"size", -1},
		{"size", "one"},
		{"sha256", strings.ToUpper(fmt.Sprintf("%x", sum))},
		{"sha256", "abc"},
		{"suite", "null-cipher"},
		{"received", "2026-11-29 10:14:01"},
		{"received", "2026-11-29T10:14:01Z"},
		{"resumed", 2},
		{"file", "other.dat"},
		{"transcript", make([]byte, 31)},
		{"transcript", strings.Repeat("t", 32)},
		{"receipt", []byte{}},
		{"board_certificate", nil},
	} {
		row := map[string]any{}
		for k, v := range valid {
			row[k] = v
		}
		row[tt.column] = tt.value
		if err := insert(row); err == nil {
			t.Errorf("a row with %s = %#v was stored", tt.column, tt.value)
		}
	}
	if err := insert(valid); err != nil {
		t.Fatalf("the valid row was refused: %v", err)
	}
}
