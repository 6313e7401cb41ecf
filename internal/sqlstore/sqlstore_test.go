package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"modernc.org/sqlite"
)

// TestOpenSettings reads back the settings of a new database: the pragmas of
// the writer and of the readers, the modes of the files, the lock kind.
func TestOpenSettings(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	if err := db.Update(put("a")); err != nil {
		t.Fatal(err)
	}
	if got, want := db.Version(), len(testMigrations); got != want {
		t.Errorf("version: got %d want %d", got, want)
	}
	var journal string
	var syncMode, fk, busy int
	err := db.writer.QueryRow(`SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT synchronous FROM pragma_synchronous),
		(SELECT foreign_keys FROM pragma_foreign_keys), (SELECT timeout FROM pragma_busy_timeout)`).Scan(&journal, &syncMode, &fk, &busy)
	if err != nil {
		t.Fatal(err)
	}
	if journal != "wal" || syncMode != 2 || fk != 1 || busy != int(DefaultBusyTimeout.Milliseconds()) {
		t.Errorf("writer: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d, want wal 2 (FULL) 1 %d",
			journal, syncMode, fk, busy, DefaultBusyTimeout.Milliseconds())
	}
	var queryOnly int
	if err := db.readers.QueryRow(`SELECT (SELECT query_only FROM pragma_query_only), (SELECT foreign_keys FROM pragma_foreign_keys)`).Scan(&queryOnly, &fk); err != nil {
		t.Fatal(err)
	}
	if queryOnly != 1 || fk != 1 {
		t.Errorf("readers: query_only=%d foreign_keys=%d, want 1 1", queryOnly, fk)
	}
	if _, err := db.readers.Exec(`PRAGMA query_only=0`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.readers.Exec(`INSERT INTO items (k) VALUES ('x')`); err == nil {
		t.Error("a reader connection wrote, with query_only turned off (mode=ro should forbid it)")
	}
	for _, name := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v want 0600", name, fi.Mode().Perm())
		}
	}
	if runtime.GOOS == "linux" && !sqlite.OFDLockingEnabled() {
		t.Error("OFD locks are not in effect")
	}
}

func TestUpdateIsDurableAcrossReopen(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, path, Options{})
	if got, want := keys(t, db), itemKeys(100); !slices.Equal(got, want) {
		t.Errorf("after reopen: got %d items want %d", len(got), len(want))
	}
}

// TestConcurrentWritersShareCommits holds the first transaction open until 63
// more writers are queued, and checks they are committed together.
func TestConcurrentWritersShareCommits(t *testing.T) {
	db := openT(t, tempPath(t), Options{})
	release, first := blockCommitter(t, db)
	const writers = 63
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, db, writers)
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	st := db.Stats()
	if st.Commits != 2 || st.Writes != writers+1 || st.LargestBatch != writers || st.Failed != 0 {
		t.Errorf("stats: got %+v want 2 commits, %d writes, largest batch %d, none failed", st, writers+1, writers)
	}
	if got, want := len(keys(t, db)), writers+1; got != want {
		t.Errorf("items: got %d want %d", got, want)
	}
}

// TestMaxBatch checks the bound on a batch.
func TestMaxBatch(t *testing.T) {
	db := openT(t, tempPath(t), Options{MaxBatch: 4})
	release, first := blockCommitter(t, db)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := db.Update(put(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, db, 4)
	for i := 4; i < 10; i++ {
		wg.Go(func() {
			if err := db.Update(put(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	release()
	wg.Wait()
	<-first
	if st := db.Stats(); st.LargestBatch != 4 || st.Writes != 11 || st.Commits < 4 {
		t.Errorf("stats: got %+v want batches of at most 4, 11 writes, at least 4 commits", st)
	}
}

// TestFailingWriterIsIsolated queues eight writers behind a blocked one, so
// that they share one transaction, and makes some of them fail in the ways a
// function can: its error reaches its caller only, its changes only are
// rolled back, and the rest of its batch commits.
func TestFailingWriterIsIsolated(t *testing.T) {
	boom := errors.New("boom")
	type behaviour int
	const (
		ok behaviour = iota
		fails
		duplicate // violates the UNIQUE constraint: SQLite's own error
		panics
		endsTx // runs ROLLBACK: the shared transaction is lost
	)
	tests := []struct {
		name string
		fns  [8]behaviour
		// stored lists the writers (1–8) whose items must be stored.
		stored []int
		// lost lists the writers told that the shared transaction was lost.
		lost []int
	}{
		{name: "one fails in the middle", fns: [8]behaviour{3: fails}, stored: []int{1, 2, 3, 5, 6, 7, 8}},
		{name: "the first fails", fns: [8]behaviour{0: fails}, stored: []int{2, 3, 4, 5, 6, 7, 8}},
		{name: "the last fails", fns: [8]behaviour{7: fails}, stored: []int{1, 2, 3, 4, 5, 6, 7}},
		{name: "several fail", fns: [8]behaviour{1: fails, 2: duplicate, 6: fails}, stored: []int{1, 4, 5, 6, 8}},
		{name: "all fail", fns: [8]behaviour{fails, fails, fails, fails, fails, fails, fails, fails}},
		{name: "a constraint fails", fns: [8]behaviour{4: duplicate}, stored: []int{1, 2, 3, 4, 6, 7, 8}},
		{name: "one panics", fns: [8]behaviour{2: panics}, stored: []int{1, 2, 4, 5, 6, 7, 8}},
		{name: "one ends the transaction", fns: [8]behaviour{3: endsTx}, stored: []int{5, 6, 7, 8}, lost: []int{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openT(t, tempPath(t), Options{})
			if err := db.Update(put("taken")); err != nil {
				t.Fatal(err)
			}
			release, first := blockCommitter(t, db)
			var results [8]error
			var panicked [8]any
			var wg sync.WaitGroup
			for i, b := range tt.fns {
				wg.Go(func() {
					defer func() { panicked[i] = recover() }()
					results[i] = db.Update(func(tx *sql.Tx) error {
						if err := put(fmt.Sprint(i + 1))(tx); err != nil {
							return err
						}
						switch b {
						case fails:
							return fmt.Errorf("writer %d: %w", i+1, boom)
						case duplicate:
							return put("taken")(tx)
						case panics:
							panic(fmt.Sprintf("writer %d panics", i+1))
						case endsTx:
							_, err := tx.Exec("ROLLBACK")
							return err
						}
						return nil
					})
				})
				waitQueued(t, db, i+1) // in the order of tt.fns
			}
			release()
			wg.Wait()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			for i, b := range tt.fns {
				err, p := results[i], panicked[i]
				switch {
				case slices.Contains(tt.lost, i+1):
					if err == nil || !strings.Contains(err.Error(), "was rolled back") {
						t.Errorf("writer %d: got %v want the shared transaction's loss", i+1, err)
					}
				case b == fails && !errors.Is(err, boom):
					t.Errorf("writer %d: got %v want %v", i+1, err, boom)
				case b == duplicate && (err == nil || !strings.Contains(err.Error(), "UNIQUE")):
					t.Errorf("writer %d: got %v want a UNIQUE constraint error", i+1, err)
				case b == panics && p != fmt.Sprintf("writer %d panics", i+1):
					t.Errorf("writer %d: Update panicked with %v, want its function's panic", i+1, p)
				case b == ok && err != nil:
					t.Errorf("writer %d: got %v want nil", i+1, err)
				}
				if b != panics && p != nil {
					t.Errorf("writer %d panicked: %v", i+1, p)
				}
			}
			want := []string{"blocker", "taken"}
			for _, i := range tt.stored {
				want = append(want, fmt.Sprint(i))
			}
			slices.Sort(want)
			if got := keys(t, db); !slices.Equal(got, want) {
				t.Errorf("items: got %v want %v", got, want)
			}
			// The writers after all this still commit.
			if err := db.Update(put("after")); err != nil {
				t.Errorf("a write after the batch: %v", err)
			}
		})
	}
}

// TestLoneWriterFails fails a writer that has its transaction to itself (no
// savepoint then): its error or panic reaches its caller, nothing of it is
// stored, and the next writer commits.
func TestLoneWriterFails(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		fn        func(tx *sql.Tx) error
		want      string // in the error
		wantPanic any
	}{
		{name: "error", fn: func(*sql.Tx) error { return boom }, want: "boom"},
		{name: "constraint", fn: put("taken"), want: "UNIQUE"},
		{name: "panic", fn: func(*sql.Tx) error { panic("lone panic") }, wantPanic: "lone panic"},
		{name: "ends the transaction", fn: func(tx *sql.Tx) error {
			_, err := tx.Exec("ROLLBACK")
			return err
		}, want: "commit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openT(t, tempPath(t), Options{})
			if err := db.Update(put("taken")); err != nil {
				t.Fatal(err)
			}
			var err error
			var p any
			func() {
				defer func() { p = recover() }()
				err = db.Update(func(tx *sql.Tx) error {
					if err := put("lone")(tx); err != nil {
						return err
					}
					return tt.fn(tx)
				})
			}()
			if p != tt.wantPanic {
				t.Errorf("panic: got %v want %v", p, tt.wantPanic)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v want an error saying %q", err, tt.want)
			}
			if err := db.Update(put("after")); err != nil {
				t.Fatal(err)
			}
			if got, want := keys(t, db), []string{"after", "taken"}; !slices.Equal(got, want) {
				t.Errorf("items: got %v want %v", got, want)
			}
			if st := db.Stats(); st.Commits != 3 || st.Failed != 1 {
				t.Errorf("stats: got %+v want 3 commits, 1 failed", st)
			}
		})
	}
}

// TestReadersWhileWriting runs readers against writers: no reader fails or
// waits for the writer, each sees the count grow, and a View sees one
// snapshot however many commits happen during it.
func TestReadersWhileWriting(t *testing.T) {
	db := openT(t, tempPath(t), Options{})
	const writers, each = 4, 50
	done := make(chan struct{})
	var wg, readers sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := db.Update(put(fmt.Sprintf("w%d-%03d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 4 {
		readers.Go(func() {
			last := 0
			for {
				var n int
				if err := db.View(func(tx *sql.Tx) error { return tx.QueryRow(`SELECT count(*) FROM items`).Scan(&n) }); err != nil {
					t.Error(err)
					return
				}
				if n < last {
					t.Errorf("count went back from %d to %d", last, n)
				}
				last = n
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	// A snapshot: a commit made during a View is not seen by it.
	err := db.View(func(tx *sql.Tx) error {
		var before, after int
		if err := tx.QueryRow(`SELECT count(*) FROM items`).Scan(&before); err != nil {
			return err
		}
		if err := db.Update(put("during the view")); err != nil {
			return err
		}
		if err := tx.QueryRow(`SELECT count(*) FROM items`).Scan(&after); err != nil {
			return err
		}
		if after != before {
			t.Errorf("one View saw %d items, then %d", before, after)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(done)
	readers.Wait()
	if got, want := len(keys(t, db)), writers*each+1; got != want {
		t.Errorf("items: got %d want %d", got, want)
	}
}

// TestCloseDrainsQueuedWrites closes the database while writers are queued:
// every one of them is committed and answered before Close returns.
func TestCloseDrainsQueuedWrites(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	release, first := blockCommitter(t, db)
	const writers = 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, db, writers)
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	for !isClosed(db) {
		runtime.Gosched()
	}
	if err := db.Update(put("late")); err != ErrClosed {
		t.Errorf("Update during Close: got %v want ErrClosed", err)
	}
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(*sql.Tx) error { return nil }); err != ErrClosed {
		t.Errorf("View after Close: got %v want ErrClosed", err)
	}
	db = openT(t, path, Options{})
	if got, want := len(keys(t, db)), writers+1; got != want {
		t.Errorf("items after reopen: got %d want %d", got, want)
	}
}

func isClosed(db *DB) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.closed
}

// TestPreparedStatementInUpdates checks a statement of Options.Prepared run
// by Exec in Update's functions: alone, in a shared batch, and in a
// savepoint that fails (the others of its batch commit).
func TestPreparedStatementInUpdates(t *testing.T) {
	path := tempPath(t)
	const insert = `INSERT INTO items (k, v) VALUES (?, ?)`
	db := openT(t, path, Options{Prepared: []string{insert}})
	putStmt := func(k string) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := Exec(tx, insert, k, []byte("value of "+k))
			return err
		}
	}
	if err := db.Update(putStmt("alone")); err != nil {
		t.Fatal(err)
	}
	release, first := blockCommitter(t, db)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, k := range []string{"b1", "b2", "alone", "b3"} { // "alone" again: UNIQUE fails
		wg.Go(func() { errs <- db.Update(putStmt(k)) })
	}
	waitQueued(t, db, 4)
	release()
	wg.Wait()
	close(errs)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("got %d failed writes, want 1 (the duplicate)", failed)
	}
	if got, want := keys(t, db), []string{"alone", "b1", "b2", "b3", "blocker"}; !slices.Equal(got, want) {
		t.Errorf("items: got %q want %q", got, want)
	}
	if n := db.Stats().Unprepared; n != 0 {
		t.Errorf("%d statements ran from their text, want 0: the insert is prepared", n)
	}
}
