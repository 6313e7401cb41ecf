package board

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"pkiboard/internal/durable"
	"pkiboard/wire"
)

// File modes of what the board creates for an upload.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// DefaultCheckpointEvery is the most file bytes a partial upload takes between
// two checkpoints (fsync of the partial file, then of its recorded offset).
const DefaultCheckpointEvery = 8 << 20

// A partial upload lives in its SID's partial directory as two files named
// after the validated name and the announced SHA-256, both hidden (valid names
// never begin with '.'):
//
//	.<sha256 hex>.<name>.part   the bytes received so far
//	.<sha256 hex>.<name>.ckpt   the checkpoint: the size and the fsynced offset
const (
	partSuffix       = ".part"
	checkpointSuffix = ".ckpt"
	checkpointFormat = "pkiboard partial v1 size=%d offset=%d\n"
)

// partials is where one SID's uploads are received (wire.Receiver.Open): a
// file of up to inMemory bytes into a wire.Memory, which never resumes; a
// larger one into a partial file in dir with a checkpoint, which an
// interrupted upload of the same file (name, size and SHA-256) resumes from.
type partials struct {
	dir      string
	inMemory int64 // 0: every file goes to a partial file
	quota    int64 // the most bytes the partial files of dir may hold; 0: no quota

	// every is the number of bytes between two checkpoints;
	// DefaultCheckpointEvery if zero or negative or above it.
	every int64

	// openFile opens a partial file; os.OpenFile if nil. Tests replace it to
	// simulate failing disks.
	openFile func(path string) (partialFile, error)
}

// partialFile is the part of *os.File a partial upload uses.
type partialFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Stat() (fs.FileInfo, error)
	Close() error
}

// receiver returns a wire.Receiver of files of up to maxSize bytes into p.
func (p *partials) receiver(maxSize int64) *wire.Receiver {
	return &wire.Receiver{MaxSize: maxSize, Open: p.open}
}

// open returns the sink for the file h announces: memory for a small file,
// else its partial file, opened (created if need be) and cut back to its
// checkpoint. It refuses busy a file that another connection is receiving.
func (p *partials) open(h *wire.FileHeader) (wire.Sink, error) {
	if p.inMemory > 0 && h.Size <= uint64(p.inMemory) {
		return new(wire.Memory), nil
	}
	every := p.every
	if every <= 0 || every > DefaultCheckpointEvery {
		every = DefaultCheckpointEvery
	}
	base := filepath.Join(p.dir, "."+hex.EncodeToString(h.SHA256[:])+"."+h.Name)
	s := &partialSink{
		name:  h.Name,
		size:  int64(h.Size),
		every: every,
		part:  base + partSuffix,
		ckpt:  base + checkpointSuffix,
	}
	if err := s.claim(p.dir, p.quota); err != nil {
		return nil, err
	}
	if err := s.openPartial(p.dir, p.openFile); err != nil {
		s.closeFile() //nolint:errcheck // already failing
		s.release()
		return nil, err
	}
	return s, nil
}

// partialSink is a wire.Sink on a partial file. Every DefaultCheckpointEvery
// bytes (partials.every) it has a background checkpointer fsync the file and
// record the offset, and when a transfer breaks it records what it holds, so
// that the next transfer resumes from there; the offset recorded never
// exceeds what was fsynced.
type partialSink struct {
	name  string
	size  int64
	every int64
	part  string // where the file is: its partial file, until place renames it
	ckpt  string // its checkpoint, until place removes it ("" then)
	key   string // the partial file's absolute path, while claimed in inProgress

	f         partialFile
	resumed   int64         // the offset Resume reports
	pos       int64         // bytes in the partial file
	synced    int64         // bytes fsynced and recorded in the checkpoint (the checkpointer's while it runs)
	requested int64         // the last offset handed to the checkpointer
	bg        *checkpointer // nil until the first checkpoint
}

// inProgress holds the partial files being received in this process, with
// the size each transfer announced.
var inProgress = struct {
	sync.Mutex
	paths map[string]int64
}{paths: make(map[string]int64)}

// absPath returns path made absolute, or path if it cannot be.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// claim marks the partial file as being received, or refuses the transfer:
// busy if another connection is receiving the same file, file-too-large if
// the partial files of dir would hold more than quota bytes with it (the
// others as they are on disk, or as announced while they are received, and
// this one at its full size). A quota of 0 is none.
func (s *partialSink) claim(dir string, quota int64) error {
	key := absPath(s.part)
	inProgress.Lock()
	defer inProgress.Unlock()
	if _, ok := inProgress.paths[key]; ok {
		return wire.Refusef(wire.CodeBusy, "a transfer of %q is already in progress; try again shortly", s.name)
	}
	if quota > 0 {
		held, names, err := heldBesides(dir, key)
		if err != nil {
			return err
		}
		if held == 0 && s.size > quota {
			return wire.Refusef(wire.CodeFileTooLarge, "%q (%d bytes) is more than the %d bytes this board keeps of each student's interrupted uploads", s.name, s.size, quota)
		}
		if held+s.size > quota {
			return wire.Refusef(wire.CodeFileTooLarge,
				"your interrupted uploads (%s) already hold %d bytes of the %d this board keeps for each student; %q (%d bytes) would pass that: finish one of them by sending the same file again, or wait until they expire",
				strings.Join(names, ", "), held, quota, s.name, s.size)
		}
	}
	inProgress.paths[key] = s.size
	s.key = key
	return nil
}

// heldBesides returns the bytes the partial files in dir hold, except the one
// at skip (an absolute path): a file being received counts at the size it
// announced, any other at its size on disk; and the names of their files
// (the first few). The caller holds inProgress.
func heldBesides(dir, skip string) (held int64, names []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		name, ok := partialName(e.Name())
		if !ok {
			continue
		}
		path := absPath(filepath.Join(dir, e.Name()))
		if path == skip {
			continue
		}
		size, receiving := inProgress.paths[path]
		if !receiving {
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			size = info.Size()
		}
		held += size
		if len(names) < 3 {
			names = append(names, strconv.Quote(name))
		} else if len(names) == 3 {
			names = append(names, "…")
		}
	}
	return held, names, nil
}

// partialName returns the file name a partial file's name holds
// (".<sha256 hex>.<name>.part"), and whether it is one.
func partialName(file string) (string, bool) {
	rest, ok := strings.CutSuffix(file, partSuffix)
	if !ok || len(rest) < 1+sha256HexLen+1 || rest[0] != '.' || rest[1+sha256HexLen] != '.' {
		return "", false
	}
	return rest[1+sha256HexLen+1:], true
}

// sha256HexLen is the length of a SHA-256 in hex, in a partial file's name.
const sha256HexLen = 64

// release ends the claim, if any.
func (s *partialSink) release() {
	if s.key == "" {
		return
	}
	inProgress.Lock()
	defer inProgress.Unlock()
	delete(inProgress.paths, s.key)
	s.key = ""
}

// openPartial opens the partial file in dir and sets the resume offset: the
// checkpoint of an earlier transfer of the same file if the partial file holds
// that much, else 0. Bytes after the offset are cut off.
func (s *partialSink) openPartial(dir string, open func(string) (partialFile, error)) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	off, hadCheckpoint, err := readCheckpoint(s.ckpt, s.size)
	if err != nil {
		return err
	}
	if open == nil {
		open = openPartialFile
	}
	f, err := open(s.part)
	if err != nil {
		return err
	}
	s.f = f
	st, err := s.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < off {
		off = 0 // the checkpoint claims more than the file holds: trust neither
	}
	if off == 0 && hadCheckpoint {
		// Forget the old checkpoint before writing, so that it never vouches for
		// bytes of this transfer that were not fsynced.
		if err := os.Remove(s.ckpt); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := s.f.Truncate(off); err != nil {
		return err
	}
	s.resumed, s.pos, s.synced, s.requested = off, off, off, off
	return nil
}

func openPartialFile(path string) (partialFile, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
}

// Resume returns the checkpoint the partial file was cut back to, and a
// reader of the bytes before it.
func (s *partialSink) Resume() (int64, io.Reader) {
	if s.resumed == 0 {
		return 0, nil
	}
	return s.resumed, io.NewSectionReader(s.f, 0, s.resumed)
}

// Write writes p at the end of the partial file, and asks for a checkpoint when
// one is due. It also reports the failure of an earlier checkpoint.
//
// The bytes are written in the receiving goroutine. A variant that handed them
// to a writer goroutine, so that writing and hashing overlapped with reading
// and decrypting the next records, measured no faster (the sender and the
// receiver already share the machine's cores, and the hand-off costs a copy)
// and was removed.
func (s *partialSink) Write(p []byte) (int, error) {
	if n, err := s.f.WriteAt(p, s.pos); err != nil {
		return n, err
	}
	s.pos += int64(len(p))
	if s.pos-s.requested >= s.every && s.pos < s.size {
		if err := s.requestCheckpoint(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Finish waits for the checkpointer, fsyncs the complete file and closes it.
// The file stays where it is, for Store.Commit to rename, with its last
// checkpoint.
func (s *partialSink) Finish() error {
	defer s.release()
	err := s.stopCheckpointer()
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.closeFile(); err == nil {
		err = cerr
	}
	return err
}

// Abort ends a failed transfer. With keep it checkpoints what arrived, best
// effort, for the next transfer to resume from; without it, it deletes the
// partial file and its checkpoint, so that the next transfer starts from 0.
// After Finish, Abort(true) does nothing and Abort(false) deletes the file,
// wherever place has put it, and its checkpoint if still there.
func (s *partialSink) Abort(keep bool) {
	defer s.release()
	if keep {
		s.saveProgress()
	} else {
		_ = s.stopCheckpointer()
		if s.ckpt != "" {
			_ = os.Remove(s.ckpt)
		}
		_ = os.Remove(s.part)
	}
	_ = s.closeFile()
}

// closeFile closes the partial file if it is open.
func (s *partialSink) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
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
func (s *partialSink) requestCheckpoint() error {
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

// runCheckpointer serves checkpoint requests until reqs is closed (by
// stopCheckpointer, which every end of a transfer calls).
func (s *partialSink) runCheckpointer(bg *checkpointer, f partialFile) {
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
func (s *partialSink) stopCheckpointer() error {
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

// saveProgress checkpoints what an interrupted transfer received, best effort:
// it fsyncs the partial file, then records its length as the checkpoint.
func (s *partialSink) saveProgress() {
	if err := s.stopCheckpointer(); err != nil || s.f == nil || s.pos <= s.synced {
		return
	}
	if err := s.f.Sync(); err != nil {
		return
	}
	if err := writeCheckpoint(s.ckpt, s.size, s.pos); err != nil {
		return
	}
	s.synced = s.pos
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
	return durable.WriteFile(path, fmt.Appendf(nil, checkpointFormat, size, off), fileMode)
}

// place puts a received file at dst, replacing any file there, with its
// content durable but not yet its name: the caller fsyncs dst's directory,
// which lets many files share that fsync. A file in memory is written to a
// temporary file beside dst, fsynced and renamed; a partial file is renamed
// (dst must be on the same file system) and its checkpoint removed.
func place(up *wire.Received, dst string) error {
	switch sink := up.Sink.(type) {
	case *wire.Memory:
		return durable.WriteContent(dst, sink.Bytes(), fileMode)
	case *partialSink:
		if err := os.Rename(sink.part, dst); err != nil {
			return err
		}
		sink.part = dst
		if err := os.Remove(sink.ckpt); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		sink.ckpt = ""
		return nil
	}
	return fmt.Errorf("board: cannot place %q, received into a %T", up.Name, up.Sink)
}

// discard deletes a received file that could not be committed to dst,
// wherever it is now (its partial file, or dst once placed there), and its
// checkpoint.
func discard(up *wire.Received, dst string) {
	up.Sink.Abort(false)
	_ = os.Remove(dst) // a file in memory placed there, or nothing
}

// PartialUsage is what a board's interrupted uploads hold.
type PartialUsage struct {
	Uploads int   // partial files
	Bytes   int64 // their size on disk
}

// partialUsage adds up the partial files under root (one directory per SID).
func partialUsage(root string) (PartialUsage, error) {
	var u PartialUsage
	err := forEachPartialDir(root, func(dir string, entries []fs.DirEntry) error {
		for _, e := range entries {
			if _, ok := partialName(e.Name()); !ok {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			u.Uploads++
			u.Bytes += info.Size()
		}
		return nil
	})
	return u, err
}

// expirePartials removes, under root, every file of an interrupted upload
// last written before cutoff — its partial file, its checkpoint, and any
// temporary file a checkpoint left — except those being received, then the
// SID directories left empty. It returns the partial files removed and the
// bytes they held.
func expirePartials(root string, cutoff time.Time) (PartialUsage, error) {
	var gone PartialUsage
	err := forEachPartialDir(root, func(dir string, entries []fs.DirEntry) error {
		left := len(entries)
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() || !info.ModTime().Before(cutoff) || receiving(dir, e.Name()) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					left--
					continue
				}
				return err
			}
			left--
			if _, ok := partialName(e.Name()); ok {
				gone.Uploads++
				gone.Bytes += info.Size()
			}
		}
		if left == 0 {
			_ = os.Remove(dir) // fails harmlessly if an upload began meanwhile
		}
		return nil
	})
	return gone, err
}

// receiving reports whether the file name in dir belongs to an upload being
// received: its partial file, its checkpoint, or a checkpoint's temporary
// file.
func receiving(dir, name string) bool {
	base, ok := uploadOf(name)
	if !ok {
		return false
	}
	inProgress.Lock()
	defer inProgress.Unlock()
	_, ok = inProgress.paths[absPath(filepath.Join(dir, base+partSuffix))]
	return ok
}

// uploadOf returns the upload a file of a SID directory belongs to,
// ".<sha256 hex>.<name>", from the name of its partial file, of its
// checkpoint, or of a checkpoint's temporary file (durable.WriteFile's
// "." + the checkpoint's name + ".<random>.tmp").
func uploadOf(file string) (string, bool) {
	if rest, ok := strings.CutSuffix(file, ".tmp"); ok && strings.HasPrefix(rest, "..") {
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			file = rest[1:i]
		}
	}
	for _, suffix := range []string{partSuffix, checkpointSuffix} {
		if base, ok := strings.CutSuffix(file, suffix); ok && len(base) > 1+sha256HexLen+1 && base[0] == '.' && base[1+sha256HexLen] == '.' {
			return base, true
		}
	}
	return "", false
}

// forEachPartialDir calls fn with each SID directory under root and its
// entries.
func forEachPartialDir(root string, fn func(dir string, entries []fs.DirEntry) error) error {
	sids, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("board: partial uploads: %w", err)
	}
	for _, sid := range sids {
		if !sid.IsDir() {
			continue
		}
		dir := filepath.Join(root, sid.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("board: partial uploads: %w", err)
		}
		if err := fn(dir, entries); err != nil {
			return fmt.Errorf("board: partial uploads: %w", err)
		}
	}
	return nil
}
