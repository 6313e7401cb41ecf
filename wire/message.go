package wire

import "fmt"

// ProtocolVersion is the version of PROTOCOL.md this package speaks: the
// first body field of every message a client sends first on a connection, and
// of the board's ServerHello (PROTOCOL.md §0).
const ProtocolVersion = 4

// A Type is a message's type byte, the first byte of a frame's payload
// (PROTOCOL.md §2).
type Type uint8

// String returns the message's name, such as "FileHeader", or "Type(0x99)" for
// a type byte that is not a message.
func (t Type) String() string {
	if name := messages[t].name; name != "" {
		return name
	}
	return fmt.Sprintf("Type(0x%02x)", uint8(t))
}

// A Message is one protocol message: a type byte and a body encoded with the
// field kinds of PROTOCOL.md §2.
//
// Implementations are pointer types whose Type method returns a constant without
// reading the receiver, so that it may be called on a nil pointer (Expect does).
type Message interface {
	// Type returns the message's type byte.
	Type() Type
	// MarshalBody appends the body to b; it reports a value it cannot encode
	// with b.Fail.
	MarshalBody(b *Builder)
	// UnmarshalBody reads the body's fields from p, in order; it refuses a value
	// that breaks a limit with p.Fail. It need not check for trailing bytes.
	UnmarshalBody(p *Parser)
}

// MessageReadWriter reads and writes whole messages. *Conn implements it over a
// framed connection; an encrypted session implements it over records.
type MessageReadWriter interface {
	ReadMessage() (Message, error)
	WriteMessage(Message) error
}

// messages is every message of PROTOCOL.md §2–§6, indexed by type byte: its
// name, and a constructor of an empty value for Unmarshal to decode into. A
// type byte with no name is not a message.
var messages = [256]struct {
	name   string
	newMsg func() Message
}{
	TypeError:          {"Error", func() Message { return new(Error) }},
	TypeFileHeader:     {"FileHeader", func() Message { return new(FileHeader) }},
	TypeFileOffset:     {"FileOffset", func() Message { return new(FileOffset) }},
	TypeData:           {"Data", func() Message { return new(Data) }},
	TypeFileAck:        {"FileAck", func() Message { return new(FileAck) }},
	TypeEnrollRequest:  {"EnrollRequest", func() Message { return new(EnrollRequest) }},
	TypeEnrollAccepted: {"EnrollAccepted", func() Message { return new(EnrollAccepted) }},
	TypeFetch:          {"Fetch", func() Message { return new(Fetch) }},
	TypeWatchRequest:   {"WatchRequest", func() Message { return new(WatchRequest) }},
	TypeWatchChallenge: {"WatchChallenge", func() Message { return new(WatchChallenge) }},
	TypeWatchProof:     {"WatchProof", func() Message { return new(WatchProof) }},
	TypeStatusUpdate:   {"StatusUpdate", func() Message { return new(StatusUpdate) }},
	TypeStatusAck:      {"StatusAck", func() Message { return new(StatusAck) }},
	TypeClientHello:    {"ClientHello", func() Message { return new(ClientHello) }},
	TypeServerHello:    {"ServerHello", func() Message { return new(ServerHello) }},
	TypeServerVerify:   {"ServerVerify", func() Message { return new(ServerVerify) }},
	TypeSubmitEnd:      {"SubmitEnd", func() Message { return new(SubmitEnd) }},
	TypeReceipt:        {"Receipt", func() Message { return new(Receipt) }},

	TypeSubmitRequest:      {"SubmitRequest", func() Message { return new(SubmitRequest) }},
	TypeTerms:              {"Terms", func() Message { return new(Terms) }},
	TypeHistoryRequest:     {"HistoryRequest", func() Message { return new(HistoryRequest) }},
	TypeHistory:            {"History", func() Message { return new(History) }},
	TypeAssignmentsRequest: {"AssignmentsRequest", func() Message { return new(AssignmentsRequest) }},
	TypeAssignments:        {"Assignments", func() Message { return new(Assignments) }},
	TypeAdminRequest:       {"AdminRequest", func() Message { return new(AdminRequest) }},
	TypeAdminResponse:      {"AdminResponse", func() Message { return new(AdminResponse) }},
}

// Marshal returns m's encoding: its type byte, then its body.
func Marshal(m Message) ([]byte, error) {
	return AppendMessage(nil, m)
}

// AppendMessage appends m's encoding to dst and returns the extended slice. On
// error (a value the Builder cannot encode) it returns dst unchanged (in length)
// and the Builder's error.
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	t := m.Type()
	b := Builder{buf: append(dst, byte(t)), what: t.String()}
	m.MarshalBody(&b)
	if b.err != nil {
		return dst, b.err
	}
	return b.buf, nil
}

// Unmarshal decodes a frame payload as a message. Each error is a *Refusal: an
// empty payload, or a body that does not decode exactly with no bytes left
// over, is malformed; a type byte that is not a message is unknown-message.
//
// The message shares no memory with payload, except a *Data message, whose Bytes
// are a slice of it.
func Unmarshal(payload []byte) (Message, error) {
	if len(payload) == 0 {
		return nil, &Refusal{Code: CodeMalformed, Text: "empty frame (a message needs at least its type byte)"}
	}
	t := Type(payload[0])
	info := messages[t]
	if info.newMsg == nil {
		return nil, Refusef(CodeUnknownMessage, "unknown message type 0x%02x", uint8(t))
	}
	m := info.newMsg()
	p := Parser{buf: payload[1:], what: info.name}
	m.UnmarshalBody(&p)
	if err := p.Finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalBodyOf decodes body, a message's body without its type byte, into
// m, strictly (no bytes left over), whatever type the table gives m's type
// byte: it decodes a stored body of a layout the table does not use, such as
// a [ReceiptV2]. Its errors are *Refusal of code malformed.
func UnmarshalBodyOf(m Message, body []byte) error {
	p := Parser{buf: body, what: m.Type().String()}
	m.UnmarshalBody(&p)
	return p.Finish()
}

// Expect returns m if it is a T, given a message and a read error as a read
// returns them:
//
//	fo, err := wire.Expect[*wire.FileOffset](rw.ReadMessage())
//	hello, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(payload))
//
// A read error is returned as is. If the peer sent an *Error instead, that is
// returned as the error, so that the caller sees the peer's code; any other
// message is refused with a *Refusal of code unexpected-message ("got a
// FileAck message where a FileOffset was expected"). Expect does not answer the
// peer: that is the caller's decision (see Answer).
func Expect[T Message](m Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if v, ok := m.(T); ok {
		return v, nil
	}
	if e, ok := m.(*Error); ok {
		return zero, e
	}
	var want Type
	if any(zero) != nil { // T is a concrete (pointer) type, not an interface
		want = zero.Type()
	}
	return zero, Refusef(CodeUnexpectedMessage, "got a %v message where a %v was expected", m.Type(), want)
}
