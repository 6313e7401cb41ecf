package board

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pkiboard/internal/durable"
	"pkiboard/internal/sqlstore"
	"pkiboard/session"
	"pkiboard/wire"
)

// Layout of a board's data directory.
const (
	// DBFile is the board's database, in its data directory.
	DBFile = "board.db"
	// ContentDir is the directory, in the data directory, of the stored
	// submissions' content files.
	ContentDir    = "submissions"
	partialDir    = "partial"
	contentSuffix = ".dat"
)

// receivedLayout is how the database writes a submission's time of receipt:
// RFC 3339 in UTC with milliseconds, so that string order is time order and
// sqlite3's date functions read it.
const receivedLayout = "2006-01-02T15:04:05.000Z"

// migrations is the board database's schema, version by version (see the
// package comment).
var migrations = []sqlstore.Migration{
	{Name: "the submissions table", SQL: schemaV1},
	{Name: "assignments, versions and lateness (protocol version 3)", SQL: schemaV2},
	{Name: "the course's extensions, active versions and audit", SQL: schemaCourse},
	{Name: "the audit takes the console's actions", SQL: schemaConsoleAudit},
	{Name: "the suite aes-256-gcm (protocol version 4)", SQL: schemaSuiteGCM},
}

// schemaSuiteGCM is migration 5, for protocol version 4: a submission's
// suite may be aes-256-gcm. SQLite cannot change a CHECK constraint in
// place, so the table is rebuilt with the columns of migrations 1 and 2, in
// their order, and its indexes made again.
const schemaSuiteGCM = `
CREATE TABLE submissions_v5 (
	seq                 INTEGER PRIMARY KEY CHECK (seq > 0),
	id                  TEXT    NOT NULL UNIQUE CHECK (id = printf('%06d', seq)),
	sid                 TEXT    NOT NULL CHECK (length(CAST(sid AS BLOB)) BETWEEN 1 AND 255),
	serial              TEXT    NOT NULL CHECK (length(serial) BETWEEN 2 AND 40 AND length(serial) % 2 = 0 AND serial NOT GLOB '*[^0-9a-f]*'),
	name                TEXT    NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 255),
	size                INTEGER NOT NULL CHECK (size >= 0),
	sha256              TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
	suite               TEXT    NOT NULL CHECK (suite IN ('aes-256-gcm', 'aes-256-ctr-hmac-sha256', 'rc4-hmac-sha256')),
	received            TEXT    NOT NULL CHECK (received GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	peer                TEXT,
	resumed             INTEGER NOT NULL DEFAULT 0 CHECK (resumed BETWEEN 0 AND size),
	file                TEXT    NOT NULL UNIQUE CHECK (file = id || '.dat'),
	student_certificate BLOB    NOT NULL CHECK (length(student_certificate) > 0),
	transcript          BLOB    NOT NULL CHECK (length(transcript) = 32),
	statement           BLOB    NOT NULL CHECK (length(statement) > 0),
	signature           BLOB    NOT NULL CHECK (length(signature) > 0),
	board_certificate   BLOB    NOT NULL CHECK (length(board_certificate) > 0),
	receipt             BLOB    NOT NULL CHECK (length(receipt) > 0),
	assignment          TEXT    NOT NULL DEFAULT 'lab' CHECK (length(CAST(assignment AS BLOB)) BETWEEN 1 AND 64),
	original            TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(original AS BLOB)) <= 1024),
	version             INTEGER NOT NULL DEFAULT 0 CHECK (version BETWEEN 0 AND 4294967295),
	due                 INTEGER NOT NULL DEFAULT 0 CHECK (due >= 0),
	lock                INTEGER NOT NULL DEFAULT 0 CHECK (lock >= 0),
	late_ms             INTEGER NOT NULL DEFAULT 0 CHECK (late_ms >= 0),
	extended            INTEGER NOT NULL DEFAULT 0 CHECK (extended IN (0, 1)),
	terms               BLOB,
	receipt_version     INTEGER NOT NULL DEFAULT 2 CHECK (receipt_version IN (2, 3))
) STRICT;
INSERT INTO submissions_v5 SELECT * FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_v5 RENAME TO submissions;
CREATE INDEX submissions_sid ON submissions (sid, received);
CREATE UNIQUE INDEX submissions_version ON submissions (assignment, sid, version);
`

// schemaV1 is migration 1: the submissions table. It is a STRICT table, so
// that SQLite refuses a value of the wrong type as it refuses one the CHECK
// constraints rule out.
const schemaV1 = `
CREATE TABLE submissions (
	seq                 INTEGER PRIMARY KEY CHECK (seq > 0),
	id                  TEXT    NOT NULL UNIQUE CHECK (id = printf('%06d', seq)),
	sid                 TEXT    NOT NULL CHECK (length(CAST(sid AS BLOB)) BETWEEN 1 AND 255),
	serial              TEXT    NOT NULL CHECK (length(serial) BETWEEN 2 AND 40 AND length(serial) % 2 = 0 AND serial NOT GLOB '*[^0-9a-f]*'),
	name                TEXT    NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 255),
	size                INTEGER NOT NULL CHECK (size >= 0),
	sha256              TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
	suite               TEXT    NOT NULL CHECK (suite IN ('aes-256-ctr-hmac-sha256', 'rc4-hmac-sha256')),
	received            TEXT    NOT NULL CHECK (received GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	peer                TEXT,
	resumed             INTEGER NOT NULL DEFAULT 0 CHECK (resumed BETWEEN 0 AND size),
	file                TEXT    NOT NULL UNIQUE CHECK (file = id || '.dat'),
	student_certificate BLOB    NOT NULL CHECK (length(student_certificate) > 0),
	transcript          BLOB    NOT NULL CHECK (length(transcript) = 32),
	statement           BLOB    NOT NULL CHECK (length(statement) > 0),
	signature           BLOB    NOT NULL CHECK (length(signature) > 0),
	board_certificate   BLOB    NOT NULL CHECK (length(board_certificate) > 0),
	receipt             BLOB    NOT NULL CHECK (length(receipt) > 0)
) STRICT;
CREATE INDEX submissions_sid ON submissions (sid, received);
`

// schemaV2 is migration 2, for protocol version 3: each submission is to an
// assignment, under its original name, numbered as the student's version of
// it, with the terms announced (their body exactly as sent), the due and lock
// times that applied, and how late it was received. The rows of version 1 are
// the lab's: assignment 'lab', original = name, versions in the order of seq
// per SID, no times; their receipts stay the bytes of version 2, and
// receipt_version says which layout each receipt has.
const schemaV2 = `
ALTER TABLE submissions ADD COLUMN assignment TEXT NOT NULL DEFAULT 'lab' CHECK (length(CAST(assignment AS BLOB)) BETWEEN 1 AND 64);
ALTER TABLE submissions ADD COLUMN original TEXT NOT NULL DEFAULT '' CHECK (length(CAST(original AS BLOB)) <= 1024);
ALTER TABLE submissions ADD COLUMN version INTEGER NOT NULL DEFAULT 0 CHECK (version BETWEEN 0 AND 4294967295);
ALTER TABLE submissions ADD COLUMN due INTEGER NOT NULL DEFAULT 0 CHECK (due >= 0);
ALTER TABLE submissions ADD COLUMN lock INTEGER NOT NULL DEFAULT 0 CHECK (lock >= 0);
ALTER TABLE submissions ADD COLUMN late_ms INTEGER NOT NULL DEFAULT 0 CHECK (late_ms >= 0);
ALTER TABLE submissions ADD COLUMN extended INTEGER NOT NULL DEFAULT 0 CHECK (extended IN (0, 1));
ALTER TABLE submissions ADD COLUMN terms BLOB;
ALTER TABLE submissions ADD COLUMN receipt_version INTEGER NOT NULL DEFAULT 2 CHECK (receipt_version IN (2, 3));
UPDATE submissions SET original = name,
	version = (SELECT count(*) FROM submissions AS s WHERE s.sid = submissions.sid AND s.seq <= submissions.seq);
CREATE UNIQUE INDEX submissions_version ON submissions (assignment, sid, version);
`

// columns are the submissions table's columns, in the order scanRecord reads
// them.
const columns = `id, sid, serial, name, size, sha256, suite, received, peer, resumed, file,
	student_certificate, transcript, statement, signature, board_certificate, receipt,
	assignment, original, version, due, lock, late_ms, extended, terms, receipt_version`

// Record is one stored submission: what the board received, from whom, the
// evidence of it, and the receipt the board signed for it — a row of the
// submissions table.
type Record struct {
	ID                 string
	SID                string
	Serial             []byte // the student certificate's serial
	Name               string
	Size               int64
	SHA256             [32]byte
	Suite              string
	Peer               string
	Received           time.Time // to the millisecond, in UTC: the receipt's
	File               string    // content file name in the submissions directory
	Resumed            int64
	StudentCertificate []byte   // DER
	Transcript         [32]byte // TH of the session that completed it
	Statement          []byte   // what the student signed
	Signature          []byte   // the student's SubmitEnd signature over Statement
	BoardCertificate   []byte   // DER of the board certificate that signed the receipt
	Receipt            []byte   // the Receipt message's body, exactly as signed and sent

	Assignment string // the assignment's id ("lab" for a submission of version 2)
	Original   string // the file's own base name as the student had it
	Version    uint32 // the student's version of the assignment, from 1
	Due        uint64 // the due time that applied, ms since the Unix epoch, or 0
	Lock       uint64 // the lock time that applied, or 0
	LateMS     uint64 // how late it was received, in milliseconds
	Extended   bool   // an extension applied
	Terms      []byte // the Terms body as the board sent it (nil for version 2)
	// ReceiptVersion is the protocol version of Receipt's layout and
	// signature: wire.ReceiptVersion3, or wire.ReceiptVersion2 for a
	// submission stored before version 3.
	ReceiptVersion uint16
}

// ReceiptMessage decodes the stored receipt of version 3: the message the
// board sent the student. A receipt of version 2 is ReceiptV2Message's.
func (r *Record) ReceiptMessage() (*wire.Receipt, error) {
	if r.ReceiptVersion != wire.ReceiptVersion3 {
		return nil, fmt.Errorf("board: the stored receipt of %s is of protocol version %d, not 3", r.ID, r.ReceiptVersion)
	}
	receipt := new(wire.Receipt)
	if err := wire.UnmarshalBodyOf(receipt, r.Receipt); err != nil {
		return nil, fmt.Errorf("board: the stored receipt of %s: %w", r.ID, err)
	}
	return receipt, nil
}

// ReceiptV2Message decodes a stored receipt of version 2.
func (r *Record) ReceiptV2Message() (*wire.ReceiptV2, error) {
	if r.ReceiptVersion != wire.ReceiptVersion2 {
		return nil, fmt.Errorf("board: the stored receipt of %s is of protocol version %d, not 2", r.ID, r.ReceiptVersion)
	}
	receipt := new(wire.ReceiptV2)
	if err := wire.UnmarshalBodyOf(receipt, r.Receipt); err != nil {
		return nil, fmt.Errorf("board: the stored receipt of %s: %w", r.ID, err)
	}
	return receipt, nil
}

// Store is a board's submission store. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	db      *sqlstore.DB
	content *dirSyncer       // the submissions directory's entries; nil when read-only
	now     func() time.Time // the clock of Record.Received
	// last is the seq of the last id handed out: the next Commit takes the
	// one after. Only the process that holds the database's lock assigns
	// ids, so an id it hands out was never committed before; one whose
	// commit fails or is cut short by a crash is never reused while the
	// process runs, and after a restart only if nothing was stored under it
	// (its receipt was never sent).
	last atomic.Uint64

	// versions serializes the commits of one student to one assignment,
	// which number her versions; others run concurrently.
	versions keyedMutex
	// tallies holds, per (assignment, SID), what Commit needs to number
	// the next version, exact while that pair's lock in versions is held.
	tallies tallyCache
	// admit, if set, checks under that lock that one more submission fits
	// the assignment's versions and quota (Course.Admit).
	admit atomic.Pointer[func(assignment string, versions int, stored, size int64) error]
}

// ErrBoltStore is the refusal of a board.db written by a pkiboard that kept
// the board's index in bbolt.
var ErrBoltStore = errors.New("board: board.db is a bbolt database")

// Open opens (creating if needed) the store in dir, and brings its database
// to the current schema. It holds the database's lock until Close: a second
// Open of the same directory, in this process or another, fails.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, ContentDir), filepath.Join(dir, partialDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("board: %w", err)
		}
	}
	path := filepath.Join(dir, DBFile)
	if err := refuseBolt(path); err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(path, sqlstore.Options{Migrations: migrations, Prepared: []string{insertSQL}})
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	s := &Store{dir: dir, db: db, now: time.Now}
	var last int64
	if err := db.View(func(tx *sql.Tx) error {
		return tx.QueryRow("SELECT coalesce(max(seq), 0) FROM submissions").Scan(&last)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("board: %w", err)
	}
	s.last.Store(uint64(last))
	s.content = newDirSyncer(filepath.Join(dir, ContentDir), nil)
	return s, nil
}

// OpenReadOnly opens the store in dir for reading, while the board may be
// running: List, Get, Verify and Backup work, Commit fails. It takes no lock
// and creates nothing but what SQLite needs to read a database in WAL mode
// (its -shm file, if the board is not running).
func OpenReadOnly(dir string) (*Store, error) {
	path := filepath.Join(dir, DBFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("board: %s does not exist: the board has not run with board.data_dir %s yet (or board.data_dir is not the board's)", path, dir)
	}
	if err := refuseBolt(path); err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(path, sqlstore.Options{Migrations: migrations, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return &Store{dir: dir, db: db, now: time.Now}, nil
}

// refuseBolt refuses a board.db that bbolt wrote: the board's index was kept
// in bbolt before it moved to SQLite, and no deployment of that store is
// left to migrate.
func refuseBolt(path string) error {
	old, err := sqlstore.IsBbolt(path)
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	if !old {
		return nil
	}
	return fmt.Errorf("%w: %s was written by an older pkiboard, which kept the board's index in bbolt; this one keeps it in SQLite and does not read bbolt files (there were no deployments to migrate): move it aside (mv %s %s.bbolt) and start the board afresh, or run the pkiboard that wrote it",
		ErrBoltStore, path, path, path)
}

// Close closes the store.
func (s *Store) Close() error {
	if s.content != nil {
		s.content.close()
	}
	return s.db.Close()
}

// Checked says how Open checked board.db (which check ran, and why), for the
// start log line.
func (s *Store) Checked() sqlstore.Checked { return s.db.Checked() }

// Backup writes a consistent copy of the store's database to dst (a file
// that must not exist), while the board may be committing: see
// [sqlstore.DB.Backup]. The content files are not copied.
func (s *Store) Backup(ctx context.Context, dst string) error {
	if err := s.db.Backup(ctx, dst); err != nil {
		return fmt.Errorf("board: %w", err)
	}
	return nil
}

// DatabaseStats returns the counters of the database's group committer.
func (s *Store) DatabaseStats() sqlstore.Stats { return s.db.Stats() }

// InMemoryMax is the largest submission a Receiver holds in memory rather than
// in a partial file: small enough that resuming it would gain nothing.
const InMemoryMax = 64 << 10

// UploadLimits bound what one SID's uploads may hold.
type UploadLimits struct {
	// MaxSize is the largest file accepted, in bytes (required).
	MaxSize int64
	// PartialQuota is the most bytes the SID's interrupted uploads (partial
	// files) may hold together, the new one counted at its full size; an
	// upload that would pass it is refused file-too-large. 0 is no quota.
	PartialQuota int64
}

// Receiver returns the file receiver for one SID's upload. A file of up to
// InMemoryMax bytes is received into a wire.Memory; a larger one into a
// partial file, checkpointed every DefaultCheckpointEvery bytes, in a
// directory of that SID's own (named by the SID's hex encoding, never by the
// SID itself), so an interrupted upload resumes only for the same SID. While
// one connection receives a file, another that sends the same file (name,
// size and SHA-256) for the same SID is refused busy.
func (s *Store) Receiver(sid string, l UploadLimits) *wire.Receiver {
	p := s.partials(sid)
	p.quota = l.PartialQuota
	return p.receiver(l.MaxSize)
}

// partials returns where sid's uploads are received.
func (s *Store) partials(sid string) *partials {
	return &partials{dir: filepath.Join(s.dir, partialDir, hex.EncodeToString([]byte(sid))), inMemory: InMemoryMax}
}

// PartialUsage returns what the interrupted uploads of every SID hold now.
func (s *Store) PartialUsage() (PartialUsage, error) {
	return partialUsage(filepath.Join(s.dir, partialDir))
}

// ExpirePartials removes the interrupted uploads last written more than ttl
// ago (their partial files, checkpoints and temporary files), except those
// being received, and returns what they held. A student who sends such a
// file again starts from 0.
func (s *Store) ExpirePartials(ttl time.Duration) (PartialUsage, error) {
	return expirePartials(filepath.Join(s.dir, partialDir), s.now().Add(-ttl))
}

// Commit makes a submission that a session received (into one of this
// store's Receivers) and checked durable and listed, with its evidence and its
// receipt: the record holds the assignment, the file's original name, name,
// size and SHA-256, the offset its upload resumed from, the session's SID,
// suite and transcript hash, the student's certificate (its serial apart),
// statement and signature, the terms announced (their body as sent), the due
// and lock times that applied, the instant it was received (sub.Received,
// PROTOCOL.md §5.4) and how late that was, the peer's address (which the
// session does not know), and the receipt.
//
// Commit numbers the submission: under a lock of the (assignment, SID) pair —
// the commits of one student to one assignment serialize, all others run
// concurrently — it takes the next version after the highest stored, signs
// the receipt, commits, and releases the lock, so that versions have no gaps.
// It assigns the id (the next in sequence), builds the receipt and has sign
// sign it (session.Conn.SignReceipt: it sets BoardCertSHA256 and Signature,
// for the board certificate of the session, sub.Board). It puts the content
// into the submissions directory under <id>.dat (a partial file renamed, or a
// small one written, fsynced and renamed), fsyncs the directory (one fsync
// shared by the commits under way), and then commits the row, with the
// receipt's bytes, in one durable transaction (shared likewise). Only when
// Commit returns is the submission durable, and only then may the receipt
// (Record.ReceiptMessage) be sent: a crash before that leaves at most a gap in
// the ids and an unreferenced content file, which Open's caller may remove
// with RemoveOrphans, never a sent receipt that is not stored. If Commit
// fails, the upload is discarded: its content and partial file are deleted.
func (s *Store) Commit(sub *session.Submission, peer string, sign func(*wire.Receipt) error) (*Record, error) {
	up := sub.File
	fail := func(dst string, format string, args ...any) (*Record, error) {
		discard(up, dst)
		return nil, fmt.Errorf(format, args...)
	}
	switch {
	case s.content == nil:
		return fail("", "board: the store is open read-only")
	case len(sub.Chain) == 0:
		return fail("", "board: the submission of %s carries no student certificate", sub.SID)
	case sub.Board == nil:
		return fail("", "board: the submission of %s carries no board certificate to sign its receipt", sub.SID)
	case sub.Terms == nil || sub.Request == nil:
		return fail("", "board: the submission of %s carries no request or terms", sub.SID)
	}
	rec := newRecord(sub, peer)
	key := rec.Assignment + "\x00" + rec.SID
	unlock := s.versions.lock(key)
	defer unlock()
	t, err := s.tally(key, rec.Assignment, rec.SID)
	if err != nil {
		return fail("", "board: number the submission of %s: %w", rec.SID, err)
	}
	last, count, stored := t.last, t.count, t.stored
	if admit := s.admit.Load(); admit != nil {
		if err := (*admit)(rec.Assignment, int(count), stored, rec.Size); err != nil {
			return fail("", "board: the submission of %s to %q: %w", rec.SID, rec.Assignment, err)
		}
	}
	if last >= 1<<32-1 {
		return fail("", "board: the submission of %s to %q would be version %d", rec.SID, rec.Assignment, last+1)
	}
	rec.Version = uint32(last + 1)
	rec.ID = recordID(s.last.Add(1))
	rec.File = rec.ID + contentSuffix
	receipt := &wire.Receipt{
		ID: rec.ID, SID: rec.SID, Serial: rec.Serial, Assignment: rec.Assignment, Original: rec.Original,
		Name: rec.Name, Size: uint64(rec.Size), SHA256: rec.SHA256, Received: uint64(rec.Received.UnixMilli()),
		Due: rec.Due, Late: rec.LateMS, Version: rec.Version,
	}
	if err := sign(receipt); err != nil {
		return fail("", "board: sign the receipt of %s: %w", rec.SID, err)
	}
	if receipt.BoardCertSHA256 != sha256.Sum256(rec.BoardCertificate) || len(receipt.Signature) == 0 {
		return fail("", "board: the receipt of %s was not signed with the board certificate of its session", rec.SID)
	}
	msg, err := wire.Marshal(receipt)
	if err != nil {
		return fail("", "board: encode the receipt of %s: %w", rec.SID, err)
	}
	rec.Receipt = msg[1:] // the body, without the type byte
	dst := filepath.Join(s.dir, ContentDir, rec.File)
	if err := place(up, dst); err != nil {
		return fail(dst, "board: store content of %s: %w", rec.SID, err)
	}
	if err := s.content.syncNow(); err != nil {
		return fail(dst, "board: store content of %s: %w", rec.SID, err)
	}
	err = s.db.Update(func(tx *sql.Tx) error {
		_, err := sqlstore.Exec(tx, insertSQL, rec.seq(), rec.ID, rec.SID, hex.EncodeToString(rec.Serial), rec.Name, rec.Size,
			hex.EncodeToString(rec.SHA256[:]), rec.Suite, rec.Received.Format(receivedLayout),
			nullString(rec.Peer), rec.Resumed, rec.File, rec.StudentCertificate, rec.Transcript[:],
			rec.Statement, rec.Signature, rec.BoardCertificate, rec.Receipt,
			rec.Assignment, rec.Original, int64(rec.Version), int64(rec.Due), int64(rec.Lock), int64(rec.LateMS),
			rec.Extended, rec.Terms, int64(rec.ReceiptVersion))
		return err
	})
	if err != nil {
		// The row may or may not be stored: the next commit asks the database.
		s.tallies.forget(key)
		return fail(dst, "board: index submission of %s: %w", rec.SID, err)
	}
	s.tallies.put(key, tally{last: int64(rec.Version), count: count + 1, stored: stored + rec.Size})
	return &rec, nil
}

// tally is what one student has stored to one assignment: how many
// submissions, the highest version among them, and their bytes.
type tally struct{ count, last, stored int64 }

// maxTallies bounds tallyCache; when it is full it starts afresh.
const maxTallies = 1 << 16

// tallyCache remembers the tally of each (assignment, SID) pair that Commit
// has read or written, so that a student's next commit numbers her version
// without reading her earlier rows (a scan that grows with her versions).
// Only Commit adds rows, under the pair's lock in versions, and it updates
// the pair's entry under the same lock, so an entry is exact whenever that
// lock is held; a commit whose outcome is unknown removes the entry.
type tallyCache struct {
	sync.Mutex
	m map[string]tally
}

func (c *tallyCache) get(key string) (tally, bool) {
	c.Lock()
	defer c.Unlock()
	t, ok := c.m[key]
	return t, ok
}

func (c *tallyCache) put(key string, t tally) {
	c.Lock()
	defer c.Unlock()
	if c.m == nil || len(c.m) >= maxTallies {
		c.m = make(map[string]tally)
	}
	c.m[key] = t
}

func (c *tallyCache) forget(key string) {
	c.Lock()
	defer c.Unlock()
	delete(c.m, key)
}

// tally returns the tally of sid's submissions to assignment, from
// s.tallies or else the database. The caller holds the pair's lock in
// s.versions.
func (s *Store) tally(key, assignment, sid string) (tally, error) {
	if t, ok := s.tallies.get(key); ok {
		return t, nil
	}
	var t tally
	err := s.db.View(func(tx *sql.Tx) error {
		return tx.QueryRow("SELECT coalesce(max(version), 0), count(*), coalesce(sum(size), 0) FROM submissions WHERE assignment = ? AND sid = ?",
			assignment, sid).Scan(&t.last, &t.count, &t.stored)
	})
	if err != nil {
		return tally{}, err
	}
	s.tallies.put(key, t)
	return t, nil
}

// insertSQL adds a row to the submissions table (Commit's statement).
const insertSQL = `INSERT INTO submissions (seq, ` + columns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// keyedMutex is a set of mutexes by key, each held only while in use.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

// keyedLock is one key's mutex and how many hold or wait for it.
type keyedLock struct {
	sync.Mutex
	users int
}

// lock locks key's mutex and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// History returns the receipts stored for sid, of assignment (every
// assignment if it is ""), newest first, at most limit: each exactly as the
// board signed and sent it, with the protocol version it was signed under and
// the board certificate that signed it.
func (s *Store) History(sid, assignment string, limit int) ([]wire.HistoryItem, error) {
	var items []wire.HistoryItem
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT receipt_version, receipt, board_certificate FROM submissions
			WHERE sid = ? AND (? = '' OR assignment = ?) ORDER BY seq DESC LIMIT ?`, sid, assignment, assignment, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var it wire.HistoryItem
			var v int64
			if err := rows.Scan(&v, &it.Receipt, &it.Certificate); err != nil {
				return err
			}
			it.Version = uint16(v)
			items = append(items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("board: the history of %s: %w", sid, err)
	}
	return items, nil
}

// Usage returns how many submissions sid stored to assignment, the highest
// version among them (the latest, 0 for none), and their bytes.
func (s *Store) Usage(sid, assignment string) (count int, latest uint32, bytes int64, err error) {
	var top int64
	err = s.db.View(func(tx *sql.Tx) error {
		return tx.QueryRow(`SELECT count(*), coalesce(max(version), 0), coalesce(sum(size), 0) FROM submissions
			WHERE sid = ? AND assignment = ?`, sid, assignment).Scan(&count, &top, &bytes)
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("board: the submissions of %s to %q: %w", sid, assignment, err)
	}
	return count, uint32(top), bytes, nil
}

// nullString is s, or NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// seq returns the sequence number of the record's id.
func (r *Record) seq() int64 {
	n, _ := strconv.ParseInt(r.ID, 10, 64)
	return n
}

// newRecord returns the record of sub, from peer; its ID, File, Version and
// Receipt are left for Commit to assign.
func newRecord(sub *session.Submission, peer string) Record {
	in := sub.File
	return Record{
		Assignment:         sub.Terms.Assignment,
		Original:           sub.Original,
		Due:                sub.Terms.Due,
		Lock:               sub.Terms.Lock,
		LateMS:             sub.Late(),
		Extended:           sub.Terms.Extended,
		Terms:              sub.TermsBody,
		ReceiptVersion:     wire.ReceiptVersion3,
		SID:                sub.SID,
		Serial:             sub.Chain[0].SerialNumber.Bytes(),
		Name:               in.Name,
		Size:               in.Size,
		SHA256:             in.SHA256,
		Suite:              session.SuiteName(sub.Suite),
		Peer:               peer,
		Received:           sub.Received.UTC().Truncate(time.Millisecond),
		Resumed:            in.ResumedFrom,
		StudentCertificate: sub.Chain[0].Raw,
		Transcript:         sub.TranscriptHash,
		Statement:          sub.Statement,
		Signature:          sub.Signature,
		BoardCertificate:   sub.Board.Raw,
	}
}

// scanRecord reads a row of columns.
func scanRecord(row interface{ Scan(...any) error }) (Record, error) {
	var (
		r                     Record
		serial, sum, received string
		peer                  sql.NullString
		transcript            []byte
		version, due, lock    int64
		late, receiptVersion  int64
	)
	err := row.Scan(&r.ID, &r.SID, &serial, &r.Name, &r.Size, &sum, &r.Suite, &received, &peer, &r.Resumed, &r.File,
		&r.StudentCertificate, &transcript, &r.Statement, &r.Signature, &r.BoardCertificate, &r.Receipt,
		&r.Assignment, &r.Original, &version, &due, &lock, &late, &r.Extended, &r.Terms, &receiptVersion)
	if err != nil {
		return r, err
	}
	r.Version, r.Due, r.Lock, r.LateMS = uint32(version), uint64(due), uint64(lock), uint64(late)
	r.ReceiptVersion = uint16(receiptVersion)
	r.Peer = peer.String
	if r.Serial, err = hex.DecodeString(serial); err != nil {
		return r, fmt.Errorf("submission %s: serial %q: %w", r.ID, serial, err)
	}
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return r, fmt.Errorf("submission %s: sha256 %q is not 64 hex digits", r.ID, sum)
	} else {
		copy(r.SHA256[:], b)
	}
	if len(transcript) != 32 {
		return r, fmt.Errorf("submission %s: a transcript hash of %d bytes", r.ID, len(transcript))
	}
	copy(r.Transcript[:], transcript)
	if r.Received, err = time.Parse(receivedLayout, received); err != nil {
		return r, fmt.Errorf("submission %s: received: %w", r.ID, err)
	}
	return r, nil
}

// List returns every stored submission, oldest first.
func (s *Store) List() ([]Record, error) {
	var recs []Record
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query("SELECT " + columns + " FROM submissions ORDER BY seq")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("board: list: %w", err)
	}
	return recs, nil
}

// ErrNotFound is returned for an unknown submission id.
var ErrNotFound = errors.New("board: no such submission")

// Get returns the submission with the given id.
func (s *Store) Get(id string) (*Record, error) {
	seq, err := strconv.ParseUint(id, 10, 63)
	if err != nil || recordID(seq) != id {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var r Record
	err = s.db.View(func(tx *sql.Tx) error {
		r, err = scanRecord(tx.QueryRow("SELECT "+columns+" FROM submissions WHERE seq = ?", int64(seq)))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("board: get %s: %w", id, err)
	}
	return &r, nil
}

// recordID is the id of the submission with sequence number seq: at least
// six decimal digits.
func recordID(seq uint64) string { return fmt.Sprintf("%06d", seq) }

// CanonicalID returns the receipt id that id names as a person may type it:
// "3" and "000003" are both "000003". Anything else is returned unchanged
// (and found by no Get).
func CanonicalID(id string) string {
	if seq, err := strconv.ParseUint(id, 10, 63); err == nil {
		return recordID(seq)
	}
	return id
}

// ContentPath returns where a stored submission's content is.
func (s *Store) ContentPath(r *Record) string {
	return filepath.Join(s.dir, ContentDir, filepath.Base(r.File))
}

// RemoveOrphans deletes content files no index entry refers to — left by a
// crash between storing the content and committing its entry — and returns how
// many it removed. Call it only while no submission is being committed.
func (s *Store) RemoveOrphans() (int, error) {
	if s.content == nil {
		return 0, errors.New("board: the store is open read-only")
	}
	known := map[string]bool{}
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query("SELECT file FROM submissions")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var f string
			if err := rows.Scan(&f); err != nil {
				return err
			}
			known[f] = true
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("board: %w", err)
	}
	dir := filepath.Join(s.dir, ContentDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("board: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), contentSuffix) || known[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return n, fmt.Errorf("board: %w", err)
		}
		n++
	}
	if n > 0 {
		if err := durable.SyncDir(dir); err != nil {
			return n, err
		}
	}
	return n, nil
}
