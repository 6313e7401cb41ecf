package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// A Builder encodes a message body with the field kinds of PROTOCOL.md §2,
// appending to a buffer. The zero value is an empty Builder ready to use.
//
// Errors are sticky: a value that cannot be encoded (too long for its length
// prefix, or a string that is not UTF-8) is never truncated; it sets an error
// that Err reports, and every later call does nothing. Such an error is a
// local programming error, not a refusal: a plain error naming the message, as
// in "wire: encoding FileHeader: string8 field of 300 bytes exceeds 255".
type Builder struct {
	buf  []byte
	err  error
	what string // the message being built, for errors
}

// U8 appends v.
func (b *Builder) U8(v uint8) {
	if b.err == nil {
		b.buf = append(b.buf, v)
	}
}

// U16 appends v, big-endian.
func (b *Builder) U16(v uint16) {
	if b.err == nil {
		b.buf = binary.BigEndian.AppendUint16(b.buf, v)
	}
}

// U32 appends v, big-endian.
func (b *Builder) U32(v uint32) {
	if b.err == nil {
		b.buf = binary.BigEndian.AppendUint32(b.buf, v)
	}
}

// U64 appends v, big-endian.
func (b *Builder) U64(v uint64) {
	if b.err == nil {
		b.buf = binary.BigEndian.AppendUint64(b.buf, v)
	}
}

// Fixed appends p as a fixed[len(p)] field: its bytes, without a length.
func (b *Builder) Fixed(p []byte) {
	if b.err == nil {
		b.buf = append(b.buf, p...)
	}
}

// Raw appends p without a length, as the last field of a body whose length the
// frame gives (the bytes of a Data message).
func (b *Builder) Raw(p []byte) {
	if b.err == nil {
		b.buf = append(b.buf, p...)
	}
}

// Bytes8 appends p as a bytes8 field: a u8 length, then p. A p longer than 255
// bytes sets the error.
func (b *Builder) Bytes8(p []byte) {
	if b.lengthOK("bytes8", len(p), math.MaxUint8) {
		b.buf = append(append(b.buf, uint8(len(p))), p...)
	}
}

// Bytes16 appends p as a bytes16 field: a u16 length, then p. A p longer than
// 65 535 bytes sets the error.
func (b *Builder) Bytes16(p []byte) {
	if b.lengthOK("bytes16", len(p), math.MaxUint16) {
		b.buf = append(binary.BigEndian.AppendUint16(b.buf, uint16(len(p))), p...)
	}
}

// Bytes32 appends p as a bytes32 field: a u32 length, then p. A p longer than
// 4 GiB - 1 sets the error.
func (b *Builder) Bytes32(p []byte) {
	if b.lengthOK("bytes32", len(p), math.MaxUint32) {
		b.buf = append(binary.BigEndian.AppendUint32(b.buf, uint32(len(p))), p...)
	}
}

// String8 appends s as a string8 field. A string longer than 255 bytes or not
// valid UTF-8 sets the error.
func (b *Builder) String8(s string) {
	if b.lengthOK("string8", len(s), math.MaxUint8) && b.utf8OK("string8", s) {
		b.buf = append(append(b.buf, uint8(len(s))), s...)
	}
}

// String16 appends s as a string16 field. A string longer than 65 535 bytes or
// not valid UTF-8 sets the error.
func (b *Builder) String16(s string) {
	if b.lengthOK("string16", len(s), math.MaxUint16) && b.utf8OK("string16", s) {
		b.buf = append(binary.BigEndian.AppendUint16(b.buf, uint16(len(s))), s...)
	}
}

// Fail sets the Builder's error to err, after a prefix naming the message,
// unless an error is already set. A message's MarshalBody calls it to refuse a
// value, such as an out-of-range field.
func (b *Builder) Fail(err error) {
	if b.err != nil || err == nil {
		return
	}
	b.err = fmt.Errorf("%s%w", b.prefix(), err)
}

// Bytes returns the encoded bytes. They are complete only if Err returns nil.
func (b *Builder) Bytes() []byte { return b.buf }

// Err returns the first error met while building, or nil.
func (b *Builder) Err() error { return b.err }

func (b *Builder) prefix() string {
	if b.what == "" {
		return "wire: encoding: "
	}
	return "wire: encoding " + b.what + ": "
}

func (b *Builder) lengthOK(kind string, n int, max uint64) bool {
	if b.err != nil {
		return false
	}
	if uint64(n) > max {
		b.err = fmt.Errorf("%s%s field of %d bytes exceeds %d", b.prefix(), kind, n, max)
		return false
	}
	return true
}

func (b *Builder) utf8OK(kind, s string) bool {
	if !utf8.ValidString(s) {
		b.err = fmt.Errorf("%s%s field is not valid UTF-8", b.prefix(), kind)
		return false
	}
	return true
}

// A Parser decodes a message body field by field, strictly (PROTOCOL.md §2): a
// field that runs past the end of the body, a string that is not UTF-8, or bytes
// left after the last field (see Finish) are refused: the error is a *Refusal of
// code malformed whose text names the message, as in "FileHeader: truncated
// fixed[32] at offset 10 (needs 32 bytes, 31 left)".
//
// Errors are sticky: after the first one, every getter returns a zero value, so a
// message's UnmarshalBody can read all its fields and leave the checking to Err
// or Finish.
//
// Byte-slice and string getters return copies, so that a decoded message never
// shares memory with a frame buffer that will be reused, except Rest, which
// returns a slice of the body itself.
type Parser struct {
	buf  []byte
	off  int
	err  error
	what string // the message being parsed, for errors
}

// NewParser returns a Parser that reads the body p.
func NewParser(p []byte) *Parser {
	return &Parser{buf: p}
}

// take returns the next n bytes of the body, or nil after setting the error.
func (p *Parser) take(n int, kind string) []byte {
	if p.err != nil {
		return nil
	}
	if left := len(p.buf) - p.off; n < 0 || n > left {
		if kind == "fixed" {
			kind = fmt.Sprintf("fixed[%d]", n)
		}
		p.err = p.malformed(fmt.Sprintf("truncated %s at offset %d (needs %d bytes, %d left)", kind, p.off, n, left), nil)
		return nil
	}
	b := p.buf[p.off : p.off+n : p.off+n]
	p.off += n
	return b
}

// malformed returns the refusal of the body with detail, and cause if any.
func (p *Parser) malformed(detail string, cause error) *Refusal {
	what := p.what
	if what == "" {
		what = "body"
	}
	return &Refusal{Code: CodeMalformed, Text: what + ": " + detail, Err: cause}
}

// U8 reads a u8.
func (p *Parser) U8() uint8 {
	if b := p.take(1, "u8"); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a big-endian u16.
func (p *Parser) U16() uint16 {
	if b := p.take(2, "u16"); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// U32 reads a big-endian u32.
func (p *Parser) U32() uint32 {
	if b := p.take(4, "u32"); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// U64 reads a big-endian u64.
func (p *Parser) U64() uint64 {
	if b := p.take(8, "u64"); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Fixed reads a fixed[n] field and returns a copy of its bytes (nil if n is 0 or
// on error).
func (p *Parser) Fixed(n int) []byte {
	if n < 0 {
		p.Fail(fmt.Errorf("negative fixed field size %d", n))
		return nil
	}
	return clone(p.take(n, "fixed"))
}

// Bytes8 reads a bytes8 field and returns a copy of its bytes (nil if empty).
func (p *Parser) Bytes8() []byte { return clone(p.take(int(p.U8()), "bytes8")) }

// Bytes16 reads a bytes16 field and returns a copy of its bytes (nil if empty).
func (p *Parser) Bytes16() []byte { return clone(p.take(int(p.U16()), "bytes16")) }

// Bytes32 reads a bytes32 field and returns a copy of its bytes (nil if empty).
// The length is checked against the bytes actually left before anything is
// allocated.
func (p *Parser) Bytes32() []byte { return clone(p.take(int(p.U32()), "bytes32")) }

// String8 reads a string8 field, which must be valid UTF-8.
func (p *Parser) String8() string { return p.str(p.take(int(p.U8()), "string8")) }

// String16 reads a string16 field, which must be valid UTF-8.
func (p *Parser) String16() string { return p.str(p.take(int(p.U16()), "string16")) }

func (p *Parser) str(b []byte) string {
	if p.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		p.err = p.malformed(fmt.Sprintf("string ending at offset %d is not valid UTF-8", p.off), nil)
		return ""
	}
	return string(b)
}

// Rest returns all the bytes left in the body and consumes them. Unlike the
// other getters it returns a slice of the body, not a copy: it is valid only as
// long as the body is.
func (p *Parser) Rest() []byte {
	if p.err != nil {
		return nil
	}
	b := p.buf[p.off:]
	p.off = len(p.buf)
	return b
}

// Fail sets the Parser's error, unless one is already set, to a malformed
// refusal whose text is err's and whose cause is err. A message's
// UnmarshalBody calls it to refuse a value that breaks a limit.
func (p *Parser) Fail(err error) {
	if p.err != nil || err == nil {
		return
	}
	p.err = p.malformed(err.Error(), err)
}

// Err returns the first error met while parsing, or nil.
func (p *Parser) Err() error { return p.err }

// Finish returns the first error met while parsing or, if there was none, an
// error if bytes remain after the last field: trailing data is malformed.
func (p *Parser) Finish() error {
	if p.err == nil && p.off != len(p.buf) {
		p.err = p.malformed(fmt.Sprintf("%d trailing bytes after the last field", len(p.buf)-p.off), nil)
	}
	return p.err
}

// clone returns a copy of b, or nil if b is empty.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
