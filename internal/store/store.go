// Package store is the embedded database a pkiboard daemon keeps its records in:
// a bbolt file whose writes are group-committed.
//
// bbolt is a single file with copy-on-write B+trees and one writer at a time; a
// committed transaction has been fsynced and survives a crash, and a crash in the
// middle of a commit leaves the previous state. Group commit makes concurrent
// writers share that fsync: while one transaction is being committed, the next
// writers queue, and the committer runs all of them in a single transaction. The
// package holds no knowledge of what the CA or the board store; they define their
// buckets and records.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxBatch bounds how many writers share one transaction.
const MaxBatch = 512

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("store: closed")

// ErrLocked means another process holds the database open.
var ErrLocked = errors.New("store: database is in use by another process")

// DB is an open database. Its methods are safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	path string

	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	reqs    chan *request
	stopped chan struct{}

	commits atomic.Int64 // transactions committed by the group committer
}

type request struct {
	fn   func(*bolt.Tx) error
	errc chan error
}

// Options tune Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the file
	// (default 1s); after it, Open fails with ErrLocked.
	LockTimeout time.Duration
	// ReadOnly opens the file for reading only; Update then fails.
	ReadOnly bool
}

// Open opens (creating if needed, with mode 0600 in a 0700 directory) the
// database at path and makes sure the named top-level buckets exist.
func Open(path string, o Options, buckets ...string) (*DB, error) {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, ReadOnly: o.ReadOnly})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (is the daemon running?)", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !o.ReadOnly {
		err = b.Update(func(tx *bolt.Tx) error {
			for _, name := range buckets {
				if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("store: open %s: create buckets: %w", path, err)
		}
	}
	db := &DB{
		bolt:    b,
		path:    path,
		reqs:    make(chan *request, MaxBatch),
		stopped: make(chan struct{}),
	}
	go db.commitLoop()
	return db, nil
}

// Path returns the file the database lives in.
func (db *DB) Path() string { return db.path }

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*bolt.Tx) error) error { return db.bolt.View(fn) }

// Update runs fn in a read-write transaction and returns once that transaction
// is durable (committed and fsynced) or has failed. Concurrent calls share
// transactions, so fn must only change the database and variables it alone
// owns: it may run more than once (a second time alone, when another function
// in its batch failed), and only its last run counts. An error fn returns rolls
// back fn's changes and is returned by Update.
func (db *DB) Update(fn func(*bolt.Tx) error) error {
	r := &request{fn: fn, errc: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	db.reqs <- r
	db.mu.RUnlock()
	return <-r.errc
}

// commitLoop takes the queued writers, as many as are waiting, and commits them
// together. It returns when reqs is closed and drained.
func (db *DB) commitLoop() {
	defer close(db.stopped)
	batch := make([]*request, 0, MaxBatch)
	for first := range db.reqs {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < MaxBatch {
			select {
			case r, ok := <-db.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commit(batch)
	}
}

// failedAt records which function of a batch failed, so the others can be run
// again without it.
type failedAt struct {
	index int
	err   error
}

func (f *failedAt) Error() string { return f.err.Error() }

func (db *DB) commit(batch []*request) {
	db.commits.Add(1)
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for i, r := range batch {
			if err := r.fn(tx); err != nil {
				return &failedAt{index: i, err: err}
			}
		}
		return nil
	})
	var f *failedAt
	switch {
	case err == nil:
		for _, r := range batch {
			r.errc <- nil
		}
	case errors.As(err, &f):
		// One function failed and the shared transaction rolled back: give it its
		// error, run the ones before it again together, and the rest on their own
		// turn through the queue order.
		batch[f.index].errc <- f.err
		if f.index > 0 {
			db.commit(batch[:f.index])
		}
		if f.index+1 < len(batch) {
			db.commit(batch[f.index+1:])
		}
	default:
		for _, r := range batch {
			r.errc <- fmt.Errorf("store: commit: %w", err)
		}
	}
}

// Commits returns how many write transactions the database has committed (or
// tried to); with n concurrent writers it is usually far below n.
func (db *DB) Commits() int64 { return db.commits.Load() }

// Close waits for queued writes to finish and closes the file.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	close(db.reqs)
	db.mu.Unlock()
	<-db.stopped
	return db.bolt.Close()
}
