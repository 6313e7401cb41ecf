package session

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"pkiboard/wire"
)

// Conn is an established session: it reads and writes messages as records
// (PROTOCOL.md §5.3), sealed with the suite's AEAD, or encrypted with its
// stream cipher and authenticated with HMAC-SHA256, over an implicit sequence
// number. It implements
// wire.MessageReadWriter, so that wire.SendFile and wire.Receiver run over it.
//
// A Conn may be used by one goroutine reading and another writing at the same
// time; Close and the accessors may be called from any goroutine.
type Conn struct {
	conn         *wire.Conn
	isClient     bool
	sid          string
	suite        uint16
	keyTransport uint8
	th           [32]byte
	peer         *x509.Certificate // the peer's certificate, checked
	own          *x509.Certificate // this side's certificate
	status       *wire.BoardStatus // on the student's side: the board's status, checked
	root         *x509.Certificate // on the student's side: her root, which history receipts are checked against
	key          crypto.Signer
	rand         io.Reader
	now          func() time.Time

	in, out *halfConn

	// acceptPlainError is set on the board's side: the first frame after the
	// handshake may be the student's refusal of step 5, sent in plaintext
	// because the student has no keys (see readRecord).
	acceptPlainError bool

	data wire.Data // the message of the last Data record read, reused

	closeOnce sync.Once
	closeErr  error
}

var _ wire.MessageReadWriter = (*Conn)(nil)

// errAlertSent is returned by writes after this side sent an Error: the Error
// is the last message of a session (PROTOCOL.md §2.1).
var errAlertSent = errors.New("session: an Error was sent; the session is over")

// SID returns the student ID of the session.
func (c *Conn) SID() string { return c.sid }

// PeerCertificate returns the peer's verified certificate: the student's on the
// board's side, the board's on the student's.
func (c *Conn) PeerCertificate() *x509.Certificate { return c.peer }

// BoardStatus returns, on the student's side, the board's status the
// handshake checked (PROTOCOL.md §4.4): the student remembers its CRL number
// (ClientConfig.MinCRLNumber of the next session). It is nil on the board's
// side.
func (c *Conn) BoardStatus() *wire.BoardStatus { return c.status }

// Suite returns the cipher suite of the records.
func (c *Conn) Suite() uint16 { return c.suite }

// KeyTransport returns how the session key travelled (PROTOCOL.md §5.1,
// ServerHello.key_transport): wire.KeyTransportRSAOAEP,
// wire.KeyTransportHPKEP256 or wire.KeyTransportHPKEP384, as the student's
// certificate key called for. KeyTransportName names it.
func (c *Conn) KeyTransport() uint8 { return c.keyTransport }

// TranscriptHash returns TH, the SHA-256 of the three handshake frames
// (PROTOCOL.md §5.2). The submission statement includes it.
func (c *Conn) TranscriptHash() [32]byte { return c.th }

// SetDeadline sets an overall deadline for the session's reads and writes, as
// wire.Conn.SetDeadline does; the zero time removes it.
func (c *Conn) SetDeadline(t time.Time) { c.conn.SetDeadline(t) }

// Close closes the connection and erases the record keys this package holds.
// It may be called more than once and concurrently with reads and writes,
// which it unblocks.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.conn.Close()
		for _, h := range []*halfConn{c.in, c.out} {
			h.mu.Lock()
			h.wipe()
			h.mu.Unlock()
		}
	})
	return c.closeErr
}

// ReadMessage reads one record and returns its message. A message from the
// peer's Error record is returned as a *wire.Error message, as wire.Conn does
// (wire.Expect turns it into an error). A *wire.Data message and its Bytes are
// valid only until the next call.
//
// A record whose MAC fails is answered bad-record-mac and gives a
// *wire.Refusal; a record of a type PROTOCOL.md §5.3 does not allow, or whose
// message does not decode, is answered likewise with its code. After any error
// the reading direction stays failed.
func (c *Conn) ReadMessage() (wire.Message, error) {
	in := c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err != nil {
		return nil, in.err
	}
	m, err := c.readRecord()
	if err != nil {
		in.err = err
		return nil, err
	}
	if e, ok := m.(*wire.Error); ok {
		in.err = e // the peer closes after an Error
	}
	return m, nil
}

// readRecord reads and opens one record; c.in.mu is held.
func (c *Conn) readRecord() (wire.Message, error) {
	p, err := c.conn.ReadFrame()
	if err != nil {
		return nil, err
	}
	var asSent []byte // the frame as it came, should it be a plaintext Error
	if c.acceptPlainError && c.in.seq == 0 && len(p) <= maxPlainError {
		asSent = bytes.Clone(p) // an AEAD that fails may overwrite p
	}
	plain, err := c.in.openInPlace(p)
	if err != nil {
		if err != errRecordMAC {
			return nil, err
		}
		if asSent != nil {
			// The student refused the board in step 5 and, having no keys,
			// said so in plaintext. This Error is not authenticated: anyone
			// on the path could have sent it, as anyone can end the
			// connection. It is only reported, never acted on beyond that.
			if m, uerr := wire.Unmarshal(asSent); uerr == nil {
				if e, ok := m.(*wire.Error); ok {
					return e, nil
				}
			}
		}
		return nil, c.refuse(wire.Refusef(wire.CodeBadRecordMAC,
			"a record from the %s failed its MAC check: it was tampered with, dropped, reordered or replayed on the way; the session is closed",
			c.peerName()))
	}
	c.acceptPlainError = false
	t := wire.Type(plain[0])
	if t == wire.TypeData {
		// The bulk of a transfer: no allocation, no copy.
		body := plain[1:]
		if len(body) == 0 || len(body) > wire.MaxDataChunk {
			return nil, c.refuse(wire.Refusef(wire.CodeMalformed,
				"a Data record carries %d bytes; a Data message carries 1 to %d", len(body), wire.MaxDataChunk))
		}
		c.data.Bytes = body
		return &c.data, nil
	}
	m, err := wire.Unmarshal(plain)
	if err != nil {
		return nil, c.refuse(err)
	}
	if !recordTypeAllowed(t) {
		return nil, c.refuse(wire.Refusef(wire.CodeUnexpectedMessage,
			"a %v message cannot be sent in a record after the handshake", t))
	}
	return m, nil
}

// maxPlainError is the largest Error payload: type, code u16, text string16.
const maxPlainError = 1 + 2 + 2 + wire.MaxErrorText

// peerName names the other side for messages.
func (c *Conn) peerName() string {
	if c.isClient {
		return "board"
	}
	return "student"
}

// refuse sends the peer the Error err calls for (wire.Answer), as a record, and
// returns err with the package prefix. It is called with c.in.mu held, not
// c.out.mu.
func (c *Conn) refuse(err error) error {
	_ = wire.Answer(c, err)
	return fmt.Errorf("session: %w", err)
}

// WriteMessage encrypts m and writes it as one record. A *wire.Data message is
// encrypted straight from its Bytes into the record buffer. After an Error
// message, or after a failed write, the writing direction is closed and
// further writes fail.
func (c *Conn) WriteMessage(m wire.Message) error {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.writeLocked(m)
}

// writeLocked is WriteMessage with c.out.mu held.
func (c *Conn) writeLocked(m wire.Message) error {
	out := c.out
	if out.err != nil {
		return out.err
	}
	if out.seq == math.MaxUint64 {
		out.err = errSeqExhausted
		return out.err
	}
	var rec, body []byte
	if d, ok := m.(*wire.Data); ok {
		n := len(d.Bytes)
		if n == 0 || n > wire.MaxDataChunk {
			return fmt.Errorf("session: a Data message of %d bytes is outside 1..%d", n, wire.MaxDataChunk)
		}
		if cap(out.buf) < 1+n+TagSize {
			out.buf = make([]byte, 0, MaxRecord) // once, on the first Data record
		}
		// Encrypt while copying: the plaintext never enters the buffer.
		rec, body = append(out.buf[:0], byte(wire.TypeData)), d.Bytes
	} else {
		var err error
		if rec, err = wire.AppendMessage(out.buf[:0], m); err != nil {
			return err
		}
		rec, body = rec[:1], rec[1:] // encrypted in place
	}
	rec, err := out.seal(rec, body)
	if err != nil {
		out.err = err
		return err
	}
	if cap(rec) <= MaxRecord {
		out.buf = rec[:0]
	}
	if err := c.conn.WriteFrame(rec); err != nil {
		out.err = err
		return err
	}
	if _, ok := m.(*wire.Error); ok {
		out.err = errAlertSent
	}
	return nil
}
