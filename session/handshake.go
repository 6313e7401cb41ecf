package session

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"hash"

	"pkiboard/wire"
)

// handshakeIO reads and writes one side's handshake messages, in plaintext
// frames, and keeps the transcript: every frame goes through readFrame or
// writeMessage, which hash it, header included, exactly as it crosses the wire.
// No other code feeds the transcript.
type handshakeIO struct {
	conn       *wire.Conn
	transcript hash.Hash
}

func newHandshakeIO(c *wire.Conn) handshakeIO {
	return handshakeIO{conn: c, transcript: sha256.New()}
}

// hashFrame adds a frame, its 4-byte length then its payload, to the
// transcript.
func (h *handshakeIO) hashFrame(payload []byte) {
	var hdr [wire.HeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	h.transcript.Write(hdr[:])
	h.transcript.Write(payload)
}

// sum returns the SHA-256 of the frames so far.
func (h *handshakeIO) sum() (s [32]byte) {
	h.transcript.Sum(s[:0])
	return s
}

// writeMessage encodes m, adds its frame to the transcript and sends it.
func (h *handshakeIO) writeMessage(m wire.Message) error {
	payload, err := wire.Marshal(m)
	if err != nil {
		return err
	}
	h.hashFrame(payload)
	return h.conn.WriteFrame(payload)
}

// readFrame reads the next frame, adds it to the transcript and returns its
// payload, valid until the next read.
func (h *handshakeIO) readFrame() ([]byte, error) {
	p, err := h.conn.ReadFrame()
	if err != nil {
		return nil, err
	}
	h.hashFrame(p)
	return p, nil
}

// alert sends the peer, in plaintext, the Error that err calls for
// (wire.Answer), and returns err with the package prefix. Nothing is sent when
// the peer refused (err is its *wire.Error) or is gone.
func (h *handshakeIO) alert(err error) error {
	_ = wire.Answer(h.conn, err)
	return fmt.Errorf("session: %w", err)
}

// HandshakeError is the error of a handshake that failed: the course step at
// which it failed and what the handshake had established by then, so that the
// caller can log the steps as they happened. Its message is Err's; errors.As
// finds through it the *wire.Refusal this side sent or the *wire.Error the peer
// sent.
type HandshakeError struct {
	// Step is the course step that failed: 3 (the student's hello and
	// certificate) or 4 (the session key) on the board's side, 5 on the
	// student's.
	Step int

	// SID is the student ID of the session: on the board's side the one the
	// ClientHello claimed ("" if none was read), on the student's its own.
	SID string

	// Proven is set on the board's side when the student had proven that she
	// holds her certificate's key — the hello's signature verified and the
	// hello was not a replay — before the handshake failed (Step is then 4).
	// A refusal of a peer that proved nothing is anonymous: its SID and
	// certificate are only what the peer claimed, and may be anyone's.
	Proven bool

	// Student and Suite are set on the board's side when Proven: the
	// student's certificate, checked, and the suite the board chose.
	Student *x509.Certificate
	Suite   uint16

	Err error
}

// Error returns Err's message: the step adds nothing to the text.
func (e *HandshakeError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *HandshakeError) Unwrap() error { return e.Err }
