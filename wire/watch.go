package wire

import (
	"crypto/sha256"
	"fmt"
)

// The board's watch on the CA (PROTOCOL.md §4.4): the CA pushes each new CRL and
// the board's status to a board that proved it holds its certificate's key.
const (
	TypeWatchRequest   Type = 0x13 // board → CA: version, the board's certificate
	TypeWatchChallenge Type = 0x14 // CA → board: a nonce to sign
	TypeWatchProof     Type = 0x15 // board → CA: the nonce signed with the board's key
	TypeStatusUpdate   Type = 0x16 // CA → board: the current CRL and the board's status
	TypeStatusAck      Type = 0x17 // board → CA: the CRL number the board now holds
)

// ContextWatch is the context string of a WatchProof signature.
const ContextWatch = "pkiboard v2 watch"

// NonceLen is the size of a WatchChallenge nonce.
const NonceLen = 32

// MaxCRLLen bounds the CRL a StatusUpdate carries; a board reads its watch
// connection with a frame limit above it.
const MaxCRLLen = 16 << 20

// WatchRequest opens a board's watch (type 0x13).
type WatchRequest struct {
	Version     uint16 // ProtocolVersion
	Certificate []byte // bytes16, DER, 1..MaxCertLen
}

// Type returns TypeWatchRequest.
func (*WatchRequest) Type() Type { return TypeWatchRequest }

// MarshalBody encodes the version and the certificate.
func (m *WatchRequest) MarshalBody(b *Builder) {
	b.U16(m.Version)
	b.Bytes16(m.Certificate)
}

// UnmarshalBody decodes the version and the certificate.
func (m *WatchRequest) UnmarshalBody(p *Parser) {
	m.Version = p.U16()
	m.Certificate = p.Bytes16()
	checkLen(p, "certificate", len(m.Certificate), 1, MaxCertLen)
}

// WatchChallenge is the CA's nonce for the board to sign (type 0x14).
type WatchChallenge struct {
	Nonce [NonceLen]byte
}

// Type returns TypeWatchChallenge.
func (*WatchChallenge) Type() Type { return TypeWatchChallenge }

// MarshalBody encodes the nonce.
func (m *WatchChallenge) MarshalBody(b *Builder) { b.Fixed(m.Nonce[:]) }

// UnmarshalBody decodes the nonce.
func (m *WatchChallenge) UnmarshalBody(p *Parser) { copy(m.Nonce[:], p.Fixed(NonceLen)) }

// WatchProof is the board's signature over the challenge (type 0x15).
type WatchProof struct {
	Signature []byte // bytes16, 1..MaxSignatureLen
}

// Type returns TypeWatchProof.
func (*WatchProof) Type() Type { return TypeWatchProof }

// MarshalBody encodes the signature.
func (m *WatchProof) MarshalBody(b *Builder) { b.Bytes16(m.Signature) }

// UnmarshalBody decodes the signature.
func (m *WatchProof) UnmarshalBody(p *Parser) {
	m.Signature = p.Bytes16()
	checkLen(p, "signature", len(m.Signature), 1, MaxSignatureLen)
}

// WatchSignedBytes returns what a board signs in its WatchProof:
// ContextWatch || 0x00 || nonce || SHA-256(certificate).
func WatchSignedBytes(nonce [NonceLen]byte, certificate []byte) []byte {
	sum := sha256.Sum256(certificate)
	msg := make([]byte, 0, len(ContextWatch)+1+NonceLen+sha256.Size)
	msg = append(append(msg, ContextWatch...), 0)
	msg = append(msg, nonce[:]...)
	return append(msg, sum[:]...)
}

// StatusUpdate pushes the CA's current CRL and the board's status (type 0x16).
type StatusUpdate struct {
	CRL    []byte // bytes32, DER, 1..MaxCRLLen
	Status []byte // bytes16: an encoded BoardStatus, 1..MaxBoardStatusLen
}

// Type returns TypeStatusUpdate.
func (*StatusUpdate) Type() Type { return TypeStatusUpdate }

// MarshalBody encodes the CRL and the status.
func (m *StatusUpdate) MarshalBody(b *Builder) {
	b.Bytes32(m.CRL)
	b.Bytes16(m.Status)
}

// UnmarshalBody decodes the CRL and the status, bounding both.
func (m *StatusUpdate) UnmarshalBody(p *Parser) {
	n := p.U32()
	if p.Err() == nil && (n == 0 || n > MaxCRLLen) {
		p.Fail(fmt.Errorf("crl of %d bytes is outside 1..%d", n, MaxCRLLen))
		return
	}
	m.CRL = clone(p.take(int(n), "bytes32"))
	m.Status = p.Bytes16()
	checkLen(p, "status", len(m.Status), 1, MaxBoardStatusLen)
}

// StatusAck tells the CA which CRL the board now holds (type 0x17).
type StatusAck struct {
	CRLNumber uint64
}

// Type returns TypeStatusAck.
func (*StatusAck) Type() Type { return TypeStatusAck }

// MarshalBody encodes the CRL number.
func (m *StatusAck) MarshalBody(b *Builder) { b.U64(m.CRLNumber) }

// UnmarshalBody decodes the CRL number.
func (m *StatusAck) UnmarshalBody(p *Parser) { m.CRLNumber = p.U64() }
