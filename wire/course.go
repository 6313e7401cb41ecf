package wire

import "fmt"

// Limits of the requests and answers of the board session's step 6
// (PROTOCOL.md §5.4).
const (
	MaxAssignmentIDLen = 64   // bytes of an assignment id
	MaxOriginalLen     = 1024 // bytes of a file's original base name
	MaxTitleLen        = 1024 // bytes of an assignment's title
	MaxPatternsLen     = 1024 // bytes of an assignment's accepted patterns, comma-separated
	MaxHistoryItems    = 1000 // receipts in one history, over all its records
	// MaxRecordBody is the largest message body a record carries: a History
	// or Assignments record is at most this.
	MaxRecordBody = MaxDataChunk
)

// The protocol versions a History item's receipt may be signed under.
const (
	ReceiptVersion2 uint16 = 2
	ReceiptVersion3 uint16 = 3
)

// SubmitRequest asks to submit content to an assignment (type 0x25): the
// student's first record of a submission.
type SubmitRequest struct {
	Assignment string // string8, 1..MaxAssignmentIDLen
	// Original is the file's own base name, 1..MaxOriginalLen bytes of
	// UTF-8: shown to people and matched against the assignment's
	// patterns, never used as a path.
	Original string // string16
	Name     string // string8: Original mapped to the rules of §3 (SafeName)
	Size     uint64
	SHA256   [32]byte
}

// Type returns TypeSubmitRequest.
func (*SubmitRequest) Type() Type { return TypeSubmitRequest }

// MarshalBody encodes the request.
func (m *SubmitRequest) MarshalBody(b *Builder) {
	b.String8(m.Assignment)
	b.String16(m.Original)
	b.String8(m.Name)
	b.U64(m.Size)
	b.Fixed(m.SHA256[:])
}

// UnmarshalBody decodes the request and checks its lengths. The name's rules
// are the board's to check (bad-file-name), not the decoder's.
func (m *SubmitRequest) UnmarshalBody(p *Parser) {
	m.Assignment = p.String8()
	checkLen(p, "assignment", len(m.Assignment), 1, MaxAssignmentIDLen)
	m.Original = p.String16()
	checkLen(p, "original", len(m.Original), 1, MaxOriginalLen)
	m.Name = p.String8()
	m.Size = p.U64()
	copy(m.SHA256[:], p.Fixed(32))
}

// Terms are the terms of an assignment for the student (type 0x26), the
// board's answer to a SubmitRequest. The student signs the body exactly as
// the board sent it (Raw), in the statement.
type Terms struct {
	Assignment string // string8, 1..MaxAssignmentIDLen
	Opens      uint64 // milliseconds since the Unix epoch, or 0
	Due        uint64 // the due time that applies to the student, or 0
	Lock       uint64 // the lock time that applies to the student, or 0
	Extended   bool   // u8 0 or 1: an extension applies to her
	MaxSize    uint64 // the assignment's limit for one file

	// Raw is the body as received, set by UnmarshalBody; MarshalBody
	// ignores it and encodes the fields. Use Body for the bytes the
	// statement covers.
	Raw []byte
}

// Type returns TypeTerms.
func (*Terms) Type() Type { return TypeTerms }

// MarshalBody encodes the fields (not Raw).
func (m *Terms) MarshalBody(b *Builder) {
	b.String8(m.Assignment)
	b.U64(m.Opens)
	b.U64(m.Due)
	b.U64(m.Lock)
	b.U8(boolU8(m.Extended))
	b.U64(m.MaxSize)
}

// UnmarshalBody decodes the terms, checks their values and keeps the body's
// bytes in Raw.
func (m *Terms) UnmarshalBody(p *Parser) {
	start := p.off
	m.Assignment = p.String8()
	checkLen(p, "assignment", len(m.Assignment), 1, MaxAssignmentIDLen)
	m.Opens = p.U64()
	m.Due = p.U64()
	m.Lock = p.U64()
	m.Extended = p.flag("extended")
	m.MaxSize = p.U64()
	if p.Err() == nil {
		m.Raw = clone(p.buf[start:p.off])
	}
}

// Body returns the body the statement covers: Raw when the terms were
// received, else the encoding of the fields (the board's, as it sends them).
func (m *Terms) Body() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	b := Builder{what: "Terms"}
	m.MarshalBody(&b)
	return b.Bytes(), b.Err()
}

// HistoryRequest asks for the student's receipts (type 0x27).
type HistoryRequest struct {
	Assignment string // string8, 0..MaxAssignmentIDLen: empty for every assignment
}

// Type returns TypeHistoryRequest.
func (*HistoryRequest) Type() Type { return TypeHistoryRequest }

// MarshalBody encodes the request.
func (m *HistoryRequest) MarshalBody(b *Builder) { b.String8(m.Assignment) }

// UnmarshalBody decodes the request.
func (m *HistoryRequest) UnmarshalBody(p *Parser) {
	m.Assignment = p.String8()
	checkLen(p, "assignment", len(m.Assignment), 0, MaxAssignmentIDLen)
}

// HistoryItem is one stored receipt in a History.
type HistoryItem struct {
	// Version is the protocol version the receipt was signed under:
	// ReceiptVersion2 or ReceiptVersion3.
	Version uint16
	// Receipt is the Receipt body exactly as the board signed and sent it
	// (bytes16, 1..65535).
	Receipt []byte
	// Certificate is the board certificate that signed it, DER (bytes16,
	// 1..MaxCertLen).
	Certificate []byte
}

// EncodedLen returns the bytes the item takes in a History body.
func (it *HistoryItem) EncodedLen() int { return 2 + 2 + len(it.Receipt) + 2 + len(it.Certificate) }

// History is one record of the student's history (type 0x28), newest
// first; More says whether another record follows.
type History struct {
	More  bool          // u8 0 or 1
	Items []HistoryItem // list8
}

// Type returns TypeHistory.
func (*History) Type() Type { return TypeHistory }

// MarshalBody encodes the record.
func (m *History) MarshalBody(b *Builder) {
	b.U8(boolU8(m.More))
	if len(m.Items) > 255 {
		b.Fail(fmt.Errorf("%d history items do not fit a list8", len(m.Items)))
		return
	}
	b.U8(uint8(len(m.Items)))
	for i := range m.Items {
		it := &m.Items[i]
		b.U16(it.Version)
		b.Bytes16(it.Receipt)
		b.Bytes16(it.Certificate)
	}
}

// UnmarshalBody decodes the record and checks its values.
func (m *History) UnmarshalBody(p *Parser) {
	m.More = p.flag("more")
	n := int(p.U8())
	if p.Err() != nil || n == 0 {
		return
	}
	m.Items = make([]HistoryItem, 0, min(n, len(p.buf)/7)) // an item takes at least 7 bytes
	for range n {
		var it HistoryItem
		it.Version = p.U16()
		if p.Err() == nil && it.Version != ReceiptVersion2 && it.Version != ReceiptVersion3 {
			p.Fail(fmt.Errorf("receipt version %d is not 2 or 3", it.Version))
		}
		it.Receipt = p.Bytes16()
		checkLen(p, "receipt", len(it.Receipt), 1, 1<<16-1)
		it.Certificate = p.Bytes16()
		checkLen(p, "certificate", len(it.Certificate), 1, MaxCertLen)
		if p.Err() != nil {
			return
		}
		m.Items = append(m.Items, it)
	}
}

// AssignmentsRequest asks for the assignments (type 0x29); its body is empty.
type AssignmentsRequest struct{}

// Type returns TypeAssignmentsRequest.
func (*AssignmentsRequest) Type() Type { return TypeAssignmentsRequest }

// MarshalBody encodes nothing.
func (*AssignmentsRequest) MarshalBody(*Builder) {}

// UnmarshalBody decodes nothing.
func (*AssignmentsRequest) UnmarshalBody(*Parser) {}

// AssignmentItem is one assignment in an Assignments answer, with the times
// that apply to the student.
type AssignmentItem struct {
	ID       string // string8, 1..MaxAssignmentIDLen
	Title    string // string16, 0..MaxTitleLen
	Opens    uint64
	Due      uint64
	Lock     uint64
	Extended bool // u8 0 or 1
	MaxSize  uint64
	Patterns string // string16, 0..MaxPatternsLen: comma-separated
	Versions uint32 // her submissions to it so far
	Active   uint32 // the version that counts, 0 for none
}

// EncodedLen returns the bytes the item takes in an Assignments body.
func (it *AssignmentItem) EncodedLen() int {
	return 1 + len(it.ID) + 2 + len(it.Title) + 3*8 + 1 + 8 + 2 + len(it.Patterns) + 4 + 4
}

// Assignments lists the assignments for the student (type 0x2a), by due
// time.
type Assignments struct {
	Items []AssignmentItem // list8
}

// Type returns TypeAssignments.
func (*Assignments) Type() Type { return TypeAssignments }

// MarshalBody encodes the list.
func (m *Assignments) MarshalBody(b *Builder) {
	if len(m.Items) > 255 {
		b.Fail(fmt.Errorf("%d assignments do not fit a list8", len(m.Items)))
		return
	}
	b.U8(uint8(len(m.Items)))
	for i := range m.Items {
		it := &m.Items[i]
		b.String8(it.ID)
		b.String16(it.Title)
		b.U64(it.Opens)
		b.U64(it.Due)
		b.U64(it.Lock)
		b.U8(boolU8(it.Extended))
		b.U64(it.MaxSize)
		b.String16(it.Patterns)
		b.U32(it.Versions)
		b.U32(it.Active)
	}
}

// UnmarshalBody decodes the list and checks its values.
func (m *Assignments) UnmarshalBody(p *Parser) {
	n := int(p.U8())
	if p.Err() != nil || n == 0 {
		return
	}
	m.Items = make([]AssignmentItem, 0, min(n, len(p.buf)/47)) // an item takes at least 47 bytes
	for range n {
		var it AssignmentItem
		it.ID = p.String8()
		checkLen(p, "id", len(it.ID), 1, MaxAssignmentIDLen)
		it.Title = p.String16()
		checkLen(p, "title", len(it.Title), 0, MaxTitleLen)
		it.Opens = p.U64()
		it.Due = p.U64()
		it.Lock = p.U64()
		it.Extended = p.flag("extended")
		it.MaxSize = p.U64()
		it.Patterns = p.String16()
		checkLen(p, "patterns", len(it.Patterns), 0, MaxPatternsLen)
		it.Versions = p.U32()
		it.Active = p.U32()
		if p.Err() != nil {
			return
		}
		m.Items = append(m.Items, it)
	}
}

// boolU8 encodes a flag as a u8.
func boolU8(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// flag reads a u8 that must be 0 or 1.
func (p *Parser) flag(field string) bool {
	v := p.U8()
	if p.err == nil && v > 1 {
		p.Fail(fmt.Errorf("%s is %d, not 0 or 1", field, v))
	}
	return v == 1
}
