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

// The sizes of the AEAD suite's records (PROTOCOL.md §5.3).
const (
	gcmTagSize   = 16    // GCM's tag
	gcmNonceSize = 12    // the nonce, and the part of the direction's iv it uses
	gcmAADLen    = 1 + 4 // the associated data: type u8, n u32
)

// errSeqExhausted is returned when a direction has used every sequence number.
var errSeqExhausted = errors.New("session: record sequence numbers exhausted; open a new session")

// halfConn is one direction of the record layer (PROTOCOL.md §5.3): its
// sequence number and its cipher — a keystream and HMAC-SHA256, or an AEAD —
// and the buffer records are built in. The mutex serialises its use; one
// goroutine reads and another writes, and a reader that fails a MAC also
// writes an Error.
type halfConn struct {
	mu     sync.Mutex
	seq    uint64
	mac    hash.Hash     // stream suites: HMAC-SHA256 with the direction's MAC key, Reset per record
	stream cipher.Stream // stream suites: AES-256-CTR or RC4, one keystream over all the bodies
	rc4    *rc4.Cipher   // the stream when the suite is RC4, for wiping
	aead   cipher.AEAD   // the AEAD suite: AES-256-GCM with the direction's key
	iv     [gcmNonceSize]byte
	nonce  [gcmNonceSize]byte
	aad    [gcmAADLen]byte
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
	if s.aead != nil {
		aead, err := s.aead(k.key[:])
		if err != nil {
			return nil, err
		}
		h := &halfConn{aead: aead}
		copy(h.iv[:], k.iv[:gcmNonceSize]) // PROTOCOL.md §5.2: the first 12 bytes
		return h, nil
	}
	stream, err := s.cipher(k.key[:], k.iv[:])
	if err != nil {
		return nil, err
	}
	h := &halfConn{mac: hmac.New(sha256.New, k.mac[:]), stream: stream}
	h.rc4, _ = stream.(*rc4.Cipher)
	return h, nil
}

// overhead is how many bytes a record adds after the body: its tag.
func (h *halfConn) overhead() int {
	if h.aead != nil {
		return gcmTagSize
	}
	return TagSize
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

// prepareAEAD sets h.nonce to iv XOR seq (a 12-byte big-endian integer) and
// h.aad to typ || n, for the record of h.seq.
func (h *halfConn) prepareAEAD(typ byte, n int) {
	h.nonce = h.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], h.seq)
	for i, b := range seq {
		h.nonce[gcmNonceSize-8+i] ^= b
	}
	h.aad[0] = typ
	binary.BigEndian.PutUint32(h.aad[1:], uint32(n))
}

// seal finishes a record: rec holds the type byte alone, and body is the
// message's body — either rec's own bytes after the type (rec[1:1+len(body)]
// of the same array, encrypted in place) or another buffer, encrypted while
// it is copied in, as a Data body is. It returns the record: type,
// ciphertext, tag. rec should have room for the body and the tag, or the
// record is reallocated. It advances the sequence number.
func (h *halfConn) seal(rec, body []byte) ([]byte, error) {
	if h.seq == math.MaxUint64 {
		return nil, errSeqExhausted
	}
	if uint64(len(body)) > math.MaxUint32 {
		return nil, fmt.Errorf("session: a record body of %d bytes is too long", len(body))
	}
	if h.aead != nil {
		h.prepareAEAD(rec[0], len(body))
		rec = h.aead.Seal(rec[:1], h.nonce[:], body, h.aad[:])
	} else {
		n := 1 + len(body)
		if cap(rec) < n+TagSize {
			rec = append(make([]byte, 0, n+TagSize), rec[0])
		}
		rec = rec[:n]
		h.stream.XORKeyStream(rec[1:], body)
		h.computeTag(rec[0], rec[1:])
		rec = append(rec, h.tag[:]...)
	}
	h.seq++
	return rec, nil
}

// errRecordMAC is the cause of every bad-record-mac refusal.
var errRecordMAC = errors.New("record failed its MAC")

// openInPlace checks the record rec (a frame payload: type, ciphertext, tag)
// and, only if its tag is right, decrypts the ciphertext in place and returns
// the message: type byte and plaintext body, a slice of rec. A record that is
// too short to hold a tag, or whose tag is wrong, leaves the sequence number
// where it was and gives errRecordMAC; with the stream suites it leaves rec
// untouched, with the AEAD suite its body may have been overwritten.
func (h *halfConn) openInPlace(rec []byte) ([]byte, error) {
	if len(rec) < 1+h.overhead() {
		return nil, errRecordMAC
	}
	if h.seq == math.MaxUint64 {
		return nil, errSeqExhausted
	}
	if h.aead != nil {
		n := len(rec) - 1 - gcmTagSize
		h.prepareAEAD(rec[0], n)
		if _, err := h.aead.Open(rec[1:1], h.nonce[:], rec[1:], h.aad[:]); err != nil {
			return nil, errRecordMAC
		}
		h.seq++
		return rec[:1+n], nil
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
	clear(h.iv[:])
	clear(h.nonce[:])
	clear(h.buf[:cap(h.buf)])
	h.stream, h.mac, h.aead = nil, nil, nil
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
