package wire

import (
	"crypto/sha256"
	"fmt"
)

// ContextBoardStatus is the context string of a BoardStatus signature
// (PROTOCOL.md §4.4).
const ContextBoardStatus = "pkiboard v2 board status"

// BoardStatus is the root-signed statement that a board certificate is good
// (or revoked), valid for an hour or so (PROTOCOL.md §4.4). The CA signs it and
// pushes it to a watching board in a StatusUpdate; the board staples it to
// every ServerHello; the student checks it against the root. It travels as the
// bytes of a bytes16 field, encoded by Marshal and decoded by ParseBoardStatus.
type BoardStatus struct {
	Serial     []byte            // bytes8, 1..MaxSerialLen: the board certificate's serial
	CertSHA256 [sha256.Size]byte // SHA-256 of the board certificate's DER
	CRLNumber  uint64            // the CA's CRL number when it signed
	Revoked    bool              // u8: 0 good, 1 revoked
	ThisUpdate uint64            // seconds since the Unix epoch
	NextUpdate uint64            // seconds since the Unix epoch
	Signature  []byte            // bytes16, 1..MaxSignatureLen: the root key's signature over SignedBytes
}

// MaxBoardStatusLen bounds an encoded BoardStatus: the most its fields can take.
const MaxBoardStatusLen = 1 + MaxSerialLen + sha256.Size + 8 + 1 + 8 + 8 + 2 + MaxSignatureLen

// marshalSigned encodes every field but the signature, in order.
func (s *BoardStatus) marshalSigned(b *Builder) {
	b.Bytes8(s.Serial)
	b.Fixed(s.CertSHA256[:])
	b.U64(s.CRLNumber)
	if s.Revoked {
		b.U8(1)
	} else {
		b.U8(0)
	}
	b.U64(s.ThisUpdate)
	b.U64(s.NextUpdate)
}

// SignedBytes returns what the root signs: ContextBoardStatus, a zero byte,
// then every field but the signature, encoded as in the status.
func (s *BoardStatus) SignedBytes() ([]byte, error) {
	b := Builder{what: "BoardStatus"}
	b.Fixed([]byte(ContextBoardStatus))
	b.U8(0)
	s.marshalSigned(&b)
	return b.Bytes(), b.Err()
}

// Marshal encodes the status, signature included.
func (s *BoardStatus) Marshal() ([]byte, error) {
	b := Builder{what: "BoardStatus"}
	s.marshalSigned(&b)
	b.Bytes16(s.Signature)
	return b.Bytes(), b.Err()
}

// ParseBoardStatus decodes a status strictly: every field within its limits
// and nothing left over; the error is a *Refusal with code malformed. It
// checks no signature.
func ParseBoardStatus(data []byte) (*BoardStatus, error) {
	p := Parser{buf: data, what: "BoardStatus"}
	s := new(BoardStatus)
	s.Serial = p.Bytes8()
	checkLen(&p, "serial", len(s.Serial), 1, MaxSerialLen)
	copy(s.CertSHA256[:], p.Fixed(sha256.Size))
	s.CRLNumber = p.U64()
	switch r := p.U8(); {
	case p.Err() != nil:
	case r > 1:
		p.Fail(fmt.Errorf("revoked is %d, not 0 or 1", r))
	default:
		s.Revoked = r == 1
	}
	s.ThisUpdate = p.U64()
	s.NextUpdate = p.U64()
	s.Signature = p.Bytes16()
	checkLen(&p, "signature", len(s.Signature), 1, MaxSignatureLen)
	if err := p.Finish(); err != nil {
		return nil, err
	}
	return s, nil
}
