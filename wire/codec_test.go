package wire

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// allFields is a test message with one field of every kind, of type 0xfe,
// which is not a message of PROTOCOL.md: Marshal encodes it, and
// unmarshalAllFields decodes it with a Parser as Unmarshal would.
type allFields struct {
	A uint8
	B uint16
	C uint32
	D uint64
	E [3]byte
	F []byte // bytes8
	G []byte // bytes16
	H []byte // bytes32
	I string // string8
	J string // string16
}

const typeAllFields Type = 0xfe

func (*allFields) Type() Type { return typeAllFields }

// unmarshalAllFields decodes the encoding of an allFields message, type byte
// included, strictly.
func unmarshalAllFields(enc []byte) (*allFields, error) {
	if len(enc) == 0 || Type(enc[0]) != typeAllFields {
		return nil, fmt.Errorf("not an allFields message: %x", enc)
	}
	m := new(allFields)
	p := NewParser(enc[1:])
	m.UnmarshalBody(p)
	if err := p.Finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *allFields) MarshalBody(b *Builder) {
	b.U8(m.A)
	b.U16(m.B)
	b.U32(m.C)
	b.U64(m.D)
	b.Fixed(m.E[:])
	b.Bytes8(m.F)
	b.Bytes16(m.G)
	b.Bytes32(m.H)
	b.String8(m.I)
	b.String16(m.J)
}

func (m *allFields) UnmarshalBody(p *Parser) {
	m.A = p.U8()
	m.B = p.U16()
	m.C = p.U32()
	m.D = p.U64()
	copy(m.E[:], p.Fixed(3))
	m.F = p.Bytes8()
	m.G = p.Bytes16()
	m.H = p.Bytes32()
	m.I = p.String8()
	m.J = p.String16()
}

func TestBuilderEncoding(t *testing.T) {
	m := &allFields{
		A: 0x01, B: 0x0203, C: 0x04050607, D: 0x08090a0b0c0d0e0f,
		E: [3]byte{'e', 'e', 'e'},
		F: []byte("f"), G: []byte("gg"), H: []byte("hhh"),
		I: "i", J: "jé",
	}
	got, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xfe,
		0x01,
		0x02, 0x03,
		0x04, 0x05, 0x06, 0x07,
		0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
		'e', 'e', 'e',
		1, 'f',
		0, 2, 'g', 'g',
		0, 0, 0, 3, 'h', 'h', 'h',
		1, 'i',
		0, 3, 'j', 0xc3, 0xa9,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestBuilderTooLong(t *testing.T) {
	long := strings.Repeat("x", 1<<16)
	for _, tc := range []struct {
		name string
		add  func(b *Builder)
		want string
	}{
		{"bytes8", func(b *Builder) { b.Bytes8([]byte(long[:256])) }, "wire: encoding: bytes8 field of 256 bytes exceeds 255"},
		{"string8", func(b *Builder) { b.String8(long[:256]) }, "wire: encoding: string8 field of 256 bytes exceeds 255"},
		{"bytes16", func(b *Builder) { b.Bytes16([]byte(long)) }, "wire: encoding: bytes16 field of 65536 bytes exceeds 65535"},
		{"string16", func(b *Builder) { b.String16(long) }, "wire: encoding: string16 field of 65536 bytes exceeds 65535"},
		{"string8 utf8", func(b *Builder) { b.String8("a\xffb") }, "wire: encoding: string8 field is not valid UTF-8"},
		{"string16 utf8", func(b *Builder) { b.String16("\xc3") }, "wire: encoding: string16 field is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder
			b.U8(1)
			tc.add(&b)
			b.U8(2) // ignored: the error is sticky
			b.String8("ok")
			err := b.Err()
			var r *Refusal
			if err == nil || errors.As(err, &r) {
				t.Fatalf("got %v, want a plain encoding error (not a refusal)", err)
			}
			if err.Error() != tc.want {
				t.Errorf("got %q, want %q", err, tc.want)
			}
			if got := b.Bytes(); !bytes.Equal(got, []byte{1}) {
				t.Errorf("got bytes %x after the error, want only 01: nothing truncated or appended", got)
			}
		})
	}
}

func TestBuilderLimitsExact(t *testing.T) {
	var b Builder
	b.Bytes8(make([]byte, 255))
	b.String16(strings.Repeat("x", 65535))
	if err := b.Err(); err != nil {
		t.Fatalf("values of exactly the limit: %v", err)
	}
	if got, want := len(b.Bytes()), 1+255+2+65535; got != want {
		t.Errorf("got %d bytes, want %d", got, want)
	}
}

func TestMarshalNamesMessageInError(t *testing.T) {
	_, err := Marshal(&FileHeader{Name: strings.Repeat("n", 256)})
	if want := "wire: encoding FileHeader: string8 field of 256 bytes exceeds 255"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	dst := []byte("prefix")
	out, err := AppendMessage(dst, &Data{})
	if want := "wire: encoding Data: Data of 0 bytes is outside 1..65536"; err == nil || err.Error() != want || CodeOf(err) != CodeInternal {
		t.Fatalf("empty Data: got %v, want the plain encoding error %q", err, want)
	}
	if string(out) != "prefix" {
		t.Errorf("AppendMessage on error: got %q, want dst unchanged", out)
	}
}

func TestParserSticky(t *testing.T) {
	p := NewParser([]byte{0x01, 0x02})
	if got := p.U16(); got != 0x0102 {
		t.Fatalf("U16: got %#x, want 0x0102", got)
	}
	if got := p.U8(); got != 0 {
		t.Errorf("U8 past the end: got %d, want 0", got)
	}
	err := p.Err()
	if !isRefusal(err, CodeMalformed) {
		t.Fatalf("got %v, want a malformed refusal", err)
	}
	if want := "malformed: body: truncated u8 at offset 2 (needs 1 bytes, 0 left)"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	// Every getter now returns its zero value, and the first error stays.
	if p.U64() != 0 || p.Bytes8() != nil || p.String16() != "" || p.Rest() != nil || p.Fixed(0) != nil {
		t.Errorf("getters after an error returned non-zero values")
	}
	p.Fail(errors.New("later"))
	if p.Finish() != err {
		t.Errorf("Finish: got %v, want the first error %v", p.Finish(), err)
	}
}

func TestParserCopiesExceptRest(t *testing.T) {
	body := []byte{2, 'a', 'b', 'c', 'd'}
	p := NewParser(body)
	b := p.Bytes8()
	rest := p.Rest()
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	body[1], body[3] = 'X', 'Y'
	if string(b) != "ab" {
		t.Errorf("Bytes8 aliases the body: got %q after changing it, want \"ab\"", b)
	}
	if string(rest) != "Yd" {
		t.Errorf("Rest does not alias the body: got %q after changing it, want \"Yd\"", rest)
	}
}

func TestParserFail(t *testing.T) {
	limit := errors.New("name over the limit")
	p := NewParser(nil)
	p.Fail(limit)
	err := p.Err()
	if !isRefusal(err, CodeMalformed) || !errors.Is(err, limit) {
		t.Fatalf("got %v, want a malformed refusal matching the given error", err)
	}
	if want := "malformed: body: name over the limit"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestParserTrailing(t *testing.T) {
	p := NewParser([]byte{1, 2, 3})
	p.U8()
	err := p.Finish()
	if !isRefusal(err, CodeMalformed) {
		t.Fatalf("got %v, want a malformed refusal", err)
	}
	if want := "malformed: body: 2 trailing bytes after the last field"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestParserBytes32LengthBeyondBody(t *testing.T) {
	p := NewParser([]byte{0xff, 0xff, 0xff, 0xff, 'x'})
	if got := p.Bytes32(); got != nil {
		t.Errorf("got %d bytes, want nil", len(got))
	}
	if !isRefusal(p.Err(), CodeMalformed) {
		t.Errorf("got %v, want a malformed refusal", p.Err())
	}
}
