package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"pkiboard/internal/keys"
)

// File modes of what a Receiver creates.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// Partial transfers live in the Receiver's PartialDir as two files named after
// the validated name and the announced SHA-256, both hidden (valid names never
// begin with '.'):
//
//	.<sha256 hex>.<name>.part   the bytes received so far
//	.<sha256 hex>.<name>.ckpt   the checkpoint: the size and the fsynced offset
const (
	partSuffix       = ".part"
	checkpointSuffix = ".ckpt"
	checkpointFormat = "pkiboard partial v1 size=%d offset=%d\n"
)

// Receiver receives files as the receiver of PROTOCOL.md §3, keeping interrupted
// transfers so that they can resume.
type Receiver struct {
	// PartialDir is the directory of partial files and their checkpoints; it is
	// created (mode 0700) if needed. It must be on the same file system as the
	// files' final places, for Incoming.CommitTo to rename them. Required.
	PartialDir string

	// MaxSize is the largest file accepted, in bytes: a larger one is answered
	// file-too-large. Required: every receiver bounds what it stores.
	MaxSize int64

	// CheckpointEvery is the number of bytes between two checkpoints;
	// DefaultCheckpointEvery if zero or negative or above it.
	CheckpointEvery int64

	// InMemory is the size up to which a file is received into memory rather
	// than into a partial file (0: never). Such a file cannot resume — it is
	// small enough to send again — and costs no partial file: no creation,
	// checkpoint lookup or removal, and no fsync until Incoming.Place or
	// CommitTo writes it to its final place.
	InMemory int64

	// Allow, if set, is called with each announced name once it has passed
	// ValidName; a non-nil error refuses the file. A *Refusal is answered
	// with its code and text; any other error with bad-file-name.
	Allow func(name string) error

	// openFile opens a partial file; os.OpenFile if nil. Tests replace it to
	// simulate failing disks.
	openFile func(path string) (partialFile, error)
}

// partialFile is the part of *os.File a Receiver uses for partial files.
type partialFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Stat() (fs.FileInfo, error)
	Close() error
}

// Incoming is a file received in full and verified, still in its partial place
// (or in memory, see Receiver.InMemory): the caller either commits it to its
// final place or discards it.
type Incoming struct {
	Name        string            // the validated name from the FileHeader
	Size        int64             // the file's size
	SHA256      [sha256.Size]byte // the file's verified SHA-256
	ResumedFrom int64             // the offset this transfer resumed from

	path       string // where the file is now; "" while it is in memory
	data       []byte // the file, while it is in memory
	checkpoint string // its checkpoint file, while it has one
}

// Path returns where the file is now: its partial file until it is placed,
// then its destination; "" while it is held in memory.
func (in *Incoming) Path() string { return in.path }

// Data returns the file's content while it is held in memory, else nil.
func (in *Incoming) Data() []byte { return in.data }

// CommitTo moves the file to dst (Place), then fsyncs dst's directory so that
// the new name is durable.
func (in *Incoming) CommitTo(dst string) error {
	if err := in.Place(dst); err != nil {
		return err
	}
	if err := keys.SyncDir(filepath.Dir(dst)); err != nil {
		return storageError(in.Name, err)
	}
	return nil
}

// Place puts the file at dst, replacing any file there, with its content
// durable but not yet its name: the caller fsyncs dst's directory (CommitTo
// does), which lets many files share that fsync. A partial file is renamed (dst
// must be on the same file system) and its checkpoint removed; a file held in
// memory is written to a temporary file beside dst, fsynced and renamed.
func (in *Incoming) Place(dst string) error {
	if in.path == "" {
		if err := keys.WriteFileDurable(dst, in.data, fileMode); err != nil {
			return storageError(in.Name, err)
		}
		in.path, in.data = dst, nil
		return nil
	}
	if err := os.Rename(in.path, dst); err != nil {
		return storageError(in.Name, err)
	}
	in.path = dst
	return in.removeCheckpoint()
}

// Discard deletes the file (wherever it is now) and its checkpoint.
func (in *Incoming) Discard() error {
	if in.path == "" {
		in.data = nil
		return nil
	}
	err := os.Remove(in.path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, in.removeCheckpoint())
}

func (in *Incoming) removeCheckpoint() error {
	if in.checkpoint == "" {
		return nil
	}
	if err := os.Remove(in.checkpoint); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wire: removing checkpoint of %q: %w", in.Name, err)
	}
	in.checkpoint = ""
	return nil
}

// ReceiveFileInto receives one file with r (whose PartialDir defaults to dir),
// commits it to filepath.Join(dir, name), replacing any file of that name, and
// answers FileAck. dir is created (mode 0700) if needed; a failure to commit is
// answered storage and leaves the partial transfer in place for a retry. If only the FileAck could not be sent, it returns both the
// committed file and the error.
func ReceiveFileInto(rw MessageReadWriter, dir string, r Receiver) (*Incoming, error) {
	if r.PartialDir == "" {
		r.PartialDir = dir
	}
	in, err := r.Receive(rw)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		err = storageError(in.Name, err)
		_ = Answer(rw, err)
		return nil, err
	}
	if err := in.CommitTo(filepath.Join(dir, in.Name)); err != nil {
		_ = Answer(rw, err)
		return nil, err
	}
	if err := rw.WriteMessage(new(FileAck)); err != nil {
		return in, err
	}
	return in, nil
}

// Receive receives one file: it reads a FileHeader and checks it (ValidName,
// Allow, MaxSize), answers FileOffset with the checkpoint of a partial transfer
// of the same name, size and SHA-256 (re-hashing the kept prefix, and cutting
// off whatever follows the checkpoint), receives the Data, checkpointing every
// CheckpointEvery bytes, and at the end verifies the SHA-256 and fsyncs the file.
//
// It does not send FileAck: the caller decides what acknowledges the file
// (FileAck once it is committed, or a higher-level message), or calls
// ReceiveFileInto.
//
// Each refusal is answered to the peer before Receive returns it, a *Refusal:
// bad-file-name, file-too-large, file-mismatch (the partial transfer is then
// deleted), storage (the partial transfer is kept, its checkpoint never beyond
// what was fsynced), busy (the same file is being received on another
// connection), unexpected-message.
// An *Error from the peer is returned as is. If the connection fails mid-way,
// what was received is fsynced and checkpointed, so that the next attempt
// resumes from there.
func (r *Receiver) Receive(rw MessageReadWriter) (*Incoming, error) {
	if r.PartialDir == "" {
		return nil, errors.New("wire: Receiver.PartialDir is not set")
	}
	if r.MaxSize <= 0 {
		return nil, errors.New("wire: Receiver.MaxSize is not set")
	}
	s := &receiveState{r: r, rw: rw, every: r.CheckpointEvery}
	if s.every <= 0 || s.every > DefaultCheckpointEvery {
		s.every = DefaultCheckpointEvery
	}
	return s.receive()
}

// receiveState is one file transfer, on the receiving side.
type receiveState struct {
	r     *Receiver
	rw    MessageReadWriter
	every int64

	hdr        *FileHeader
	size       int64
	part, ckpt string // partial file and checkpoint paths
	key        string // s.part made absolute, for inProgress
	f          partialFile
	hash       hash.Hash
	resumed    int64 // offset answered in FileOffset
	pos        int64 // bytes in the partial file
	synced     int64 // bytes fsynced and recorded in the checkpoint (owned by the checkpointer while it runs)
	requested  int64 // the last offset handed to the checkpointer
	bg         *checkpointer
}

// receive runs the steps of PROTOCOL.md §3 in order.
func (s *receiveState) receive() (*Incoming, error) {
	if err := s.readHeader(); err != nil {
		return nil, err
	}
	if err := s.checkHeader(); err != nil {
		return nil, err
	}
	if s.size <= s.r.InMemory {
		return s.receiveInMemory()
	}
	if err := s.claim(); err != nil {
		return nil, err
	}
	defer s.release()
	defer s.closeFile()
	defer s.stopCheckpointer()
	if err := s.openPartial(); err != nil {
		return nil, err
	}
	if err := s.rw.WriteMessage(&FileOffset{Offset: uint64(s.resumed)}); err != nil {
		return nil, err
	}
	if err := s.readData(); err != nil {
		return nil, err
	}
	if err := s.verify(); err != nil {
		return nil, err
	}
	if err := s.closeFile(); err != nil {
		return nil, s.storageFailure(err)
	}
	return &Incoming{
		Name:        s.hdr.Name,
		Size:        s.size,
		SHA256:      s.hdr.SHA256,
		ResumedFrom: s.resumed,
		path:        s.part,
		checkpoint:  s.ckpt,
	}, nil
}

// receiveInMemory receives a small file into memory (Receiver.InMemory).
func (s *receiveState) receiveInMemory() (*Incoming, error) {
	if err := s.rw.WriteMessage(&FileOffset{Offset: 0}); err != nil {
		return nil, err
	}
	data := make([]byte, 0, s.size)
	for int64(len(data)) < s.size {
		d, err := Expect[*Data](s.rw.ReadMessage())
		if err != nil {
			_ = Answer(s.rw, err)
			return nil, err
		}
		if int64(len(d.Bytes)) > s.size-int64(len(data)) {
			return nil, s.refuse(Refusef(CodeFileMismatch,
				"file %q: Data passes the announced size of %d bytes", s.hdr.Name, s.size))
		}
		data = append(data, d.Bytes...)
	}
	if sum := sha256.Sum256(data); sum != s.hdr.SHA256 {
		return nil, s.refuse(Refusef(CodeFileMismatch,
			"file %q: the received bytes have SHA-256 %x, the header announced %x", s.hdr.Name, sum, s.hdr.SHA256))
	}
	return &Incoming{Name: s.hdr.Name, Size: s.size, SHA256: s.hdr.SHA256, data: data}, nil
}

// refuse answers the peer with r, and returns it.
func (s *receiveState) refuse(r *Refusal) error {
	_ = Answer(s.rw, r)
	return r
}

func (s *receiveState) readHeader() error {
	h, err := Expect[*FileHeader](s.rw.ReadMessage())
	if err != nil {
		_ = Answer(s.rw, err)
		return err
	}
	s.hdr = h
	return nil
}

func (s *receiveState) checkHeader() error {
	h := s.hdr
	if err := ValidName(h.Name); err != nil {
		_ = Answer(s.rw, err)
		return err
	}
	if s.r.Allow != nil {
		if err := s.r.Allow(h.Name); err != nil {
			var r *Refusal
			if !errors.As(err, &r) {
				r = &Refusal{Code: CodeBadFileName, Text: fmt.Sprintf("file %q refused: %v", h.Name, err), Err: err}
			}
			return s.refuse(r)
		}
	}
	if h.Size > uint64(s.r.MaxSize) {
		return s.refuse(Refusef(CodeFileTooLarge, "file %q of %d bytes exceeds the limit of %d bytes", h.Name, h.Size, s.r.MaxSize))
	}
	s.size = int64(h.Size)
	base := filepath.Join(s.r.PartialDir, "."+hex.EncodeToString(h.SHA256[:])+"."+h.Name)
	s.part, s.ckpt = base+partSuffix, base+checkpointSuffix
	return nil
}

// inProgress holds the partial files being received in this process.
var inProgress = struct {
	sync.Mutex
	paths map[string]bool
}{paths: make(map[string]bool)}

// claim marks the partial file as being received, or refuses the transfer if
// another connection is receiving the same file.
func (s *receiveState) claim() error {
	s.key = s.part
	if abs, err := filepath.Abs(s.part); err == nil {
		s.key = abs
	}
	inProgress.Lock()
	defer inProgress.Unlock()
	if inProgress.paths[s.key] {
		return s.refuse(Refusef(CodeBusy, "a transfer of %q is already in progress; try again shortly", s.hdr.Name))
	}
	inProgress.paths[s.key] = true
	return nil
}

func (s *receiveState) release() {
	inProgress.Lock()
	defer inProgress.Unlock()
	delete(inProgress.paths, s.key)
}

// closeFile closes the partial file if it is open.
func (s *receiveState) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// openPartial opens the partial file and sets the resume offset: the checkpoint
// of an earlier transfer of the same file if the partial file holds that much,
// else 0. Bytes after the offset are cut off and the bytes before it re-hashed.
func (s *receiveState) openPartial() error {
	if err := os.MkdirAll(s.r.PartialDir, dirMode); err != nil {
		return s.storageFailure(err)
	}
	off, hadCheckpoint, err := readCheckpoint(s.ckpt, s.size)
	if err != nil {
		return s.storageFailure(err)
	}
	open := s.r.openFile
	if open == nil {
		open = openPartialFile
	}
	if s.f, err = open(s.part); err != nil {
		s.f = nil
		return s.storageFailure(err)
	}
	st, err := s.f.Stat()
	if err != nil {
		return s.storageFailure(err)
	}
	if st.Size() < off {
		off = 0 // the checkpoint claims more than the file holds: trust neither
	}
	if off == 0 && hadCheckpoint {
		// Forget the old checkpoint before writing, so that it never vouches for
		// bytes of this transfer that were not fsynced.
		if err := os.Remove(s.ckpt); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.storageFailure(err)
		}
	}
	if err := s.f.Truncate(off); err != nil {
		return s.storageFailure(err)
	}
	s.hash = sha256.New()
	if _, err := io.Copy(s.hash, io.NewSectionReader(s.f, 0, off)); err != nil {
		return s.storageFailure(err)
	}
	s.resumed, s.pos, s.synced, s.requested = off, off, off, off
	return nil
}

func openPartialFile(path string) (partialFile, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
}

// readData receives Data messages until the file is complete.
//
// The chunks are written and hashed as they arrive, in this goroutine. A
// variant that handed them to a writer goroutine, so that writing and hashing
// overlapped with reading and decrypting the next records, measured no faster
// (the sender and the receiver already share the machine's cores, and the
// hand-off costs a copy) and was removed.
func (s *receiveState) readData() error {
	for s.pos < s.size {
		d, err := Expect[*Data](s.rw.ReadMessage())
		if err != nil {
			_ = Answer(s.rw, err)
			s.saveProgress()
			return err
		}
		if int64(len(d.Bytes)) > s.size-s.pos {
			err := s.refuse(Refusef(CodeFileMismatch, "file %q: Data passes the announced size of %d bytes", s.hdr.Name, s.size))
			s.discard()
			return err
		}
		if err := s.write(d.Bytes); err != nil {
			s.saveProgress()
			return s.storageFailure(err)
		}
	}
	return nil
}

// write writes one chunk at s.pos, hashes it, and asks for a checkpoint when
// one is due.
func (s *receiveState) write(p []byte) error {
	if _, err := s.f.WriteAt(p, s.pos); err != nil {
		return err
	}
	s.hash.Write(p)
	s.pos += int64(len(p))
	if s.pos-s.requested >= s.every && s.pos < s.size {
		return s.requestCheckpoint()
	}
	return nil
}

// checkpointer makes checkpoints in the background, so that reception goes on
// while the partial file is flushed to disk: it fsyncs the file, then records
// the offset it was given (every byte before it was written before the fsync
// began, so the checkpoint never claims a byte that was not fsynced). At most
// one request waits; a newer one replaces it.
type checkpointer struct {
	reqs chan int64
	done chan struct{}

	mu     sync.Mutex
	synced int64
	err    error
}

// requestCheckpoint asks the checkpointer (started on first use) to make the
// current length durable, and reports a failure of an earlier checkpoint.
func (s *receiveState) requestCheckpoint() error {
	if s.bg == nil {
		s.bg = &checkpointer{reqs: make(chan int64, 1), done: make(chan struct{}), synced: s.synced}
		go s.runCheckpointer(s.bg, s.f)
	}
	s.bg.mu.Lock()
	err := s.bg.err
	s.bg.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-s.bg.reqs: // superseded by the newer offset
	default:
	}
	s.bg.reqs <- s.pos
	s.requested = s.pos
	return nil
}

// runCheckpointer serves checkpoint requests until reqs is closed.
func (s *receiveState) runCheckpointer(bg *checkpointer, f partialFile) {
	defer close(bg.done)
	for off := range bg.reqs {
		err := f.Sync()
		if err == nil {
			err = writeCheckpoint(s.ckpt, s.size, off)
		}
		bg.mu.Lock()
		if err != nil {
			bg.err = err
		} else {
			bg.synced = off
		}
		bg.mu.Unlock()
		if err != nil {
			for range bg.reqs { // drain until stopped
			}
			return
		}
	}
}

// stopCheckpointer waits for the checkpointer to finish its work, and takes
// back the durable offset. It returns the checkpointer's error, if any.
func (s *receiveState) stopCheckpointer() error {
	bg := s.bg
	if bg == nil {
		return nil
	}
	s.bg = nil
	close(bg.reqs)
	<-bg.done
	bg.mu.Lock()
	defer bg.mu.Unlock()
	s.synced = bg.synced
	return bg.err
}

// verify checks the whole file's SHA-256 against the header's and fsyncs it.
func (s *receiveState) verify() error {
	if err := s.stopCheckpointer(); err != nil {
		return s.storageFailure(err)
	}
	var sum [sha256.Size]byte
	s.hash.Sum(sum[:0])
	if !bytes.Equal(sum[:], s.hdr.SHA256[:]) {
		err := s.refuse(Refusef(CodeFileMismatch, "file %q: the received bytes have SHA-256 %x, the header announced %x",
			s.hdr.Name, sum, s.hdr.SHA256))
		s.discard()
		return err
	}
	if err := s.f.Sync(); err != nil {
		return s.storageFailure(err)
	}
	return nil
}

// checkpoint fsyncs the partial file, then records its length as the checkpoint.
func (s *receiveState) checkpoint() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := writeCheckpoint(s.ckpt, s.size, s.pos); err != nil {
		return err
	}
	s.synced = s.pos
	return nil
}

// saveProgress checkpoints what an interrupted transfer received, best effort.
func (s *receiveState) saveProgress() {
	if err := s.stopCheckpointer(); err != nil {
		return
	}
	if s.pos > s.synced {
		_ = s.checkpoint()
	}
}

// discard deletes the partial file and its checkpoint, so that the next attempt
// starts from 0.
func (s *receiveState) discard() {
	_ = s.stopCheckpointer()
	_ = os.Remove(s.ckpt)
	_ = os.Remove(s.part)
}

// storageFailure answers the peer storage and returns the refusal, whose cause
// is err. The peer learns the kind of failure but not the receiver's paths.
func (s *receiveState) storageFailure(err error) error {
	return s.refuse(storageError(s.hdr.Name, err))
}

// storageError returns the refusal of a file name that could not be stored
// durably because of err.
func storageError(name string, err error) *Refusal {
	return &Refusal{Code: CodeStorage, Err: err,
		Text: fmt.Sprintf("the receiver could not store %q durably (%s); try again later", name, StorageReason(err))}
}

// readCheckpoint returns the offset recorded in the checkpoint file at path if
// it is for a file of size bytes, else 0; and whether a checkpoint file exists.
// A checkpoint that does not parse exactly counts as 0.
func readCheckpoint(path string, size int64) (off int64, exists bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var gotSize, gotOff int64
	if _, err := fmt.Sscanf(string(b), checkpointFormat, &gotSize, &gotOff); err != nil ||
		fmt.Sprintf(checkpointFormat, gotSize, gotOff) != string(b) ||
		gotSize != size || gotOff < 0 || gotOff > size {
		return 0, true, nil
	}
	return gotOff, true, nil
}

// writeCheckpoint atomically replaces the checkpoint file at path (a
// temporary file, fsynced, renamed into place, and the directory fsynced).
func writeCheckpoint(path string, size, off int64) error {
	return keys.WriteFileAtomic(path, fmt.Appendf(nil, checkpointFormat, size, off), fileMode)
}
