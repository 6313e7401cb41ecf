package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// A Sink stores the bytes of one incoming file for a Receiver, which checks the
// header, the sizes and the SHA-256 itself. The Receiver calls Resume once,
// then Write with the file's bytes in order, then exactly one of Finish (every
// byte arrived and matched) or Abort (the transfer failed), and Abort(true)
// also after a Finish that failed.
type Sink interface {
	// Resume returns how many bytes of the file the sink already holds
	// durably, from an earlier transfer of the same file (0 ≤ offset ≤ the
	// announced size), and a reader of those bytes (nil when offset is 0),
	// which the Receiver hashes so that the SHA-256 check covers the whole
	// file. The sender is asked for the rest.
	Resume() (offset int64, prefix io.Reader)

	// Write appends the next bytes of the file; it must not keep p. An error
	// is a failure to store them.
	io.Writer

	// Finish makes the file durable: every byte arrived and the whole file
	// matched its header. The file may be acknowledged only once Finish has
	// returned nil; a sink on disk fsyncs here.
	Finish() error

	// Abort ends a transfer that failed. With keep, what arrived stays for a
	// later transfer of the same file to resume from (the connection broke,
	// the sender stopped, the sink could not store a byte); without it, it is
	// discarded (the bytes do not match the header).
	Abort(keep bool)
}

// Receiver receives files as the receiver of PROTOCOL.md §3 and checks them: a
// file it returns is exactly what its FileHeader announced. Where the bytes go
// is the Sink's business.
type Receiver struct {
	// MaxSize is the largest file accepted, in bytes: a larger one is answered
	// file-too-large. Required: every receiver bounds what it stores.
	MaxSize int64

	// Allow, if set, is called with each announced name once it has passed
	// ValidName; a non-nil error refuses the file. A *Refusal is answered
	// with its code and text; any other error with bad-file-name.
	Allow func(name string) error

	// Open returns the sink for a file whose header has passed the checks; a
	// new Memory if nil. A *Refusal (busy, say: the same file is being
	// received on another connection) is answered with its code and text; any
	// other error is a storage failure.
	Open func(h *FileHeader) (Sink, error)
}

// Received is a file received in full and verified: its sink has finished.
// The caller acknowledges it (FileAck, or a higher-level message) once it has
// put it where it belongs.
type Received struct {
	Name        string            // the validated name from the FileHeader
	Size        int64             // the file's size
	SHA256      [sha256.Size]byte // the file's verified SHA-256
	ResumedFrom int64             // the offset this transfer resumed from
	Sink        Sink              // where the file is: Receiver.Open's sink
}

// memoryPrealloc bounds what the default Memory sink reserves for a file
// before its bytes arrive: a header alone does not make it allocate more.
const memoryPrealloc = 64 << 10

// Receive receives one file: it reads a FileHeader and checks it (ValidName,
// Allow, MaxSize), opens its sink, answers FileOffset with the offset the sink
// resumes from (hashing the sink's prefix), receives the Data into the sink,
// and at the end verifies the SHA-256 of the whole file and finishes the sink.
//
// It does not send FileAck: the caller decides what acknowledges the file
// (FileAck once it is stored, or a higher-level message).
//
// Each refusal is answered to the peer (see Answer) before Receive returns it,
// a *Refusal: bad-file-name, file-too-large, file-mismatch (a Data past the
// announced size, or a SHA-256 that does not match: the sink aborts and
// discards), storage (Open, Write or Finish failed: the refusal's Err is the
// cause, and the sink aborts and keeps its bytes), unexpected-message, or
// Open's own refusal. An *Error from the peer is returned as is, and like a
// broken connection aborts the sink keeping its bytes, so that the next
// attempt can resume.
func (r *Receiver) Receive(rw MessageReadWriter) (*Received, error) {
	if r.MaxSize <= 0 {
		return nil, errors.New("wire: Receiver.MaxSize is not set")
	}
	h, err := Expect[*FileHeader](rw.ReadMessage())
	if err != nil {
		return nil, answered(rw, err)
	}
	if err := r.check(h); err != nil {
		return nil, answered(rw, err)
	}
	sink, err := r.open(h)
	if err != nil {
		return nil, answered(rw, err)
	}
	t := &transfer{rw: rw, h: h, size: int64(h.Size), sink: sink}
	return t.receive()
}

// answered answers the peer with err and returns it.
func answered(rw MessageReadWriter, err error) error {
	_ = Answer(rw, err)
	return err
}

// check refuses a header whose name or size the receiver does not take.
func (r *Receiver) check(h *FileHeader) error {
	if err := ValidName(h.Name); err != nil {
		return err
	}
	if r.Allow != nil {
		if err := r.Allow(h.Name); err != nil {
			var refusal *Refusal
			if errors.As(err, &refusal) {
				return err
			}
			return &Refusal{Code: CodeBadFileName, Text: fmt.Sprintf("file %q refused: %v", h.Name, err), Err: err}
		}
	}
	if h.Size > uint64(r.MaxSize) {
		return Refusef(CodeFileTooLarge, "file %q of %d bytes exceeds the limit of %d bytes", h.Name, h.Size, r.MaxSize)
	}
	return nil
}

// open returns the sink for h.
func (r *Receiver) open(h *FileHeader) (Sink, error) {
	if r.Open == nil {
		return &Memory{buf: make([]byte, 0, min(h.Size, memoryPrealloc))}, nil
	}
	sink, err := r.Open(h)
	var refusal *Refusal
	switch {
	case errors.As(err, &refusal):
		return nil, err
	case err != nil:
		return nil, storageFailure(h.Name, err)
	}
	return sink, nil
}

// storageFailure returns the refusal of a file the receiver could not store
// because of err. The peer learns the kind of failure but not the receiver's
// paths.
func storageFailure(name string, err error) *Refusal {
	return &Refusal{Code: CodeStorage, Err: err,
		Text: fmt.Sprintf("the receiver could not store %q durably (%s); try again later", name, StorageReason(err))}
}

// transfer is one file transfer on the receiving side, from FileOffset on.
type transfer struct {
	rw   MessageReadWriter
	h    *FileHeader
	size int64
	sink Sink
}

// receive runs the steps of PROTOCOL.md §3 after the header, in order.
func (t *transfer) receive() (*Received, error) {
	off, prefix := t.sink.Resume()
	if off < 0 || off > t.size {
		return nil, t.fail(true, fmt.Errorf("wire: the sink of %q resumes at %d, outside 0..%d", t.h.Name, off, t.size))
	}
	hash := sha256.New()
	if off > 0 {
		if _, err := io.CopyN(hash, prefix, off); err != nil {
			return nil, t.fail(true, storageFailure(t.h.Name, err))
		}
	}
	if err := t.rw.WriteMessage(&FileOffset{Offset: uint64(off)}); err != nil {
		t.sink.Abort(true)
		return nil, err
	}
	for pos := off; pos < t.size; {
		d, err := Expect[*Data](t.rw.ReadMessage())
		if err != nil {
			return nil, t.fail(true, err)
		}
		if int64(len(d.Bytes)) > t.size-pos {
			return nil, t.fail(false, Refusef(CodeFileMismatch, "file %q: Data passes the announced size of %d bytes", t.h.Name, t.size))
		}
		if _, err := t.sink.Write(d.Bytes); err != nil {
			return nil, t.fail(true, storageFailure(t.h.Name, err))
		}
		hash.Write(d.Bytes)
		pos += int64(len(d.Bytes))
	}
	var sum [sha256.Size]byte
	hash.Sum(sum[:0])
	if sum != t.h.SHA256 {
		return nil, t.fail(false, Refusef(CodeFileMismatch, "file %q: the received bytes have SHA-256 %x, the header announced %x",
			t.h.Name, sum, t.h.SHA256))
	}
	if err := t.sink.Finish(); err != nil {
		return nil, t.fail(true, storageFailure(t.h.Name, err))
	}
	return &Received{Name: t.h.Name, Size: t.size, SHA256: t.h.SHA256, ResumedFrom: off, Sink: t.sink}, nil
}

// fail aborts the sink, keeping its bytes or not, then answers the peer with
// err, and returns err.
func (t *transfer) fail(keep bool, err error) error {
	t.sink.Abort(keep)
	return answered(t.rw, err)
}

// Memory is a Sink that holds a file in memory. It never resumes: a file
// small enough for memory is sent again whole. The zero value is an empty
// Memory ready to use.
type Memory struct {
	buf []byte
}

// Resume returns 0: a Memory holds nothing of an earlier transfer.
func (*Memory) Resume() (int64, io.Reader) { return 0, nil }

// Write appends p.
func (m *Memory) Write(p []byte) (int, error) {
	m.buf = append(m.buf, p...)
	return len(p), nil
}

// Finish does nothing: memory has nothing to make durable.
func (*Memory) Finish() error { return nil }

// Abort drops the bytes: memory keeps nothing for a later transfer.
func (m *Memory) Abort(bool) { m.buf = nil }

// Bytes returns the bytes written so far: after a Receive, the whole file.
func (m *Memory) Bytes() []byte { return m.buf }
