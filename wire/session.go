package wire

import (
	"crypto/sha256"
	"fmt"
)

// The board session (PROTOCOL.md §5).
const (
	TypeClientHello  Type = 0x20 // student → board
	TypeServerHello  Type = 0x21 // board → student
	TypeServerVerify Type = 0x22 // board → student
	TypeSubmitEnd    Type = 0x23 // student → board, as a record
	TypeReceipt      Type = 0x24 // board → student, as a record

	TypeSubmitRequest      Type = 0x25 // student → board, as a record (§5.4)
	TypeTerms              Type = 0x26 // board → student, as a record
	TypeHistoryRequest     Type = 0x27 // student → board, as a record
	TypeHistory            Type = 0x28 // board → student, as a record
	TypeAssignmentsRequest Type = 0x29 // student → board, as a record
	TypeAssignments        Type = 0x2a // board → student, as a record
)

// Limits and constants of the session.
const (
	RandomLen       = 32
	MaxCertLen      = 8192 // bytes of one DER certificate
	MaxSuites       = 16
	MaxSignatureLen = 1024 // bytes of a signature (RSA-8192 needs 1024)
	MaxKeyShareLen  = 4096 // bytes of a KEM public key, ciphertext or encrypted session key
	MaxReceiptIDLen = 64
)

// ContextClientHello is the context string of the student's signature over
// her ClientHello (PROTOCOL.md §5.1).
const ContextClientHello = "pkiboard v2 client hello"

// KEMXWing is the HPKE KEM id of MLKEM768-X25519 (X-Wing).
const KEMXWing uint16 = 0x647a

// Key transports (ServerHello.KeyTransport).
const (
	KeyTransportRSAOAEP  uint8 = 1 // RSA-OAEP-SHA256
	KeyTransportHPKEP256 uint8 = 2 // HPKE DHKEM(P-256), HKDF-SHA256, AES-256-GCM
	KeyTransportHPKEP384 uint8 = 3 // HPKE DHKEM(P-384), HKDF-SHA256, AES-256-GCM
	maxKeyTransport            = KeyTransportHPKEP384
	minKeyTransport            = KeyTransportRSAOAEP
)

// Error codes of the session (PROTOCOL.md §5).
const (
	CodeUnknownCA              Code = 48
	CodeCertExpired            Code = 49
	CodeCertRevoked            Code = 50
	CodeSIDMismatch            Code = 51 // the certificate CN is not the SID the hello claims
	CodeWrongUsage             Code = 52
	CodeSuiteNotAllowed        Code = 53
	CodeBadVersion             Code = 54
	CodeBadRecordMAC           Code = 55
	CodeBadSubmissionSignature Code = 56
	CodeCRLUnavailable         Code = 57
	CodeBadKeyShare            Code = 58
	CodeUnsupportedKey         Code = 59
	CodeBadTranscriptSignature Code = 60
	CodeNameMismatch           Code = 61
	CodeKeyTransportFailed     Code = 62
	CodeStaleHello             Code = 63 // the hello's time is outside the board's window, or it was replayed
	CodeBadHelloSignature      Code = 64 // the hello's signature does not verify
	CodeBoardRevoked           Code = 65 // the board's status says it is revoked
	CodeStaleStatus            Code = 66 // the board's status is stale, for another certificate, or older than one seen

	CodeUnknownAssignment Code = 67 // the board serves no assignment of that id
	CodeNotOpen           Code = 68 // the assignment does not accept submissions yet
	CodeClosed            Code = 69 // the assignment is locked for this student
	CodeFileNotAccepted   Code = 70 // the file's name matches none of the assignment's patterns
	CodeTooManyVersions   Code = 71 // the student has made the assignment's maximum of submissions
	CodeEmptyFile         Code = 72 // the file is empty and the assignment does not accept empty files
	CodeQuotaExceeded     Code = 73 // the submission would pass the student's storage for the assignment
)

// checkLen fails p when a decoded field's length is outside lo..hi.
func checkLen(p *Parser, field string, n, lo, hi int) {
	if p.Err() == nil && (n < lo || n > hi) {
		p.Fail(fmt.Errorf("%s of %d bytes is outside %d..%d", field, n, lo, hi))
	}
}

// ClientHello opens a session (type 0x20). The student signs the payload up
// to and including KEMPublic (HelloSignedBytes); Signature is the last field.
type ClientHello struct {
	Version     uint16
	SID         string // string8, 1..MaxSIDLen
	Certificate []byte // bytes16, DER, 1..MaxCertLen
	Random      [RandomLen]byte
	Time        uint64   // the student's clock, milliseconds since the Unix epoch
	Suites      []uint16 // list8<u16>, 1..MaxSuites
	KEM         uint16
	KEMPublic   []byte // bytes16, 1..MaxKeyShareLen
	Signature   []byte // bytes16, 1..MaxSignatureLen
}

// Type returns TypeClientHello.
func (*ClientHello) Type() Type { return TypeClientHello }

// marshalSigned encodes the fields the signature covers, in order.
func (m *ClientHello) marshalSigned(b *Builder) {
	b.U16(m.Version)
	b.String8(m.SID)
	b.Bytes16(m.Certificate)
	b.Fixed(m.Random[:])
	b.U64(m.Time)
	if len(m.Suites) > 255 {
		b.Fail(fmt.Errorf("%d suites do not fit a list8", len(m.Suites)))
		return
	}
	b.U8(uint8(len(m.Suites)))
	for _, s := range m.Suites {
		b.U16(s)
	}
	b.U16(m.KEM)
	b.Bytes16(m.KEMPublic)
}

// MarshalBody encodes the hello.
func (m *ClientHello) MarshalBody(b *Builder) {
	m.marshalSigned(b)
	b.Bytes16(m.Signature)
}

// UnmarshalBody decodes the hello and checks its lengths.
func (m *ClientHello) UnmarshalBody(p *Parser) {
	m.Version = p.U16()
	m.SID = p.String8()
	checkLen(p, "sid", len(m.SID), 1, MaxSIDLen)
	m.Certificate = p.Bytes16()
	checkLen(p, "certificate", len(m.Certificate), 1, MaxCertLen)
	copy(m.Random[:], p.Fixed(RandomLen))
	m.Time = p.U64()
	n := int(p.U8())
	if p.Err() == nil && (n == 0 || n > MaxSuites) {
		p.Fail(fmt.Errorf("%d suites is outside 1..%d", n, MaxSuites))
	}
	if p.Err() == nil {
		m.Suites = make([]uint16, n)
		for i := range m.Suites {
			m.Suites[i] = p.U16()
		}
	}
	m.KEM = p.U16()
	m.KEMPublic = p.Bytes16()
	checkLen(p, "kem_public", len(m.KEMPublic), 1, MaxKeyShareLen)
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}

// SignedPrefix returns the part of the hello the student signs, p of
// PROTOCOL.md §5.1: the type byte and every body byte before the signature
// field's length, as Marshal encodes them.
func (m *ClientHello) SignedPrefix() ([]byte, error) {
	b := Builder{what: "ClientHello"}
	b.U8(uint8(TypeClientHello))
	m.marshalSigned(&b)
	return b.Bytes(), b.Err()
}

// HelloSignedBytes returns what the student signs for a ClientHello whose
// payload begins with prefix (the payload up to and including kem_public):
// ContextClientHello || 0x00 || SHA-256(prefix).
func HelloSignedBytes(prefix []byte) []byte {
	sum := sha256.Sum256(prefix)
	msg := make([]byte, 0, len(ContextClientHello)+1+sha256.Size)
	msg = append(append(msg, ContextClientHello...), 0)
	return append(msg, sum[:]...)
}

// HelloPrefix returns the signed part of a received ClientHello payload p
// that decoded as h: p without its last field, the signature (the strict
// decoding leaves nothing after it).
func HelloPrefix(p []byte, h *ClientHello) []byte {
	return p[:len(p)-2-len(h.Signature)]
}

// ServerHello answers a ClientHello (type 0x21).
type ServerHello struct {
	Version       uint16
	Random        [RandomLen]byte
	Suite         uint16
	KeyTransport  uint8
	EncryptedKey  []byte // bytes16, 1..MaxKeyShareLen
	KEMCiphertext []byte // bytes16, 1..MaxKeyShareLen
	Certificate   []byte // bytes16, the board's certificate, DER, 1..MaxCertLen
	Status        []byte // bytes16, the board's BoardStatus as the CA signed it, 1..MaxBoardStatusLen
}

// Type returns TypeServerHello.
func (*ServerHello) Type() Type { return TypeServerHello }

// MarshalBody encodes the hello.
func (m *ServerHello) MarshalBody(b *Builder) {
	b.U16(m.Version)
	b.Fixed(m.Random[:])
	b.U16(m.Suite)
	b.U8(m.KeyTransport)
	b.Bytes16(m.EncryptedKey)
	b.Bytes16(m.KEMCiphertext)
	b.Bytes16(m.Certificate)
	b.Bytes16(m.Status)
}

// UnmarshalBody decodes the hello and checks its lengths.
func (m *ServerHello) UnmarshalBody(p *Parser) {
	m.Version = p.U16()
	copy(m.Random[:], p.Fixed(RandomLen))
	m.Suite = p.U16()
	m.KeyTransport = p.U8()
	if p.Err() == nil && (m.KeyTransport < minKeyTransport || m.KeyTransport > maxKeyTransport) {
		p.Fail(fmt.Errorf("key_transport %d is not one of 1, 2, 3", m.KeyTransport))
	}
	m.EncryptedKey = p.Bytes16()
	checkLen(p, "encrypted_key", len(m.EncryptedKey), 1, MaxKeyShareLen)
	m.KEMCiphertext = p.Bytes16()
	checkLen(p, "kem_ciphertext", len(m.KEMCiphertext), 1, MaxKeyShareLen)
	m.Certificate = p.Bytes16()
	checkLen(p, "certificate", len(m.Certificate), 1, MaxCertLen)
	m.Status = p.Bytes16()
	checkLen(p, "status", len(m.Status), 1, MaxBoardStatusLen)
}

// ServerVerify carries the board's signature over the transcript (type 0x22).
type ServerVerify struct {
	Signature []byte // bytes16
}

// Type returns TypeServerVerify.
func (*ServerVerify) Type() Type { return TypeServerVerify }

// MarshalBody encodes the signature.
func (m *ServerVerify) MarshalBody(b *Builder) { b.Bytes16(m.Signature) }

// UnmarshalBody decodes the signature.
func (m *ServerVerify) UnmarshalBody(p *Parser) {
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}

// SubmitEnd ends a submission with the student's signature over its statement
// (type 0x23).
type SubmitEnd struct {
	Signature []byte // bytes16
}

// Type returns TypeSubmitEnd.
func (*SubmitEnd) Type() Type { return TypeSubmitEnd }

// MarshalBody encodes the signature.
func (m *SubmitEnd) MarshalBody(b *Builder) { b.Bytes16(m.Signature) }

// UnmarshalBody decodes the signature.
func (m *SubmitEnd) UnmarshalBody(p *Parser) {
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}

// Receipt is the board's signed acknowledgement of a stored submission (type
// 0x24), in the layout of version 3 (PROTOCOL.md §5.4). A receipt of version
// 2, kept as evidence, decodes as a [ReceiptV2].
type Receipt struct {
	ID         string // string8, 1..MaxReceiptIDLen
	SID        string // string8, 1..MaxSIDLen
	Serial     []byte // bytes8, 1..MaxSerialLen
	Assignment string // string8, 1..MaxAssignmentIDLen
	Original   string // string16, 1..MaxOriginalLen: the file's own base name
	Name       string // string8: the name the content travelled under
	Size       uint64
	SHA256     [32]byte
	Received   uint64 // the instant the board read SubmitEnd, milliseconds since the Unix epoch
	Due        uint64 // the due time that applied, or 0
	Late       uint64 // Received − Due in milliseconds when Due is not 0 and Received is after it, else 0
	Version    uint32 // which of the student's submissions to the assignment this is, from 1
	// BoardCertSHA256 is the SHA-256 of the board certificate that signs
	// the receipt.
	BoardCertSHA256 [32]byte
	Signature       []byte // bytes16, 1..MaxSignatureLen
}

// Type returns TypeReceipt.
func (*Receipt) Type() Type { return TypeReceipt }

// MarshalSigned encodes the fields the signature covers, in order.
func (m *Receipt) MarshalSigned(b *Builder) {
	b.String8(m.ID)
	b.String8(m.SID)
	b.Bytes8(m.Serial)
	b.String8(m.Assignment)
	b.String16(m.Original)
	b.String8(m.Name)
	b.U64(m.Size)
	b.Fixed(m.SHA256[:])
	b.U64(m.Received)
	b.U64(m.Due)
	b.U64(m.Late)
	b.U32(m.Version)
	b.Fixed(m.BoardCertSHA256[:])
}

// MarshalBody encodes the signed fields and the signature.
func (m *Receipt) MarshalBody(b *Builder) {
	m.MarshalSigned(b)
	b.Bytes16(m.Signature)
}

// UnmarshalBody decodes the receipt and checks its lengths.
func (m *Receipt) UnmarshalBody(p *Parser) {
	m.ID = p.String8()
	checkLen(p, "id", len(m.ID), 1, MaxReceiptIDLen)
	m.SID = p.String8()
	checkLen(p, "sid", len(m.SID), 1, MaxSIDLen)
	m.Serial = p.Bytes8()
	checkLen(p, "serial", len(m.Serial), 1, MaxSerialLen)
	m.Assignment = p.String8()
	checkLen(p, "assignment", len(m.Assignment), 1, MaxAssignmentIDLen)
	m.Original = p.String16()
	checkLen(p, "original", len(m.Original), 1, MaxOriginalLen)
	m.Name = p.String8()
	m.Size = p.U64()
	copy(m.SHA256[:], p.Fixed(32))
	m.Received = p.U64()
	m.Due = p.U64()
	m.Late = p.U64()
	m.Version = p.U32()
	copy(m.BoardCertSHA256[:], p.Fixed(32))
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}

// ReceiptV2 is a Receipt in the layout of version 2, which students and
// boards keep as evidence (PROTOCOL.md §5.5): no assignment, original, due,
// late or version. It is never sent; its Type is TypeReceipt so that
// [UnmarshalBodyOf] decodes a stored body with it.
type ReceiptV2 struct {
	ID              string // string8, 1..MaxReceiptIDLen
	SID             string // string8, 1..MaxSIDLen
	Serial          []byte // bytes8, 1..MaxSerialLen
	Name            string // string8
	Size            uint64
	SHA256          [32]byte
	Received        uint64 // milliseconds since the Unix epoch
	BoardCertSHA256 [32]byte
	Signature       []byte // bytes16, 1..MaxSignatureLen
}

// Type returns TypeReceipt.
func (*ReceiptV2) Type() Type { return TypeReceipt }

// MarshalSigned encodes the fields the signature covers, in order.
func (m *ReceiptV2) MarshalSigned(b *Builder) {
	b.String8(m.ID)
	b.String8(m.SID)
	b.Bytes8(m.Serial)
	b.String8(m.Name)
	b.U64(m.Size)
	b.Fixed(m.SHA256[:])
	b.U64(m.Received)
	b.Fixed(m.BoardCertSHA256[:])
}

// MarshalBody encodes the signed fields and the signature.
func (m *ReceiptV2) MarshalBody(b *Builder) {
	m.MarshalSigned(b)
	b.Bytes16(m.Signature)
}

// UnmarshalBody decodes the receipt and checks its lengths.
func (m *ReceiptV2) UnmarshalBody(p *Parser) {
	m.ID = p.String8()
	checkLen(p, "id", len(m.ID), 1, MaxReceiptIDLen)
	m.SID = p.String8()
	checkLen(p, "sid", len(m.SID), 1, MaxSIDLen)
	m.Serial = p.Bytes8()
	checkLen(p, "serial", len(m.Serial), 1, MaxSerialLen)
	m.Name = p.String8()
	m.Size = p.U64()
	copy(m.SHA256[:], p.Fixed(32))
	m.Received = p.U64()
	copy(m.BoardCertSHA256[:], p.Fixed(32))
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}
