// Package sqlstore is the embedded SQLite database a pkiboard daemon keeps its
// records in: one file, written by one connection that group-commits
// concurrent writers, read by several connections at once, and readable by
// other processes (an operator command, the sqlite3 shell) while the daemon
// runs. It knows nothing of what the CA or the board store: they bring their
// schema as a list of migrations. It is not for the student's machine, which
// keeps no database.
//
// # Settings
//
// The driver is modernc.org/sqlite: SQLite's own C code translated to Go, so
// the binary stays one static file without cgo, and SQLite's own OS layer
// (os_unix.c) does the locking and syncing. The connections are opened with:
//
//   - journal_mode=WAL: readers never block the writer nor the writer them,
//     and another process can read while the daemon writes.
//   - synchronous=FULL: COMMIT returns only after the WAL has been synced, so
//     an acknowledged write survives a power loss, not only a crash of the
//     process. NORMAL is not enough for a CA that hands out serial numbers: in
//     the words of sqlite.org/pragma.html#pragma_synchronous, "WAL mode is
//     always consistent with synchronous=NORMAL, but WAL mode does lose
//     durability. A transaction committed in WAL mode with synchronous=NORMAL
//     might roll back following a power loss or system crash." and
//     sqlite.org/wal.html: "Writers sync the WAL on every transaction commit
//     if PRAGMA synchronous is set to FULL but omit this sync if PRAGMA
//     synchronous is set to NORMAL." Group commit pays for FULL: concurrent
//     writers share one sync.
//   - foreign_keys=ON (SQLite's default is off, per connection).
//   - busy_timeout: a connection that finds the file locked by another
//     process (a checkpoint, the sqlite3 shell) waits instead of failing.
//   - the writer begins every transaction with BEGIN IMMEDIATE (_txlock), so
//     it takes the write lock before it reads and never has to fail a
//     transaction half-way for want of it.
//   - readers are opened with mode=ro and query_only.
//
// The package also turns on Linux's open-file-description locks for SQLite's
// locks on the database file ([sqlite.OFDLocking]), process-wide, when it is
// initialised: with the POSIX record locks SQLite uses by default, closing any
// descriptor of the database file anywhere in the process (a hash, a copy, a
// second Open that fails) silently drops all of the process's locks on it, and
// another process could then delete the WAL under the daemon. The locks on the
// -shm file stay POSIX locks (SQLite's choice); this package never opens that
// file. Elsewhere than on Linux the POSIX locks stay.
//
// # One owner
//
// Open takes an exclusive lock of its own on <path>.lock (flock, released by
// the kernel when the process dies), so that two daemons never share a data
// directory; a second Open fails with [ErrLocked]. An open with
// Options.ReadOnly takes no lock and reads while the daemon writes. The
// daemons run on Linux; flock also works on the BSDs and macOS; on other
// systems (Windows) there is no such lock and nothing keeps a second daemon
// off the file but SQLite's own locking, which keeps the file consistent but
// lets both write.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
)

func init() {
	// Before any database is opened in this process: from the first lock on,
	// the kind of lock is fixed. It fails only where OFD locks do not exist.
	sqlite.OFDLocking(true)
}

// DefaultMaxBatch bounds how many writers share one transaction unless
// Options.MaxBatch says otherwise.
const DefaultMaxBatch = 256

// DefaultReaders is the number of reader connections unless Options.Readers
// says otherwise.
const DefaultReaders = 4

// DefaultBusyTimeout is how long a connection waits for another process's
// lock unless Options.BusyTimeout says otherwise.
const DefaultBusyTimeout = 5 * time.Second

// Errors Open, Update and View return; each comes wrapped in a sentence that
// names the file and says what to do.
var (
	// ErrClosed is returned by Update, View and Backup after Close.
	ErrClosed = errors.New("sqlstore: closed")
	// ErrReadOnly is returned by Update on a database opened read-only.
	ErrReadOnly = errors.New("sqlstore: opened read-only")
	// ErrLocked means another process (or another Open in this one) owns the
	// database.
	ErrLocked = errors.New("sqlstore: database is in use by another process")
	// ErrNotDatabase means the file is not an SQLite database.
	ErrNotDatabase = errors.New("sqlstore: not an SQLite database")
	// ErrDamaged means SQLite found the file damaged.
	ErrDamaged = errors.New("sqlstore: database is damaged")
	// ErrSchema means the tables in the file are not those its schema version
	// (PRAGMA user_version) stands for.
	ErrSchema = errors.New("sqlstore: schema does not match its version")
	// ErrTooNew means the file was written by a newer program, at a schema
	// version this one does not know.
	ErrTooNew = errors.New("sqlstore: database written by a newer pkiboard")
	// ErrTooOld means a read-only open found a schema version older than the
	// program's: the daemon, which migrates at start, has not run this
	// program's version yet.
	ErrTooOld = errors.New("sqlstore: database not yet migrated")
	// ErrNotOwner means the database file or its -wal or -shm file is not the
	// process's own to write.
	ErrNotOwner = errors.New("sqlstore: file not writable by this process")
)

// Options tune Open.
type Options struct {
	// Migrations bring the schema from version 0 (an empty file) to
	// len(Migrations): Migrations[i] takes version i to i+1.
	Migrations []Migration
	// ReadOnly opens an existing database for reading only, without the
	// lock, while its daemon may be writing; Update then fails. The database
	// must be at the version of Migrations.
	ReadOnly bool
	// Readers is the number of reader connections (DefaultReaders if 0).
	Readers int
	// MaxBatch bounds how many writers share one transaction
	// (DefaultMaxBatch if 0).
	MaxBatch int
	// BusyTimeout is how long a connection waits for another process's lock
	// (DefaultBusyTimeout if 0).
	BusyTimeout time.Duration
	// Prepared are the statements the functions given to View and Update
	// run most, by their exact text: each is prepared once per connection,
	// and Exec, QueryRow and Query run it prepared (prepared.go).
	Prepared []string
	// FullCheckEvery is how old the last full check (PRAGMA quick_check)
	// may be before Open runs another on a database whose last stop was
	// clean (DefaultFullCheckEvery if 0). See [Checked].
	FullCheckEvery time.Duration
	// Now is the clock the full check's age is read with (time.Now if nil).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Readers <= 0 {
		o.Readers = DefaultReaders
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.FullCheckEvery <= 0 {
		o.FullCheckEvery = DefaultFullCheckEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// DB is an open database. Its methods are safe for concurrent use.
type DB struct {
	path     string
	readOnly bool
	version  int
	checked  Checked // what Open checked the file with

	writer  *sql.DB // one connection; only the committer uses it
	readers *sql.DB
	// The statements of Options.Prepared, prepared on the writer (with the
	// savepoints) and on the readers; nil when there is no such pool.
	writerStmts, readerStmts *statements
	unprepared               atomic.Int64
	lock                     *os.File // the lock file, held until Close; nil when read-only

	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	reqs    chan *request
	stopped chan struct{}

	maxBatch   int
	commits    atomic.Int64 // transactions committed (or tried)
	writes     atomic.Int64 // Update calls those transactions answered
	failed     atomic.Int64 // Update calls whose function failed or whose commit failed
	largest    atomic.Int64 // the largest batch so far
	commitTime atomic.Int64 // nanoseconds from BEGIN to the return of COMMIT, summed

	observer   atomic.Pointer[func(Commit)]
	lastCommit atomic.Pointer[error] // the last transaction's BEGIN or COMMIT error; nil pointer or nil error: it succeeded
}

// Commit is what an observer (DB.Observe) learns of each write transaction.
type Commit struct {
	// Duration is from BEGIN to the return of COMMIT (or ROLLBACK),
	// functions included.
	Duration time.Duration
	// Batch is the number of Update calls the transaction served.
	Batch int
	// Err is the transaction's own error (BEGIN or COMMIT), not a
	// function's; nil when it committed.
	Err error
}

// Observe makes fn learn of every write transaction from now on, on the
// committer's goroutine after the writers are answered: it must be quick.
// A nil fn stops it. Daemons feed their commit metrics with it.
func (db *DB) Observe(fn func(Commit)) {
	if fn == nil {
		db.observer.Store(nil)
		return
	}
	db.observer.Store(&fn)
}

// observe tells the observer of a transaction and keeps its result.
func (db *DB) observe(start time.Time, batch int, err error) {
	db.lastCommit.Store(&err)
	if fn := db.observer.Load(); fn != nil {
		(*fn)(Commit{Duration: time.Since(start), Batch: batch, Err: err})
	}
}

// CheckWritable reports whether the database takes writes now: through the
// committer's own connection, queued behind the writers waiting, it begins
// an IMMEDIATE transaction (which takes the write lock, and fails on a
// read-only file) and rolls it back; and it fails while the last write
// transaction failed (a full disk, say) until one succeeds. It writes
// nothing. Readiness checks call it.
func (db *DB) CheckWritable(ctx context.Context) error {
	if db.readOnly {
		return ErrReadOnly
	}
	r := &request{probe: true, done: make(chan outcome, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	select {
	case db.reqs <- r:
	case <-ctx.Done():
		db.mu.RUnlock()
		return fmt.Errorf("sqlstore: %s: writers queued beyond the check's time: %w", db.path, ctx.Err())
	}
	db.mu.RUnlock()
	select {
	case out := <-r.done:
		if out.err != nil {
			return out.err
		}
	case <-ctx.Done():
		return fmt.Errorf("sqlstore: %s: the committer did not answer in time: %w", db.path, ctx.Err())
	}
	if last := db.lastCommit.Load(); last != nil && *last != nil {
		return fmt.Errorf("sqlstore: the last write transaction failed: %w", *last)
	}
	return nil
}

// probe answers a CheckWritable request on the writer's connection.
func (db *DB) probe(r *request) {
	ctx := context.Background()
	err := func() error {
		conn, err := db.writer.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return err
		}
		_, err = conn.ExecContext(ctx, "ROLLBACK")
		return err
	}()
	if err != nil {
		err = classify(db.path, "take the write lock", err)
	}
	r.done <- outcome{err: err}
}

type request struct {
	fn    func(*sql.Tx) error
	probe bool         // CheckWritable's request: no fn, no transaction of writers
	done  chan outcome // buffered: the committer never waits for the caller
}

// outcome is what the committer answers a writer.
type outcome struct {
	err      error
	panicked bool
	value    any // what fn panicked with
}

// Open opens the database at path, creating it (mode 0600; the directory is
// created 0700 if missing) unless Options.ReadOnly, and brings its schema to
// the version of o.Migrations. It refuses, with an error that says why and
// what to do, a file that is not an SQLite database, is damaged (shorter
// than its header says, or faulted by PRAGMA quick_check), holds a schema
// other than the one its version stands for, or was written by a newer
// program; it never creates tables over such a file. Unless read-only, it
// also refuses a database whose file, -wal, -shm or lock file is another
// user's or not writable ([ErrNotOwner], with the chown or chmod that fixes
// it), and one another process has open ([ErrLocked]).
func Open(path string, o Options) (*DB, error) {
	o = o.withDefaults()
	if o.ReadOnly {
		return openReadOnly(path, o)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := checkOwner(path); err != nil {
		return nil, err
	}
	lock, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	db, err := openWriter(path, o, lock)
	if err != nil {
		unlockFile(lock)
		return nil, err
	}
	return db, nil
}

func openWriter(path string, o Options, lock *os.File) (_ *DB, err error) {
	// SQLite would create the file with mode 0644; create it first, 0600.
	// SQLite gives the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	f.Close()
	if err := checkHeader(path); err != nil {
		return nil, err
	}
	// Before SQLite opens the file: the last connection to close removes
	// the WAL, so a WAL here is what a stop without Close left behind.
	_, statErr := os.Stat(path + "-wal")
	walLeft := statErr == nil
	ctx := context.Background()
	writer, err := sql.Open("sqlite", dsn(path, o, "mode=rw",
		"_foreign_keys=1", "_synchronous=FULL", "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			writer.Close()
		}
	}()
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	conn, err := writer.Conn(ctx)
	if err != nil {
		return nil, classify(path, "open", err)
	}
	version, checked, err := prepare(ctx, conn, path, o, walLeft)
	conn.Close()
	if err != nil {
		return nil, err
	}
	readers, err := openReaders(path, o)
	if err != nil {
		return nil, err
	}
	db := &DB{
		path:     path,
		version:  version,
		checked:  checked,
		writer:   writer,
		readers:  readers,
		lock:     lock,
		reqs:     make(chan *request, o.MaxBatch),
		stopped:  make(chan struct{}),
		maxBatch: o.MaxBatch,
	}
	db.writerStmts = prepareAll(writer, &db.unprepared, savepointSQL, o.Prepared)
	db.readerStmts = prepareAll(readers, &db.unprepared, o.Prepared)
	go db.commitLoop()
	return db, nil
}

func openReadOnly(path string, o Options) (_ *DB, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := checkHeader(path); err != nil {
		return nil, err
	}
	readers, err := openReaders(path, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			readers.Close()
		}
	}()
	ctx := context.Background()
	conn, err := readers.Conn(ctx)
	if err != nil {
		return nil, classify(path, "open", err)
	}
	defer conn.Close()
	version, _, checked, err := check(ctx, conn, path, o, false)
	if err != nil {
		return nil, err
	}
	if version < len(o.Migrations) {
		return nil, fmt.Errorf("%w: %s is at schema version %d and this pkiboard expects %d; start the daemon of this version once, which brings it up to date, then try again",
			ErrTooOld, path, version, len(o.Migrations))
	}
	db := &DB{path: path, readOnly: true, version: version, checked: checked, readers: readers, stopped: make(chan struct{})}
	db.readerStmts = prepareAll(readers, &db.unprepared, o.Prepared)
	return db, nil
}

// openReaders opens the pool of reader connections.
func openReaders(path string, o Options) (*sql.DB, error) {
	readers, err := sql.Open("sqlite", dsn(path, o, "mode=ro", "_foreign_keys=1", "_query_only=1"))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	readers.SetMaxOpenConns(o.Readers)
	readers.SetMaxIdleConns(o.Readers)
	return readers, nil
}

// Path returns the file the database lives in.
func (db *DB) Path() string { return db.path }

// Checked returns how Open checked the file: which check ran, why, and how
// long it took. Daemons say it in their start log line.
func (db *DB) Checked() Checked { return db.checked }

// Version returns the schema version (PRAGMA user_version) the database is at.
func (db *DB) Version() int { return db.version }

// View runs fn in a read transaction on a reader connection: fn sees one
// snapshot of the database, taken at its first read, whatever the writer
// commits meanwhile. The transaction is rolled back after fn returns, and any
// write in it fails.
func (db *DB) View(fn func(tx *sql.Tx) error) error {
	db.mu.RLock()
	closed := db.closed
	db.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	tx, err := db.readers.Begin()
	if err != nil {
		return classify(db.path, "begin a read", err)
	}
	defer tx.Rollback()
	defer track(tx, db.readerStmts)()
	return fn(tx)
}

// Update runs fn in a write transaction and returns once that transaction is
// durable (COMMIT returned with the WAL synced) or has failed. Concurrent
// calls share one transaction; each fn runs once, inside a savepoint of its
// own, so an error fn returns (or a panic, which Update raises again in the
// caller) rolls back fn's changes only, and the error is returned by Update
// while the other writers of the batch commit. fn runs on the committer's
// goroutine; it must not call tx.Commit or tx.Rollback, nor Update (which
// would wait for itself), nor keep tx after it returns, and it should be
// quick: the writers after it wait.
func (db *DB) Update(fn func(tx *sql.Tx) error) error {
	if db.readOnly {
		return ErrReadOnly
	}
	r := &request{fn: fn, done: make(chan outcome, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	db.reqs <- r
	db.mu.RUnlock()
	out := <-r.done
	if out.panicked {
		panic(out.value)
	}
	return out.err
}

// commitLoop takes the queued writers, as many as are waiting up to the
// bound, and commits them together. It returns when reqs is closed and
// drained.
func (db *DB) commitLoop() {
	defer close(db.stopped)
	batch := make([]*request, 0, db.maxBatch)
	var probes []*request
	for first := range db.reqs {
		if first.probe {
			db.probe(first)
			continue
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < db.maxBatch {
			select {
			case r, ok := <-db.reqs:
				if !ok {
					break drain
				}
				if r.probe {
					probes = append(probes, r)
					continue
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commit(batch)
		for _, p := range probes {
			db.probe(p)
		}
		clear(probes)
		probes = probes[:0]
	}
}

// commit runs batch in one transaction, each function in a savepoint.
func (db *DB) commit(batch []*request) {
	start := time.Now()
	db.commits.Add(1)
	if n := int64(len(batch)); n > db.largest.Load() {
		db.largest.Store(n) // only the committer writes it
	}

	answer := func(r *request, out outcome) {
		db.writes.Add(1)
		if out.err != nil || out.panicked {
			db.failed.Add(1)
		}
		r.done <- out
	}
	tx, err := db.writer.Begin()
	if err != nil {
		err = classify(db.path, "begin a write", err)
		for _, r := range batch {
			answer(r, outcome{err: err})
		}
		db.observe(start, len(batch), err)
		return
	}
	defer track(tx, db.writerStmts)()
	if len(batch) == 1 {
		// Alone, a function needs no savepoint: the transaction is its own.
		r := batch[0]
		out := call(tx, r.fn)
		var txErr error
		if out.err != nil || out.panicked {
			tx.Rollback()
		} else if err := tx.Commit(); err != nil {
			txErr = classify(db.path, "commit", err)
			out.err = txErr
		}
		db.commitTime.Add(int64(time.Since(start)))
		answer(r, out)
		db.observe(start, 1, txErr)
		return
	}
	outs := make([]outcome, len(batch))
	stored := 0 // functions whose changes the transaction holds
	for i, r := range batch {
		out, broken := runInSavepoint(tx, r.fn)
		if broken == nil {
			outs[i] = out
			if out.err == nil && !out.panicked {
				stored++
			}
			continue
		}
		// The transaction can no longer be trusted (SQLite rolled it back
		// after an I/O error, say, or fn ended it): nothing of it is stored.
		// The functions before fn lose their changes; fn gets its own
		// error, or this one; those after it never ran, and get a
		// transaction of their own.
		tx.Rollback()
		lost := fmt.Errorf("sqlstore: the transaction this write shared was rolled back (%v); nothing of it was stored", broken)
		for j := range i {
			if outs[j].err == nil && !outs[j].panicked {
				outs[j].err = lost
			}
			answer(batch[j], outs[j])
		}
		if out.err == nil && !out.panicked {
			out.err = lost
		}
		answer(r, out)
		db.commitTime.Add(int64(time.Since(start)))
		db.observe(start, i+1, broken)
		if i+1 < len(batch) {
			db.commit(batch[i+1:])
		}
		return
	}
	if stored == 0 {
		err = tx.Rollback()
	} else if err = tx.Commit(); err != nil {
		err = classify(db.path, "commit", err)
	}
	db.commitTime.Add(int64(time.Since(start)))
	for i, r := range batch {
		if err != nil && outs[i].err == nil && !outs[i].panicked {
			outs[i].err = err
		}
		answer(r, outs[i])
	}
	db.observe(start, len(batch), err)
}

// runInSavepoint runs fn inside a savepoint of tx and rolls its changes back
// if it fails. broken is set if the savepoint itself could not be made,
// rolled back or released: then the whole transaction is lost.
func runInSavepoint(tx *sql.Tx, fn func(*sql.Tx) error) (out outcome, broken error) {
	if _, err := Exec(tx, "SAVEPOINT w"); err != nil {
		return outcome{}, err
	}
	out = call(tx, fn)
	if out.err != nil || out.panicked {
		if _, err := Exec(tx, "ROLLBACK TO w"); err != nil {
			return out, err
		}
	}
	if _, err := Exec(tx, "RELEASE w"); err != nil {
		return out, err
	}
	return out, nil
}

// call runs fn, turning a panic into an outcome.
func call(tx *sql.Tx, fn func(*sql.Tx) error) (out outcome) {
	defer func() {
		if v := recover(); v != nil {
			out = outcome{panicked: true, value: v}
		}
	}()
	return outcome{err: fn(tx)}
}

// Stats counts what the group committer did.
type Stats struct {
	// Commits is the number of write transactions (batches) committed or
	// tried; with concurrent writers it is below Writes.
	Commits int64
	// Writes is the number of Update calls those transactions answered: the
	// sum of the batch sizes.
	Writes int64
	// Failed is the number of Update calls answered with an error.
	Failed int64
	// LargestBatch is the most writers one transaction held.
	LargestBatch int64
	// CommitTime is the time spent from BEGIN to the return of COMMIT
	// (functions included), summed over the transactions.
	CommitTime time.Duration
	// Unprepared is the number of statements Exec, QueryRow and Query ran
	// from their text, in View's and Update's transactions, because
	// Options.Prepared did not name them.
	Unprepared int64
}

// Stats returns the counters of the group committer so far.
func (db *DB) Stats() Stats {
	return Stats{
		Commits:      db.commits.Load(),
		Writes:       db.writes.Load(),
		Failed:       db.failed.Load(),
		LargestBatch: db.largest.Load(),
		CommitTime:   time.Duration(db.commitTime.Load()),
		Unprepared:   db.unprepared.Load(),
	}
}

// Commits returns how many write transactions the database has committed (or
// tried to); with n concurrent writers it is usually far below n.
func (db *DB) Commits() int64 { return db.commits.Load() }

// Close waits for the queued writes to be committed and answered, then closes
// the connections (the last one checkpoints the WAL into the database file and
// removes it) and releases the lock.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	if !db.readOnly {
		close(db.reqs)
	}
	db.mu.Unlock()
	if db.readOnly {
		db.readerStmts.close()
		return db.readers.Close()
	}
	<-db.stopped
	db.readerStmts.close()
	db.writerStmts.close()
	err := db.readers.Close()
	if werr := db.writer.Close(); err == nil {
		err = werr
	}
	unlockFile(db.lock)
	if err != nil {
		return fmt.Errorf("sqlstore: close %s: %w", db.path, err)
	}
	return nil
}
