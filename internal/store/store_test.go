package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{}, "items")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func put(key string, val []byte) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte("items")).Put([]byte(key), val) }
}

func count(t *testing.T, db *DB) int {
	t.Helper()
	n := 0
	if err := db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("items")).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUpdateIsDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openTest(t, path)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Update(put(fmt.Sprint(i), []byte("v"))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	defer db.Close()
	if got, want := count(t, db), 100; got != want {
		t.Errorf("after reopen: got %d records want %d", got, want)
	}
}

// TestConcurrentWritersShareCommits holds the first transaction open until 63
// more writers are queued, and checks they are committed together.
func TestConcurrentWritersShareCommits(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := db.Update(func(tx *bolt.Tx) error {
			close(entered)
			<-release
			return put("first", nil)(tx)
		})
		if err != nil {
			t.Error(err)
		}
	}()
	<-entered
	const writers = 63
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Update(put(fmt.Sprint(i), nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(db.reqs) < writers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := len(db.reqs); got != writers {
		t.Fatalf("queued writers: got %d want %d", got, writers)
	}
	once.Do(func() { close(release) })
	wg.Wait()
	if got, want := db.Commits(), int64(2); got != want {
		t.Errorf("commits for 1+%d writers: got %d want %d", writers, got, want)
	}
	if got, want := count(t, db), writers+1; got != want {
		t.Errorf("records: got %d want %d", got, want)
	}
}

// TestFailingWriterIsIsolated checks that one function's error reaches only its
// caller, rolls back only its own changes, and the rest of its batch commits.
func TestFailingWriterIsIsolated(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	boom := errors.New("boom")
	results := make([]error, 9)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0] = db.Update(func(tx *bolt.Tx) error { close(entered); <-release; return nil })
	}()
	<-entered
	for i := 1; i < len(results); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = db.Update(func(tx *bolt.Tx) error {
				if err := put(fmt.Sprint(i), nil)(tx); err != nil {
					return err
				}
				if i == 4 {
					return boom
				}
				return nil
			})
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(db.reqs) < len(results)-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := len(db.reqs); got != len(results)-1 {
		t.Fatalf("queued writers: got %d want %d (they must share one batch)", got, len(results)-1)
	}
	before := db.Commits()
	once.Do(func() { close(release) })
	wg.Wait()
	// The blocked transaction, then the batch of 8 that fails, then the
	// writers queued before the failing one together (if any) and those after
	// it together (if any): 3 or 4 commits, never one per writer.
	if got := db.Commits() - before + 1; got < 3 || got > 4 {
		t.Errorf("commits after the failure: got %d want 3 or 4", got)
	}
	for i, err := range results {
		if want := error(nil); i == 4 {
			if !errors.Is(err, boom) {
				t.Errorf("writer %d: got %v want %v", i, err, boom)
			}
		} else if err != want {
			t.Errorf("writer %d: got %v want nil", i, err)
		}
	}
	if got, want := count(t, db), len(results)-2; got != want {
		t.Errorf("records: got %d want %d (all but the failed writer's)", got, want)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openTest(t, path)
	defer db.Close()
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond}, "items")
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second open: got %v want ErrLocked", err)
	}
}

func TestUpdateAfterClose(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "db"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(put("x", nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v want ErrClosed", err)
	}
}

func BenchmarkUpdateParallel(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "db"), Options{}, "items")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n uint64
	var mu sync.Mutex
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			key := binary.BigEndian.AppendUint64(nil, n)
			mu.Unlock()
			if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("items")).Put(key, key) }); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(db.Commits()), "writes/commit")
}
