package wire

import (
	"crypto/sha256"
	"fmt"
)

// The CA exchange (PROTOCOL.md §4).
const (
	TypeEnrollRequest  Type = 0x10 // client → CA: version, SID, CSR, root, authorization
	TypeEnrollAccepted Type = 0x11 // CA → client: serial, notAfter and the certificate
	TypeFetch          Type = 0x12 // client → CA: version; send me root.pem or crl.pem
)

// Enrollment profiles (EnrollRequest.Profile).
const (
	ProfileStudent uint8 = 1 // a student certificate, EKU clientAuth
	ProfileBoard   uint8 = 2 // the board's certificate, EKU serverAuth
)

// Authorization kinds of an EnrollRequest (EnrollRequest.Auth, PROTOCOL.md §4.2).
const (
	AuthNone    uint8 = 0 // nothing: a student under policy "open"
	AuthToken   uint8 = 1 // a token's Ed25519 key signed the binding
	AuthRenewal uint8 = 2 // the certificate being renewed, whose key signed the binding
)

// Limits of the CA exchange.
const (
	MaxSIDLen          = 64       // bytes of a SID or board name
	MaxCSRLen          = 16 << 10 // bytes of a DER CSR
	MaxSerialLen       = 20       // bytes of a serial number (RFC 5280 §4.1.2.2)
	RootFingerprintLen = 32       // bytes of a root's fingerprint, SHA-256 of its DER
	TokenKeyLen        = 32       // bytes of a token's Ed25519 public key
	TokenSignatureLen  = 64       // bytes of an Ed25519 signature
)

// ContextEnroll begins the binding an EnrollRequest's signature covers.
const ContextEnroll = "pkiboard v2 enroll"

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
// lengths and requires the authorization fields to fit Auth; the CA checks the
// contents. A receiver checks Version, the first two body bytes, before it
// decodes the rest (PROTOCOL.md §0).
type EnrollRequest struct {
	Version     uint16 // ProtocolVersion
	Profile     uint8
	SID         string                   // string8, 1..MaxSIDLen bytes
	CSR         []byte                   // bytes16, DER, 1..MaxCSRLen bytes
	Root        [RootFingerprintLen]byte // the fingerprint of the root the client trusts
	Auth        uint8                    // AuthNone, AuthToken or AuthRenewal
	TokenKey    []byte                   // bytes8: AuthToken: TokenKeyLen bytes; otherwise empty
	Certificate []byte                   // bytes16: AuthRenewal: DER, 1..MaxCertLen; otherwise empty
	Signature   []byte                   // bytes16: AuthToken: TokenSignatureLen bytes; AuthRenewal: 1..MaxSignatureLen; AuthNone: empty
}

// Type returns TypeEnrollRequest.
func (*EnrollRequest) Type() Type { return TypeEnrollRequest }

// MarshalBody encodes the request.
func (m *EnrollRequest) MarshalBody(b *Builder) {
	b.U16(m.Version)
	b.U8(m.Profile)
	b.String8(m.SID)
	b.Bytes16(m.CSR)
	b.Fixed(m.Root[:])
	b.U8(m.Auth)
	b.Bytes8(m.TokenKey)
	b.Bytes16(m.Certificate)
	b.Bytes16(m.Signature)
}

// UnmarshalBody decodes the request and checks the limits of PROTOCOL.md §4.2.
func (m *EnrollRequest) UnmarshalBody(p *Parser) {
	m.Version = p.U16()
	m.Profile = p.U8()
	m.SID = p.String8()
	checkLen(p, "sid", len(m.SID), 1, MaxSIDLen)
	m.CSR = p.Bytes16()
	checkLen(p, "csr", len(m.CSR), 1, MaxCSRLen)
	copy(m.Root[:], p.Fixed(RootFingerprintLen))
	m.Auth = p.U8()
	m.TokenKey = p.Bytes8()
	m.Certificate = p.Bytes16()
	m.Signature = p.Bytes16()
	if p.Err() != nil {
		return
	}
	tokenKey, cert, sig := [2]int{0, 0}, [2]int{0, 0}, [2]int{0, 0}
	switch m.Auth {
	case AuthNone:
	case AuthToken:
		tokenKey, sig = [2]int{TokenKeyLen, TokenKeyLen}, [2]int{TokenSignatureLen, TokenSignatureLen}
	case AuthRenewal:
		cert, sig = [2]int{1, MaxCertLen}, [2]int{1, MaxSignatureLen}
	default:
		p.Fail(fmt.Errorf("auth %d is not 0 (none), 1 (token) or 2 (renewal)", m.Auth))
		return
	}
	checkLen(p, fmt.Sprintf("token_key with auth %d", m.Auth), len(m.TokenKey), tokenKey[0], tokenKey[1])
	checkLen(p, fmt.Sprintf("certificate with auth %d", m.Auth), len(m.Certificate), cert[0], cert[1])
	checkLen(p, fmt.Sprintf("signature with auth %d", m.Auth), len(m.Signature), sig[0], sig[1])
}

// EnrollBinding returns what an EnrollRequest's signature covers (PROTOCOL.md
// §4.2): ContextEnroll || 0x00 || auth || profile || sid: string8 || root ||
// SHA-256(csr). A sid longer than 255 bytes cannot be encoded; its length
// byte is then taken modulo 256, and such a request fails decoding anyway.
func EnrollBinding(auth, profile uint8, sid string, root [RootFingerprintLen]byte, csr []byte) []byte {
	sum := sha256.Sum256(csr)
	msg := make([]byte, 0, len(ContextEnroll)+1+2+1+len(sid)+RootFingerprintLen+sha256.Size)
	msg = append(append(msg, ContextEnroll...), 0, auth, profile, uint8(len(sid)))
	msg = append(msg, sid...)
	msg = append(msg, root[:]...)
	return append(msg, sum[:]...)
}

// EnrollAccepted answers an EnrollRequest with the certificate the CA issued
// and the CA's root certificate (type 0x11).
type EnrollAccepted struct {
	Serial      []byte // bytes8, big-endian, 1..MaxSerialLen bytes
	NotAfter    uint64 // seconds since the Unix epoch
	Certificate []byte // bytes16, DER, 1..MaxCertLen bytes
	Root        []byte // bytes16, DER, 1..MaxCertLen bytes: the root the request named
}

// Type returns TypeEnrollAccepted.
func (*EnrollAccepted) Type() Type { return TypeEnrollAccepted }

// MarshalBody encodes the serial, notAfter, the certificate and the root.
func (m *EnrollAccepted) MarshalBody(b *Builder) {
	b.Bytes8(m.Serial)
	b.U64(m.NotAfter)
	b.Bytes16(m.Certificate)
	b.Bytes16(m.Root)
}

// UnmarshalBody decodes the serial, notAfter, the certificate and the root
// and checks their lengths.
func (m *EnrollAccepted) UnmarshalBody(p *Parser) {
	m.Serial = p.Bytes8()
	checkLen(p, "serial", len(m.Serial), 1, MaxSerialLen)
	m.NotAfter = p.U64()
	m.Certificate = p.Bytes16()
	checkLen(p, "certificate", len(m.Certificate), 1, MaxCertLen)
	m.Root = p.Bytes16()
	checkLen(p, "root", len(m.Root), 1, MaxCertLen)
}

// Fetch asks the CA for a public file (type 0x12): "root.pem" or "crl.pem".
type Fetch struct {
	Version uint16 // ProtocolVersion
	Name    string // string8
}

// Type returns TypeFetch.
func (*Fetch) Type() Type { return TypeFetch }

// MarshalBody encodes the version and the name.
func (m *Fetch) MarshalBody(b *Builder) {
	b.U16(m.Version)
	b.String8(m.Name)
}

// UnmarshalBody decodes the version and the name.
func (m *Fetch) UnmarshalBody(p *Parser) {
	m.Version = p.U16()
	m.Name = p.String8()
}
