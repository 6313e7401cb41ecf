package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestObserve(t *testing.T) {
	db := openT(t, tempPath(t), Options{})
	var mu sync.Mutex
	var seen []Commit
	db.Observe(func(c Commit) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c)
	})
	release, first := blockCommitter(t, db)
	var wg sync.WaitGroup
	for _, k := range itemKeys(5) {
		wg.Add(1)
		go func() { defer wg.Done(); db.Update(put(k)) }()
	}
	waitQueued(t, db, 5)
	release()
	<-first
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, c := range seen {
		total += c.Batch
		if c.Err != nil || c.Duration <= 0 {
			t.Errorf("commit %+v: want no error and a duration", c)
		}
	}
	if total != 6 || len(seen) != 2 {
		t.Errorf("observed %d transactions of %d writes, want 2 of 6 (the blocker, then the 5 batched)", len(seen), total)
	}
	db.Observe(nil)
	db.Update(put("after"))
	if len(seen) != 2 {
		t.Errorf("observed after Observe(nil)")
	}
}

func TestCheckWritable(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{BusyTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	if err := db.CheckWritable(ctx); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	if err := db.Update(put("a")); err != nil {
		t.Fatal(err)
	}
	// Another connection holding the write lock: the check cannot take it.
	other, err := sql.Open("sqlite", dsn(path, Options{}, "mode=rw"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if err := db.CheckWritable(ctx); err == nil {
		t.Error("with the write lock held elsewhere: got nil, want an error")
	}
	conn.ExecContext(ctx, "ROLLBACK")
	conn.Close()
	if err := db.CheckWritable(ctx); err != nil {
		t.Errorf("after the lock is released: %v", err)
	}
	if got := keys(t, db); len(got) != 1 {
		t.Errorf("the checks wrote: items %v", got)
	}
	db.Close()
	if err := db.CheckWritable(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: got %v want ErrClosed", err)
	}
}
