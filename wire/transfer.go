package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// File transfer messages (PROTOCOL.md §3).
const (
	TypeFileHeader Type = 0x04 // sender → receiver: name, size, SHA-256
	TypeFileOffset Type = 0x05 // receiver → sender: where to resume
	TypeData       Type = 0x06 // sender → receiver: file bytes
	TypeFileAck    Type = 0x07 // receiver → sender: the file is durable
)

// File transfer limits (PROTOCOL.md §3).
const (
	// MaxDataChunk is the most file bytes one Data message carries. A Data frame
	// is one byte longer (its type byte), so a receiver of full-size chunks
	// needs a frame limit above DefaultMaxFrame.
	MaxDataChunk = 64 << 10

	// DefaultChunkSize is the number of file bytes SendFile puts in each Data
	// message unless told otherwise: small enough that a Data frame fits in a
	// receiver's DefaultMaxFrame.
	DefaultChunkSize = 32 << 10

	// NameMaxLen is the longest file name, in bytes.
	NameMaxLen = 128

	// DefaultCheckpointEvery is the most file bytes a Receiver takes between two
	// checkpoints (fsync of the partial file and of its recorded offset).
	DefaultCheckpointEvery = 8 << 20

	// peerErrorWait bounds how long SendFile waits, after a failed write, for
	// the Error message that may explain it.
	peerErrorWait = time.Second
)

// FileHeader announces a file (type 0x04). Decoding checks only the encoding: the
// receiver checks the name with ValidName and the size against its limit, so as
// to answer them with their own codes.
type FileHeader struct {
	Name   string // string8
	Size   uint64
	SHA256 [sha256.Size]byte
}

// Type returns TypeFileHeader.
func (*FileHeader) Type() Type { return TypeFileHeader }

// MarshalBody encodes the name, the size and the SHA-256.
func (m *FileHeader) MarshalBody(b *Builder) {
	b.String8(m.Name)
	b.U64(m.Size)
	b.Fixed(m.SHA256[:])
}

// UnmarshalBody decodes the name, the size and the SHA-256.
func (m *FileHeader) UnmarshalBody(p *Parser) {
	m.Name = p.String8()
	m.Size = p.U64()
	copy(m.SHA256[:], p.Fixed(sha256.Size))
}

// FileOffset tells the sender where to resume (type 0x05): the number of bytes
// the receiver already holds durably.
type FileOffset struct {
	Offset uint64
}

// Type returns TypeFileOffset.
func (*FileOffset) Type() Type { return TypeFileOffset }

// MarshalBody encodes the offset.
func (m *FileOffset) MarshalBody(b *Builder) { b.U64(m.Offset) }

// UnmarshalBody decodes the offset.
func (m *FileOffset) UnmarshalBody(p *Parser) { m.Offset = p.U64() }

// Data carries file bytes (type 0x06): 1 to MaxDataChunk of them, as the rest of
// the frame, with no length field.
//
// Unlike every other decoded message, a decoded Data shares memory with the
// payload it was decoded from: on a Conn, Bytes are valid only until the next
// read. This avoids copying the bulk of a transfer.
type Data struct {
	Bytes []byte
}

// Type returns TypeData.
func (*Data) Type() Type { return TypeData }

// MarshalBody appends the bytes; an empty or over-long chunk is refused.
func (m *Data) MarshalBody(b *Builder) {
	if err := m.check(); err != nil {
		b.Fail(err)
		return
	}
	b.Raw(m.Bytes)
}

// UnmarshalBody takes the rest of the body as the bytes, without copying them;
// an empty or over-long chunk is refused.
func (m *Data) UnmarshalBody(p *Parser) {
	m.Bytes = p.Rest()
	if err := m.check(); err != nil {
		p.Fail(err)
	}
}

// check reports a chunk size outside 1..MaxDataChunk.
func (m *Data) check() error {
	if n := len(m.Bytes); n == 0 || n > MaxDataChunk {
		return detailf([]error{ErrEncode}, "Data of %d bytes is outside 1..%d", n, MaxDataChunk)
	}
	return nil
}

// FileAck acknowledges a durable file (type 0x07). Its body is empty.
type FileAck struct{}

// Type returns TypeFileAck.
func (*FileAck) Type() Type { return TypeFileAck }

// MarshalBody encodes nothing.
func (*FileAck) MarshalBody(*Builder) {}

// UnmarshalBody decodes nothing: a FileAck with a body is malformed.
func (*FileAck) UnmarshalBody(*Parser) {}

var (
	// ErrBadName matches a *BadNameError.
	ErrBadName = errors.New("wire: bad file name")

	// ErrFileTooLarge matches a *FileTooLargeError.
	ErrFileTooLarge = errors.New("wire: file too large")

	// ErrFileMismatch matches a transfer whose bytes do not match the announced
	// size or SHA-256 (code file-mismatch).
	ErrFileMismatch = errors.New("wire: file does not match its header")

	// ErrBadOffset matches a resume offset outside 0..size (code bad-offset).
	ErrBadOffset = errors.New("wire: bad resume offset")

	// ErrBusy matches a refusal for lack of capacity: a limit on connections, or
	// a transfer of the same file already in progress (code busy).
	ErrBusy = errors.New("wire: busy")

	// ErrStorage matches a failure to store received data durably: disk full,
	// read-only file system, I/O error (code storage). The underlying error,
	// such as syscall.ENOSPC, matches too.
	ErrStorage = errors.New("wire: cannot store data")
)

// BadNameError reports a file name that breaks the rules of PROTOCOL.md §3.
type BadNameError struct {
	Name   string // the name as given
	Reason string // which rule it breaks
}

// Error quotes the name and says which rule it breaks.
func (e *BadNameError) Error() string {
	name := e.Name
	if len(name) > 2*NameMaxLen {
		name = name[:2*NameMaxLen] + "..."
	}
	return fmt.Sprintf("wire: bad file name %q: %s", name, e.Reason)
}

// Is reports whether target is ErrBadName.
func (e *BadNameError) Is(target error) bool { return target == ErrBadName }

// FileTooLargeError reports a FileHeader whose size exceeds the receiver's limit.
type FileTooLargeError struct {
	Name string
	Size uint64 // the announced size
	Max  int64  // the receiver's limit
}

// Error gives the announced size and the limit.
func (e *FileTooLargeError) Error() string {
	return fmt.Sprintf("wire: file %q of %d bytes exceeds the limit of %d bytes", e.Name, e.Size, e.Max)
}

// Is reports whether target is ErrFileTooLarge.
func (e *FileTooLargeError) Is(target error) bool { return target == ErrFileTooLarge }

// ValidName reports whether name follows the rules of PROTOCOL.md §3: 1 to
// NameMaxLen bytes of A–Z, a–z, 0–9, '.', '_', '-' and '+', not beginning with
// '.' or '-'. Such a name has no path separator, NUL, space or control
// character, and is neither "." nor "..", so it is safe as the last element of a
// path. The error is a *BadNameError.
func ValidName(name string) error {
	bad := func(reason string) error { return &BadNameError{Name: name, Reason: reason} }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > NameMaxLen:
		return bad(fmt.Sprintf("%d bytes long (at most %d)", len(name), NameMaxLen))
	case name[0] == '.':
		return bad("begins with '.'")
	case name[0] == '-':
		return bad("begins with '-'")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !nameByte(c) {
			if c < 0x80 {
				return bad(fmt.Sprintf("contains %q at byte %d", rune(c), i))
			}
			return bad(fmt.Sprintf("contains non-ASCII byte 0x%02x at byte %d", c, i))
		}
	}
	return nil
}

// SafeName makes a name that ValidName accepts from base (a file's base
// name, say): every byte outside the allowed set, and a leading '.' or '-',
// becomes '_'; a name too long keeps its end (where the extension is), its
// first byte marked '_'; an empty base gives fallback, which must itself be
// valid.
func SafeName(base, fallback string) string {
	if base == "" {
		return fallback
	}
	b := []byte(base)
	if len(b) > NameMaxLen {
		b = b[len(b)-NameMaxLen:]
		b[0] = '_'
	}
	for i, c := range b {
		if !nameByte(c) || i == 0 && (c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '+'
}

// HashFile reads f to its end and returns its SHA-256 and size, the values a
// FileHeader announces.
func HashFile(f io.Reader) (sum [sha256.Size]byte, size int64, err error) {
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return sum, size, fmt.Errorf("wire: hashing file: %w", err)
	}
	h.Sum(sum[:0])
	return sum, size, nil
}

// SendOptions configures SendFile. The zero value selects the defaults.
type SendOptions struct {
	// ChunkSize is the number of file bytes per Data message, at most
	// MaxDataChunk; DefaultChunkSize if zero. A Data frame is ChunkSize+1 bytes:
	// it must fit in the receiver's frame limit.
	ChunkSize int

	// Progress, if set, is called after each Data message with the number of
	// the file's bytes sent so far, the resumed prefix included.
	Progress func(sent int64)

	// SkipAck makes SendFile return after the last Data message instead of
	// waiting for FileAck, for exchanges where another message takes FileAck's
	// place (the board's receipt): the caller then reads that message, or the
	// receiver's Error, itself.
	SkipAck bool
}

// SendFile sends the file f, of size bytes and SHA-256 sum, under name, as the
// sender of PROTOCOL.md §3: FileHeader, then Data from the offset the receiver
// answers, then (unless opt.SkipAck) it waits for FileAck. It returns the offset
// the transfer resumed from.
//
// The name is checked with ValidName before anything is sent. An Error from the
// receiver, at any step, is returned as the error (a *Error). A message out of
// order is answered with unexpected-message and an offset above size with
// bad-offset. After an error the connection is not usable for further messages.
func SendFile(rw MessageReadWriter, name string, f io.ReaderAt, size int64, sum [sha256.Size]byte, opt SendOptions) (resumedFrom int64, err error) {
	if err := ValidName(name); err != nil {
		return 0, err
	}
	if size < 0 {
		return 0, fmt.Errorf("wire: sending %q: negative size %d", name, size)
	}
	chunk := opt.ChunkSize
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	if chunk < 0 || chunk > MaxDataChunk {
		return 0, fmt.Errorf("wire: sending %q: chunk size %d outside 1..%d", name, chunk, MaxDataChunk)
	}

	if err := rw.WriteMessage(&FileHeader{Name: name, Size: uint64(size), SHA256: sum}); err != nil {
		return 0, peerError(rw, err)
	}
	fo, err := Expect[*FileOffset](rw)
	if err != nil {
		refuse(rw, err)
		return 0, err
	}
	if fo.Offset > uint64(size) {
		err := detailf([]error{ErrBadOffset}, "receiver asked to resume %q at offset %d, beyond its size of %d bytes", name, fo.Offset, size)
		refuse(rw, err)
		return 0, err
	}
	off := int64(fo.Offset)

	buf := make([]byte, min(int64(chunk), size-off))
	d := new(Data)
	for pos := off; pos < size; {
		n := int(min(int64(chunk), size-pos))
		if got, err := f.ReadAt(buf[:n], pos); got < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			_ = rw.WriteMessage(&Error{Code: CodeInternal, Text: "the sender could not read its file"})
			return off, fmt.Errorf("wire: sending %q: reading %d bytes at offset %d: %w", name, n, pos, err)
		}
		d.Bytes = buf[:n]
		if err := rw.WriteMessage(d); err != nil {
			return off, peerError(rw, err)
		}
		pos += int64(n)
		if opt.Progress != nil {
			opt.Progress(pos)
		}
	}
	if !opt.SkipAck {
		if _, err := Expect[*FileAck](rw); err != nil {
			refuse(rw, err)
			return off, err
		}
	}
	return off, nil
}

// peerError returns the error to report for a failed write: the peer's Error
// message if it sent one before closing (a receiver that refuses mid-transfer
// says why, then closes), else writeErr. It reads only if rw can bound the read
// with a deadline, and not after a timeout (a peer that stopped reading is not
// writing either).
func peerError(rw MessageReadWriter, writeErr error) error {
	d, ok := rw.(interface{ SetDeadline(time.Time) })
	if !ok || errors.Is(writeErr, os.ErrDeadlineExceeded) {
		return writeErr
	}
	d.SetDeadline(time.Now().Add(peerErrorWait))
	for range 4 {
		m, err := rw.ReadMessage()
		if err != nil {
			break
		}
		if e, ok := m.(*Error); ok {
			return e
		}
	}
	return writeErr
}

// refuse sends the peer the Error message that err, an error about what the peer
// sent or did, calls for, if any: none when the peer is gone or has itself
// refused (PeerGone). It is best effort.
func refuse(rw MessageReadWriter, err error) {
	if PeerGone(err) {
		return
	}
	code, ok := codeOf(err)
	if !ok {
		return
	}
	_ = rw.WriteMessage(&Error{Code: code, Text: bareText(err)})
}
