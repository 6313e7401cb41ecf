package board

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"pkiboard/internal/durable"
	"pkiboard/internal/store"
	"pkiboard/session"
	"pkiboard/wire"
)

// Layout of a board's data directory.
const (
	dbFile        = "board.db"
	contentDir    = "submissions"
	partialDir    = "partial"
	bucketSubs    = "submissions"
	contentSuffix = ".dat"
)

// Record is one stored submission: what the board received, from whom, and the
// evidence of it.
type Record struct {
	ID           string    `json:"id"`
	SID          string    `json:"sid"`
	Serial       []byte    `json:"serial"` // the student certificate's serial
	Name         string    `json:"name"`
	Size         int64     `json:"size"`
	SHA256       [32]byte  `json:"sha256"`
	Suite        string    `json:"suite"`
	Peer         string    `json:"peer"`
	Received     time.Time `json:"received"`
	File         string    `json:"file"` // content file name in the submissions directory
	Resumed      int64     `json:"resumed,omitempty"`
	StudentChain [][]byte  `json:"student_chain"` // DER, the student's certificate first
	Transcript   [32]byte  `json:"transcript"`    // TH of the session that completed it
	Signature    []byte    `json:"signature"`     // the student's SubmitEnd signature
}

// Store is a board's submission store. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	db      *store.DB
	content *dirSyncer       // the submissions directory's entries
	now     func() time.Time // the clock of Record.Received
}

// Open opens (creating if needed) the store in dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, contentDir), filepath.Join(dir, partialDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("board: %w", err)
		}
	}
	db, err := store.Open(filepath.Join(dir, dbFile), store.Options{}, bucketSubs)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return &Store{dir: dir, db: db, content: newDirSyncer(filepath.Join(dir, contentDir), nil), now: time.Now}, nil
}

// Close closes the store.
func (s *Store) Close() error {
	s.content.close()
	return s.db.Close()
}

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
// store's Receivers) and checked durable and listed, with its evidence: the
// record holds the file's name, size and SHA-256, the offset its upload
// resumed from, the session's SID, suite and transcript hash, the student's
// chain (its certificate's serial apart) and signature, the peer's address
// (which the session does not know), and the time of the commit, to the
// millisecond, in UTC.
//
// Commit puts the content into the submissions directory under a fresh random
// name (a partial file renamed, or a small one written, fsynced and renamed),
// fsyncs the directory (one fsync shared by the commits under way), and then
// commits the index entry, whose id it assigns (one transaction shared
// likewise). Only when Commit returns is the submission durable; a crash before
// that leaves at most an unreferenced content file, which Open's caller may
// remove with RemoveOrphans. If Commit fails, the upload is discarded: its
// content and partial file are deleted.
func (s *Store) Commit(sub *session.Submission, peer string) (*Record, error) {
	up := sub.File
	if len(sub.Chain) == 0 {
		up.Sink.Abort(false)
		return nil, fmt.Errorf("board: the submission of %s carries no student certificate", sub.SID)
	}
	rec := newRecord(sub, peer, s.now())
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	rec.File = hex.EncodeToString(nonce[:]) + contentSuffix
	dst := filepath.Join(s.dir, contentDir, rec.File)
	if err := place(up, dst); err != nil {
		discard(up, dst)
		return nil, fmt.Errorf("board: store content of %s: %w", rec.SID, err)
	}
	if err := s.content.syncNow(); err != nil {
		discard(up, dst)
		return nil, fmt.Errorf("board: store content of %s: %w", rec.SID, err)
	}
	var out Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSubs))
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		r := rec
		r.ID = recordID(seq)
		val, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), val); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		discard(up, dst)
		return nil, fmt.Errorf("board: index submission of %s: %w", rec.SID, err)
	}
	return &out, nil
}

// newRecord returns the record of sub, from peer, received at now; its ID and
// File are left for Commit to assign.
func newRecord(sub *session.Submission, peer string, now time.Time) Record {
	in := sub.File
	chain := make([][]byte, len(sub.Chain))
	for i, c := range sub.Chain {
		chain[i] = c.Raw
	}
	return Record{
		SID:          sub.SID,
		Serial:       sub.Chain[0].SerialNumber.Bytes(),
		Name:         in.Name,
		Size:         in.Size,
		SHA256:       in.SHA256,
		Suite:        session.SuiteName(sub.Suite),
		Peer:         peer,
		Received:     now.UTC().Truncate(time.Millisecond),
		Resumed:      in.ResumedFrom,
		StudentChain: chain,
		Transcript:   sub.TranscriptHash,
		Signature:    sub.Signature,
	}
}

// List returns every stored submission, oldest first.
func (s *Store) List() ([]Record, error) {
	var recs []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketSubs)).ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			recs = append(recs, r)
			return nil
		})
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
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || recordID(seq) != id {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var r Record
	found := false
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketSubs)).Get(binary.BigEndian.AppendUint64(nil, seq))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return nil, fmt.Errorf("board: get %s: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return &r, nil
}

// recordID is the id of the submission with index key seq: at least six
// decimal digits.
func recordID(seq uint64) string { return fmt.Sprintf("%06d", seq) }

// ContentPath returns where a stored submission's content is.
func (s *Store) ContentPath(r *Record) string {
	return filepath.Join(s.dir, contentDir, filepath.Base(r.File))
}

// RemoveOrphans deletes content files no index entry refers to — left by a
// crash between storing the content and committing its entry — and returns how
// many it removed. Call it only while no submission is being committed.
func (s *Store) RemoveOrphans() (int, error) {
	recs, err := s.List()
	if err != nil {
		return 0, err
	}
	known := make(map[string]bool, len(recs))
	for _, r := range recs {
		known[r.File] = true
	}
	dir := filepath.Join(s.dir, contentDir)
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
