package session

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// SubmitOptions configures Conn.Submit. The zero value is ready to use.
type SubmitOptions struct {
	// OnTerms, if set, is called with the board's terms (checked to be for
	// the assignment asked for) before any of the content is sent; an error
	// it returns ends the session there and is returned.
	OnTerms func(*wire.Terms) error

	// Progress, if set, is called after each Data record with the number of
	// the file's bytes sent so far, the resumed prefix included.
	Progress func(sent int64)

	// OnResume, if set, is called once the board has answered the offset
	// the transfer resumes from (0 for a fresh upload), before any of the
	// content is sent.
	OnResume func(offset int64)
}

// ErrBadReceipt matches the error of Submit for a receipt that does not match
// the submission or whose signature does not verify. The board has stored the
// submission all the same; the receipt is simply not evidence of it.
var ErrBadReceipt = errors.New("session: bad receipt")

// NewSubmitRequest returns the request of content of size bytes with SHA-256
// sum, from a file whose own base name is original, to assignment: its name
// is SafeName of original (PROTOCOL.md §5.4).
func NewSubmitRequest(assignment, original string, size int64, sum [32]byte) *wire.SubmitRequest {
	return &wire.SubmitRequest{Assignment: assignment, Original: original,
		Name: wire.SafeName(original, "report"), Size: uint64(size), SHA256: sum}
}

// Submit is the student's step 6 (PROTOCOL.md §5.4): it sends req, reads the
// board's terms and checks they are for the assignment asked for, then sends
// content (req.Size bytes with SHA-256 req.SHA256) under req.Name as a file
// transfer over the session, resuming where the board holds an earlier
// interrupted upload, in Data records of 64 KiB; then SubmitEnd with the
// student's signature over the statement, which covers the terms as
// received; then it reads the board's Receipt and verifies it: every field
// must match what was sent and what the terms said, late must follow from
// received and due, it must name the board certificate of the handshake, and
// the signature must verify with that certificate's key. It returns the
// verified receipt and the terms.
//
// The board's refusals come back as a *wire.Error. A receipt that fails
// verification gives an error matching ErrBadReceipt.
func (c *Conn) Submit(req *wire.SubmitRequest, content io.ReaderAt, opt SubmitOptions) (*wire.Receipt, *wire.Terms, error) {
	if !c.isClient {
		return nil, nil, errors.New("session: Submit is the student's; the board calls ReceiveSubmission")
	}
	if err := c.WriteMessage(req); err != nil {
		return nil, nil, fmt.Errorf("session: sending the request: %w", err)
	}
	terms, err := wire.Expect[*wire.Terms](c.ReadMessage())
	if err == nil && terms.Assignment != req.Assignment {
		err = wire.Refusef(wire.CodeUnexpectedMessage,
			"the board sent the terms of assignment %q, not of %q, which you asked for; tell the course staff", terms.Assignment, req.Assignment)
	}
	if err != nil {
		var peer *wire.Error
		if !errors.As(err, &peer) {
			_ = wire.Answer(c, err)
		}
		return nil, nil, fmt.Errorf("session: waiting for the terms: %w", err)
	}
	if opt.OnTerms != nil {
		if err := opt.OnTerms(terms); err != nil {
			return nil, terms, err
		}
	}
	body, err := terms.Body()
	if err != nil {
		return nil, terms, err
	}
	statement, err := Statement(c.th, c.sid, body, req.Original, req.Name, req.Size, req.SHA256)
	if err != nil {
		return nil, terms, err
	}
	_, err = wire.SendFile(c, req.Name, content, int64(req.Size), req.SHA256, wire.SendOptions{
		ChunkSize: wire.MaxDataChunk,
		Progress:  opt.Progress,
		OnOffset:  opt.OnResume,
		SkipAck:   true,
	})
	if err != nil {
		return nil, terms, fmt.Errorf("session: sending %q: %w", req.Name, err)
	}
	sig, err := keys.Sign(c.key, c.rand, statement)
	if err != nil {
		return nil, terms, err
	}
	if err := c.WriteMessage(&wire.SubmitEnd{Signature: sig}); err != nil {
		return nil, terms, fmt.Errorf("session: sending SubmitEnd: %w", err)
	}
	r, err := wire.Expect[*wire.Receipt](c.ReadMessage())
	if err != nil {
		return nil, terms, fmt.Errorf("session: waiting for the receipt: %w", err)
	}
	if err := c.checkReceipt(r, req, terms); err != nil {
		return nil, terms, err
	}
	return r, terms, nil
}

// checkReceipt checks a receipt against the request, the terms and the
// board's key (PROTOCOL.md §5.4).
func (c *Conn) checkReceipt(r *wire.Receipt, req *wire.SubmitRequest, terms *wire.Terms) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, args...))
	}
	serial := c.own.SerialNumber.Bytes()
	switch {
	case r.SID != c.sid:
		return bad("it is for SID %q, not %q", r.SID, c.sid)
	case !bytes.Equal(r.Serial, serial):
		return bad("it names certificate serial %x, not %x", r.Serial, serial)
	case r.Assignment != req.Assignment:
		return bad("it is for assignment %q, not %q", r.Assignment, req.Assignment)
	case r.Original != req.Original:
		return bad("it is for file %q, not %q", r.Original, req.Original)
	case r.Name != req.Name:
		return bad("it is for file name %q, not %q", r.Name, req.Name)
	case r.Size != req.Size:
		return bad("it is for %d bytes, not %d", r.Size, req.Size)
	case r.SHA256 != req.SHA256:
		return bad("it is for SHA-256 %x, not %x", r.SHA256, req.SHA256)
	case r.Due != terms.Due:
		return bad("it gives due time %d, but the terms said %d", r.Due, terms.Due)
	case r.Late != LateBy(r.Received, r.Due):
		return bad("it says late by %d ms, but received %d and due %d make %d ms", r.Late, r.Received, r.Due, LateBy(r.Received, r.Due))
	case r.BoardCertSHA256 != sha256.Sum256(c.peer.Raw):
		return bad("it names board certificate %x, not the one of the session", r.BoardCertSHA256)
	}
	msg, err := ReceiptSignedBytes(r)
	if err != nil {
		return bad("%v", err)
	}
	if err := keys.Verify(c.peer.PublicKey, msg, r.Signature); err != nil {
		return bad("its signature does not verify with the board's certificate")
	}
	return nil
}

// SignReceipt signs r with the board's key of the session: it sets
// BoardCertSHA256 (the board's certificate of the session, [Submission.Board])
// and Signature. The caller fills in every other field first. The board signs
// the receipt before it commits the submission, stores the receipt with it,
// and sends it with SendReceipt only once both are durable.
func (c *Conn) SignReceipt(r *wire.Receipt) error {
	if c.isClient {
		return errors.New("session: SignReceipt is the board's")
	}
	r.BoardCertSHA256 = sha256.Sum256(c.own.Raw)
	msg, err := ReceiptSignedBytes(r)
	if err != nil {
		return err
	}
	sig, err := keys.Sign(c.key, c.rand, msg)
	if err != nil {
		return err
	}
	r.Signature = sig
	return nil
}

// SendReceipt sends r, the last message of the session, signing it first
// with SignReceipt unless it is signed already (r.Signature set): a signed
// receipt is sent exactly as it is, so that the bytes the student receives are
// the ones the board stored. The caller sends the receipt only once the
// submission is durable.
func (c *Conn) SendReceipt(r *wire.Receipt) error {
	if c.isClient {
		return errors.New("session: SendReceipt is the board's")
	}
	if len(r.Signature) == 0 {
		if err := c.SignReceipt(r); err != nil {
			return err
		}
	}
	if err := c.WriteMessage(r); err != nil {
		return fmt.Errorf("session: sending the receipt: %w", err)
	}
	return nil
}
