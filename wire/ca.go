package wire

import "fmt"

// The CA exchange (PROTOCOL.md §4).
const (
	TypeEnrollRequest  Type = 0x10 // client → CA: SID, CSR, token
	TypeEnrollAccepted Type = 0x11 // CA → client: serial and notAfter, then two files
	TypeFetch          Type = 0x12 // client → CA: send me root.pem or crl.pem
)

// Enrollment profiles (EnrollRequest.Profile).
const (
	ProfileStudent uint8 = 1 // a student certificate, EKU clientAuth
	ProfileBoard   uint8 = 2 // the board's certificate, EKU serverAuth
)

// Limits of the CA exchange.
const (
	MaxSIDLen    = 64       // bytes of a SID or board name
	MaxCSRLen    = 16 << 10 // bytes of a DER CSR
	MaxTokenLen  = 255      // bytes of a token (string8)
	MaxSerialLen = 20       // bytes of a serial number (RFC 5280 §4.1.2.2)
)

// Error codes of the CA exchange (PROTOCOL.md §4).
const (
	CodeBadCSR             Code = 16
	CodeBadCSRSignature    Code = 17
	CodeCNMismatch         Code = 18
	CodeBadSID             Code = 19
	CodeWeakKey            Code = 20
	CodeTokenRequired      Code = 21
	CodeTokenInvalid       Code = 22
	CodeTokenExpired       Code = 23
	CodeTokenUsed          Code = 24
	CodeNotOnRoster        Code = 25
	CodeBoardNotAuthorized Code = 26
	CodeNotFound           Code = 27
	CodeBadProfile         Code = 28
	CodeWrongRoot          Code = 29 // the request names another root than the CA's
	CodeBadRenewal         Code = 30 // the certificate to renew cannot renew, or its signature fails
	CodeSameKey            Code = 31 // a renewal must certify a new key
)

// EnrollRequest asks the CA for a certificate (type 0x10). Decoding bounds the
// lengths; the CA checks the contents.
type EnrollRequest struct {
	Profile uint8
	SID     string // string8, 1..MaxSIDLen bytes
	CSR     []byte // bytes16, DER, 1..MaxCSRLen bytes
	Token   string // string8, may be empty
}

// Type returns TypeEnrollRequest.
func (*EnrollRequest) Type() Type { return TypeEnrollRequest }

// MarshalBody encodes the profile, SID, CSR and token.
func (m *EnrollRequest) MarshalBody(b *Builder) {
	b.U8(m.Profile)
	b.String8(m.SID)
	b.Bytes16(m.CSR)
	b.String8(m.Token)
}

// UnmarshalBody decodes the profile, SID, CSR and token and checks their lengths.
func (m *EnrollRequest) UnmarshalBody(p *Parser) {
	m.Profile = p.U8()
	m.SID = p.String8()
	m.CSR = p.Bytes16()
	m.Token = p.String8()
	switch {
	case p.Err() != nil:
	case len(m.SID) == 0 || len(m.SID) > MaxSIDLen:
		p.Fail(fmt.Errorf("sid of %d bytes is outside 1..%d", len(m.SID), MaxSIDLen))
	case len(m.CSR) == 0 || len(m.CSR) > MaxCSRLen:
		p.Fail(fmt.Errorf("csr of %d bytes is outside 1..%d", len(m.CSR), MaxCSRLen))
	}
}

// EnrollAccepted announces an issued certificate (type 0x11); cert.pem and
// root.pem follow as file transfers from the CA.
type EnrollAccepted struct {
	Serial   []byte // bytes8, big-endian, 1..MaxSerialLen bytes
	NotAfter uint64 // seconds since the Unix epoch
}

// Type returns TypeEnrollAccepted.
func (*EnrollAccepted) Type() Type { return TypeEnrollAccepted }

// MarshalBody encodes the serial and notAfter.
func (m *EnrollAccepted) MarshalBody(b *Builder) {
	b.Bytes8(m.Serial)
	b.U64(m.NotAfter)
}

// UnmarshalBody decodes the serial and notAfter.
func (m *EnrollAccepted) UnmarshalBody(p *Parser) {
	m.Serial = p.Bytes8()
	m.NotAfter = p.U64()
	if p.Err() == nil && (len(m.Serial) == 0 || len(m.Serial) > MaxSerialLen) {
		p.Fail(fmt.Errorf("serial of %d bytes is outside 1..%d", len(m.Serial), MaxSerialLen))
	}
}

// Fetch asks the CA for a public file (type 0x12): "root.pem" or "crl.pem".
type Fetch struct {
	Name string // string8
}

// Type returns TypeFetch.
func (*Fetch) Type() Type { return TypeFetch }

// MarshalBody encodes the name.
func (m *Fetch) MarshalBody(b *Builder) { b.String8(m.Name) }

// UnmarshalBody decodes the name.
func (m *Fetch) UnmarshalBody(p *Parser) { m.Name = p.String8() }
