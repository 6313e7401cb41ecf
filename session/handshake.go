package session

import (
	"crypto/sha256"
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
