package wire

// The local operator socket (PROTOCOL.md §6): a daemon's Unix socket through
// which the operator commands of the same installation reach it.
const (
	TypeAdminRequest  Type = 0x40 // operator → daemon
	TypeAdminResponse Type = 0x41 // daemon → operator
)

// MaxAdminFrame is the frame limit on the operator socket: a listing of every
// certificate or submission can be large.
const MaxAdminFrame = 64 << 20

// AdminRequest asks the daemon to run an operator command (type 0x40).
type AdminRequest struct {
	Command string // string8, e.g. "certs", "revoke"
	Args    []byte // bytes32, a JSON object
}

// Type returns TypeAdminRequest.
func (*AdminRequest) Type() Type { return TypeAdminRequest }

// MarshalBody encodes the command and its arguments.
func (m *AdminRequest) MarshalBody(b *Builder) {
	b.String8(m.Command)
	b.Bytes32(m.Args)
}

// UnmarshalBody decodes the command and its arguments.
func (m *AdminRequest) UnmarshalBody(p *Parser) {
	m.Command = p.String8()
	m.Args = p.Bytes32()
}

// AdminResponse carries a command's result (type 0x41).
type AdminResponse struct {
	Result []byte // bytes32, JSON
}

// Type returns TypeAdminResponse.
func (*AdminResponse) Type() Type { return TypeAdminResponse }

// MarshalBody encodes the result.
func (m *AdminResponse) MarshalBody(b *Builder) { b.Bytes32(m.Result) }

// UnmarshalBody decodes the result.
func (m *AdminResponse) UnmarshalBody(p *Parser) { m.Result = p.Bytes32() }
