package board

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
	"pkiboard/session"
	"pkiboard/wire"
)

// commitTo commits a message of sid to assignment and returns its record.
func commitTo(t *testing.T, s *Store, sid, assignment, text string) (*Record, error) {
	in := receive(t, s, sid, "message.txt", []byte(text))
	sub := submission(t, sid, in)
	sub.Terms.Assignment, sub.Request.Assignment = assignment, assignment
	body, err := sub.Terms.Body()
	if err != nil {
		return nil, err
	}
	sub.TermsBody = body
	return s.Commit(sub, "127.0.0.1:40000", testBoard(t).sign)
}

// TestVersionsHaveNoGaps commits many submissions of one student to one
// assignment at once, with others of another student and another assignment
// interleaved: her versions of each assignment are exactly 1..n, each once,
// and each receipt says the version of its row.
func TestVersionsHaveNoGaps(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 24
	type key struct{ sid, assignment string }
	keysOf := []key{{"1155000001", "hw1"}, {"1155000001", "hw2"}, {"1155000002", "hw1"}}
	var mu sync.Mutex
	got := map[key][]uint32{}
	var wg sync.WaitGroup
	errs := make(chan error, n*len(keysOf))
	for i := range n {
		for _, k := range keysOf {
			wg.Go(func() {
				rec, err := commitTo(t, s, k.sid, k.assignment, fmt.Sprintf("submission %d of %s to %s", i, k.sid, k.assignment))
				if err != nil {
					errs <- err
					return
				}
				r, err := rec.ReceiptMessage()
				if err != nil || r.Version != rec.Version {
					errs <- fmt.Errorf("the receipt of %s says version %v, the row %d (%v)", rec.ID, r, rec.Version, err)
					return
				}
				mu.Lock()
				got[k] = append(got[k], rec.Version)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i + 1)
	}
	for _, k := range keysOf {
		v := got[k]
		slices.Sort(v)
		if !slices.Equal(v, want) {
			t.Errorf("%v: versions %v, want 1..%d each once", k, v, n)
		}
		count, latest, _, err := s.Usage(k.sid, k.assignment)
		if err != nil || count != n || latest != n {
			t.Errorf("%v: Usage %d, %d (%v), want %d, %d", k, count, latest, err, n, n)
		}
	}
}

// TestHistoryIsTheStoredReceipts checks that History returns each receipt
// byte for byte as Commit stored and returned it, with the certificate that
// signed it, newest first, only the student's, of the assignment asked for.
func TestHistoryIsTheStoredReceipts(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mine []*Record
	for i, a := range []string{"hw1", "hw2", "hw1"} {
		rec, err := commitTo(t, s, "1155000001", a, fmt.Sprintf("mine %d", i))
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, rec)
		if _, err := commitTo(t, s, "1155000002", a, fmt.Sprintf("theirs %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		assignment string
		want       []*Record
	}{
		{"", []*Record{mine[2], mine[1], mine[0]}},
		{"hw1", []*Record{mine[2], mine[0]}},
		{"hw3", nil},
	} {
		items, err := s.History("1155000001", tt.assignment, wire.MaxHistoryItems)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != len(tt.want) {
			t.Fatalf("history of %q: %d items, want %d", tt.assignment, len(items), len(tt.want))
		}
		for i, it := range items {
			rec := tt.want[i]
			stored, err := s.Get(rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(it.Receipt, rec.Receipt) || !bytes.Equal(it.Receipt, stored.Receipt) ||
				!bytes.Equal(it.Certificate, stored.BoardCertificate) || it.Version != wire.ReceiptVersion3 {
				t.Errorf("history of %q, item %d: not the receipt of %s byte for byte, with its certificate", tt.assignment, i, rec.ID)
			}
		}
	}
	if items, err := s.History("1155000001", "", 2); err != nil || len(items) != 2 {
		t.Errorf("a limit of 2: %d items (%v)", len(items), err)
	}
}

// v1Row is a row of a version-1 board.db.
type v1Row struct {
	seq       int64
	sid, name string
}

// TestMigrationOfVersion1Rows builds a board.db of schema version 1 (as a
// board before protocol version 3 wrote it), opens it with this board, and
// checks migration 2: every row is the lab's, its original is its name, its
// versions count its SID's rows in seq order, it has no times and no terms,
// its receipt is still the bytes of version 2 and says so, and History gives
// them back byte for byte as receipts of version 2 that verify.
func TestMigrationOfVersion1Rows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DBFile)
	db, err := sqlstore.Open(path, sqlstore.Options{Migrations: migrations[:1]})
	if err != nil {
		t.Fatal(err)
	}
	board := testBoard(t)
	rows := []v1Row{{1, "1155000001", "a.txt"}, {2, "1155000002", "b.txt"}, {3, "1155000001", "c.txt"}, {5, "1155000001", "message.txt"}}
	receipts := map[int64][]byte{}
	received := time.Date(2026, 9, 1, 8, 15, 0, 0, time.UTC)
	err = db.Update(func(tx *sql.Tx) error {
		for _, r := range rows {
			content := []byte("content of " + r.name)
			sum := sha256.Sum256(content)
			id := fmt.Sprintf("%06d", r.seq)
			at := received.Add(time.Duration(r.seq) * time.Minute)
			rv2 := &wire.ReceiptV2{ID: id, SID: r.sid, Serial: []byte{0x7f, byte(r.seq)}, Name: r.name, Size: uint64(len(content)),
				SHA256: sum, Received: uint64(at.UnixMilli()), BoardCertSHA256: sha256.Sum256(board.cert.Raw)}
			msg, err := session.ReceiptV2SignedBytes(rv2)
			if err != nil {
				return err
			}
			if rv2.Signature, err = keys.Sign(board.key, rand.Reader, msg); err != nil {
				return err
			}
			m, err := wire.Marshal(rv2)
			if err != nil {
				return err
			}
			receipts[r.seq] = m[1:]
			_, err = tx.Exec(`INSERT INTO submissions (seq, id, sid, serial, name, size, sha256, suite, received, peer, resumed, file,
				student_certificate, transcript, statement, signature, board_certificate, receipt)
				VALUES (?, ?, ?, ?, ?, ?, ?, 'aes-256-ctr-hmac-sha256', ?, '127.0.0.1:1', 0, ?, X'3000', ?, X'01', X'02', ?, ?)`,
				r.seq, id, r.sid, hex.EncodeToString(rv2.Serial), r.name, len(content), hex.EncodeToString(sum[:]),
				at.Format(receivedLayout), id+contentSuffix, make([]byte, 32), board.cert.Raw, receipts[r.seq])
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantVersion := map[int64]uint32{1: 1, 2: 1, 3: 2, 5: 3}
	for _, r := range rows {
		rec, err := s.Get(fmt.Sprintf("%06d", r.seq))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Assignment != LabAssignment || rec.Original != r.name || rec.Name != r.name || rec.Version != wantVersion[r.seq] ||
			rec.Due != 0 || rec.Lock != 0 || rec.LateMS != 0 || rec.Extended || rec.Terms != nil ||
			rec.ReceiptVersion != wire.ReceiptVersion2 || !bytes.Equal(rec.Receipt, receipts[r.seq]) {
			t.Errorf("row %d after migration: %+v", r.seq, *rec)
		}
		if _, err := rec.ReceiptV2Message(); err != nil {
			t.Errorf("row %d: its receipt of version 2: %v", r.seq, err)
		}
	}
	items, err := s.History("1155000001", LabAssignment, wire.MaxHistoryItems)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 {
		t.Fatalf("history: %d items, want 3", len(items))
	}
	for i, seq := range []int64{5, 3, 1} {
		it := items[i]
		if it.Version != wire.ReceiptVersion2 || !bytes.Equal(it.Receipt, receipts[seq]) || !bytes.Equal(it.Certificate, board.cert.Raw) {
			t.Errorf("history item %d: not row %d's receipt of version 2 byte for byte", i, seq)
		}
	}
	// A new submission of the student to the lab is her version 4.
	rec, err := commitTo(t, s, "1155000001", LabAssignment, "after the migration")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != 4 || rec.ReceiptVersion != wire.ReceiptVersion3 {
		t.Errorf("the first submission after the migration: version %d, receipt version %d; want 4, 3", rec.Version, rec.ReceiptVersion)
	}
}

// TestCommitTallies checks the tally Commit keeps per (assignment, SID): after
// each commit it is held and equals what the database says; a refused commit
// leaves it as it was; a commit whose row could not be indexed drops it, and
// the next commit reads the database again and numbers on without a gap.
func TestCommitTallies(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const sid, assignment = "1155000001", "hw1"
	key := assignment + "\x00" + sid
	steps := []struct {
		name        string
		before      func()
		wantErr     bool
		wantHeld    bool
		wantVersion uint32
	}{
		{name: "first", wantHeld: true, wantVersion: 1},
		{name: "second", wantHeld: true, wantVersion: 2},
		{name: "the index refuses the row", before: func() { s.last.Store(0) }, wantErr: true},
		{name: "after the failure", before: func() { s.last.Store(10) }, wantHeld: true, wantVersion: 3},
		{name: "refused by the course", before: func() {
			refuse := func(string, int, int64, int64) error { return fmt.Errorf("no more versions") }
			s.admit.Store(&refuse)
		}, wantErr: true, wantHeld: true},
		{name: "admitted again", before: func() { s.admit.Store(nil) }, wantHeld: true, wantVersion: 4},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		rec, err := commitTo(t, s, sid, assignment, "submission "+st.name)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Commit error %v, want error %v", st.name, err, st.wantErr)
		}
		if err == nil && rec.Version != st.wantVersion {
			t.Errorf("%s: version %d, want %d", st.name, rec.Version, st.wantVersion)
		}
		held, ok := s.tallies.get(key)
		if ok != st.wantHeld {
			t.Fatalf("%s: tally held %v, want %v", st.name, ok, st.wantHeld)
		}
		if !ok {
			continue
		}
		count, latest, bytes, err := s.Usage(sid, assignment)
		if err != nil {
			t.Fatal(err)
		}
		if want := (tally{count: int64(count), last: int64(latest), stored: bytes}); held != want {
			t.Errorf("%s: tally %+v, the database says %+v", st.name, held, want)
		}
	}
}
