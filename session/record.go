package session

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"sync"

	"pkiboard/rc4"
	"pkiboard/wire"
)

// recordHeaderLen is the size of the MAC's header: seq u64, type u8, n u32.
const recordHeaderLen = 8 + 1 + 4

// errSeqExhausted is returned when a direction has used every sequence number.
var errSeqExhausted = errors.New("session: record sequence numbers exhausted; open a new session")

// halfConn is one direction of the record layer (PROTOCOL.md §5.3): its
// sequence number, its MAC and its keystream, and the buffer records are built
// in. The mutex serialises its use; one goroutine reads and another writes, and
// a reader that fails a MAC also writes an Error.
type halfConn struct {
	mu     sync.Mutex
	seq    uint64
	mac    hash.Hash     // HMAC-SHA256 with the direction's MAC key, Reset per record
	stream cipher.Stream // AES-256-CTR or RC4: one keystream over all the bodies
	rc4    *rc4.Cipher   // the stream when the suite is RC4, for wiping
	hdr    [recordHeaderLen]byte
	tag    [TagSize]byte
	buf    []byte // the record being written (write side only); MaxRecord once Data is sent
	err    error  // sticky: once a direction fails, it stays failed
}

// newHalfConn sets up one direction for suite with k, then erases k. What
// cannot be erased: the AES key schedule inside crypto/aes and the HMAC's
// padded-key states inside crypto/hmac, which live until the garbage collector
// reuses their memory.
func newHalfConn(suite uint16, k *trafficKeys) (*halfConn, error) {
	defer k.wipe()
	s := suiteByID(suite)
	if s == nil {
		return nil, fmt.Errorf("session: unknown suite %s", SuiteName(suite))
	}
	stream, err := s.cipher(k.key[:], k.iv[:])
	if err != nil {
		return nil, err
	}
	h := &halfConn{mac: hmac.New(sha256.New, k.mac[:]), stream: stream}
	h.rc4, _ = stream.(*rc4.Cipher)
	return h, nil
}

// computeTag sets h.tag to HMAC(mac_key, seq || typ || n || ciphertext).
func (h *halfConn) computeTag(typ byte, ciphertext []byte) {
	binary.BigEndian.PutUint64(h.hdr[0:8], h.seq)
	h.hdr[8] = typ
	binary.BigEndian.PutUint32(h.hdr[9:13], uint32(len(ciphertext)))
	h.mac.Reset()
	h.mac.Write(h.hdr[:])
	h.mac.Write(ciphertext)
	h.mac.Sum(h.tag[:0])
}

// sealEncrypted finishes a record: rec is the type byte and the body already
// encrypted with h.stream, in a buffer that should have room for TagSize more
// bytes. It appends the tag and advances the sequence number. The caller
// encrypts first so that a Data body can be encrypted while it is copied into
// the buffer.
func (h *halfConn) sealEncrypted(rec []byte) ([]byte, error) {
	if h.seq == math.MaxUint64 {
		return nil, errSeqExhausted
	}
	body := rec[1:]
	if uint64(len(body)) > math.MaxUint32 {
		return nil, fmt.Errorf("session: a record body of %d bytes is too long", len(body))
	}
	h.computeTag(rec[0], body)
	h.seq++
	return append(rec, h.tag[:]...), nil
}

// errRecordMAC is the cause of every bad-record-mac refusal.
var errRecordMAC = errors.New("record failed its MAC")

// openInPlace checks the record rec (a frame payload: type, ciphertext, tag)
// and, only if its tag is right, decrypts the ciphertext in place and returns
// the message: type byte and plaintext body, a slice of rec. A record that is
// too short to hold a tag, or whose tag is wrong, leaves rec untouched and the
// sequence number where it was, and gives errRecordMAC.
func (h *halfConn) openInPlace(rec []byte) ([]byte, error) {
	if len(rec) < 1+TagSize {
		return nil, errRecordMAC
	}
	if h.seq == math.MaxUint64 {
		return nil, errSeqExhausted
	}
	n := len(rec) - TagSize
	ciphertext := rec[1:n]
	h.computeTag(rec[0], ciphertext)
	if !hmac.Equal(h.tag[:], rec[n:]) {
		return nil, errRecordMAC
	}
	h.stream.XORKeyStream(ciphertext, ciphertext)
	h.seq++
	return rec[:n], nil
}

// wipe erases what of the direction's key material this package can reach
// (the RC4 state) and makes the direction unusable.
func (h *halfConn) wipe() {
	if h.rc4 != nil {
		h.rc4.Reset()
	}
	clear(h.tag[:])
	clear(h.buf[:cap(h.buf)])
	h.stream, h.mac = nil, nil
	if h.err == nil {
		h.err = errClosed
	}
}

// errClosed is returned by a Conn used after Close.
var errClosed = errors.New("session: connection closed")

// recordTypeAllowed reports whether a record may carry a message of type t
// (PROTOCOL.md §5.3).
func recordTypeAllowed(t wire.Type) bool {
	switch t {
	case wire.TypeError, wire.TypeFileHeader, wire.TypeFileOffset, wire.TypeData, wire.TypeFileAck,
		wire.TypeSubmitEnd, wire.TypeReceipt, wire.TypeSubmitRequest, wire.TypeTerms,
		wire.TypeHistoryRequest, wire.TypeHistory, wire.TypeAssignmentsRequest, wire.TypeAssignments:
		return true
	}
	return false
}
