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
		return fmt.Errorf("Data of %d bytes is outside 1..%d", n, MaxDataChunk)
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

// ValidName reports whether name follows the rules of PROTOCOL.md §3: 1 to
// NameMaxLen bytes of A–Z, a–z, 0–9, '.', '_', '-' and '+', not beginning with
// '.' or '-'. Such a name has no path separator, NUL, space or control
// character, and is neither "." nor "..", so it is safe as the last element of a
// path. The error is a *Refusal of code bad-file-name that quotes the name and
// says which rule it breaks, as in `bad file name "../x": begins with '.'`.
func ValidName(name string) error {
	bad := func(reason string) error {
		quoted := name
		if len(quoted) > 2*NameMaxLen {
			quoted = quoted[:2*NameMaxLen] + "..."
		}
		return Refusef(CodeBadFileName, "bad file name %q: %s", quoted, reason)
	}
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

	// OnOffset, if set, is called once with the offset the receiver
	// answered (0 for a fresh transfer), before any Data message is sent.
	OnOffset func(offset int64)

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
// bad-offset, and returned as that *Refusal. After an error the connection is
// not usable for further messages.
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
	fo, err := Expect[*FileOffset](rw.ReadMessage())
	if err != nil {
		_ = Answer(rw, err)
		return 0, err
	}
	if fo.Offset > uint64(size) {
		err := Refusef(CodeBadOffset, "receiver asked to resume %q at offset %d, beyond its size of %d bytes", name, fo.Offset, size)
		_ = Answer(rw, err)
		return 0, err
	}
	off := int64(fo.Offset)
	if opt.OnOffset != nil {
		opt.OnOffset(off)
	}

	buf := make([]byte, min(int64(chunk), size-off))
	d := new(Data)
	for pos := off; pos < size; {
		n := int(min(int64(chunk), size-pos))
		if got, err := f.ReadAt(buf[:n], pos); got < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			_ = Answer(rw, Refusef(CodeInternal, "the sender could not read its file"))
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
		if _, err := Expect[*FileAck](rw.ReadMessage()); err != nil {
			_ = Answer(rw, err)
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
