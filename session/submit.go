package session

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// SubmitOptions configures Conn.Submit. The zero value is ready to use.
type SubmitOptions struct {
	// Progress, if set, is called after each Data record with the number of
	// the file's bytes sent so far, the resumed prefix included.
	Progress func(sent int64)

	// OnResume, if set, is called once the file's bytes are sent, with the
	// offset the transfer resumed from (0 for a fresh upload).
	OnResume func(offset int64)
}

// ErrBadReceipt matches the error of Submit for a receipt that does not match
// the submission or whose signature does not verify. The board has stored the
// submission all the same; the receipt is simply not evidence of it.
var ErrBadReceipt = errors.New("session: bad receipt")

// Submit is the student's step 6 (PROTOCOL.md §5.4): it sends content, size
// bytes with SHA-256 sum, under name, as a file transfer over the session,
// resuming where the board holds an earlier interrupted upload, in Data
// records of 64 KiB; then SubmitEnd with the student's signature over the
// statement; then it reads the board's Receipt and verifies it: every field
// must match what was sent, it must name the board certificate of the
// handshake, and the signature must verify with that certificate's key. It returns the verified receipt.
//
// The board's refusals come back as a *wire.Error. A receipt that fails
// verification gives an error matching ErrBadReceipt.
func (c *Conn) Submit(name string, content io.ReaderAt, size int64, sum [32]byte, opt SubmitOptions) (*wire.Receipt, error) {
	if !c.isClient {
		return nil, errors.New("session: Submit is the student's; the board calls ReceiveSubmission")
	}
	statement, err := Statement(c.th, c.sid, name, uint64(size), sum)
	if err != nil {
		return nil, err
	}
	resumed, err := wire.SendFile(c, name, content, size, sum, wire.SendOptions{
		ChunkSize: wire.MaxDataChunk,
		Progress:  opt.Progress,
		SkipAck:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("session: sending %q: %w", name, err)
	}
	if opt.OnResume != nil {
		opt.OnResume(resumed)
	}
	sig, err := keys.Sign(c.key, c.rand, statement)
	if err != nil {
		return nil, err
	}
	if err := c.WriteMessage(&wire.SubmitEnd{Signature: sig}); err != nil {
		return nil, fmt.Errorf("session: sending SubmitEnd: %w", err)
	}
	r, err := wire.Expect[*wire.Receipt](c.ReadMessage())
	if err != nil {
		return nil, fmt.Errorf("session: waiting for the receipt: %w", err)
	}
	if err := c.checkReceipt(r, name, size, sum); err != nil {
		return nil, err
	}
	return r, nil
}

// checkReceipt checks a receipt against the submission and the board's key.
func (c *Conn) checkReceipt(r *wire.Receipt, name string, size int64, sum [32]byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, args...))
	}
	serial := c.own.SerialNumber.Bytes()
	switch {
	case r.SID != c.sid:
		return bad("it is for SID %q, not %q", r.SID, c.sid)
	case !bytes.Equal(r.Serial, serial):
		return bad("it names certificate serial %x, not %x", r.Serial, serial)
	case r.Name != name:
		return bad("it is for file %q, not %q", r.Name, name)
	case r.Size != uint64(size):
		return bad("it is for %d bytes, not %d", r.Size, size)
	case r.SHA256 != sum:
		return bad("it is for SHA-256 %x, not %x", r.SHA256, sum)
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

// Submission is a submission the board received and checked: the content,
// verified against its FileHeader and still in the Receiver's sink, and the
// evidence that the student sent it.
type Submission struct {
	// File is the received file, in the sink the Receiver opened for it. The
	// caller stores it where it belongs, or drops it.
	File *wire.Received

	SID            string              // the student ID of the session
	Suite          uint16              // the cipher suite of the session's records
	Chain          []*x509.Certificate // the student's certificate, as verified (alone: a session carries no intermediates)
	Board          *x509.Certificate   // the board's certificate of the session, which signs the receipt
	TranscriptHash [32]byte            // TH of the session
	Statement      []byte              // the statement the student signed
	Signature      []byte              // the student's signature over Statement
}

// ReceiveSubmission is the board's step 6 up to the receipt (PROTOCOL.md
// §5.4): it receives the file with r (whose sinks should be the SID's own, so
// that an interrupted upload resumes only for the same student), checks its
// size and SHA-256, reads SubmitEnd and verifies the student's signature over
// the statement with the certificate of the handshake.
//
// Every refusal is answered to the student, as a record, and returned: a
// signature that does not verify is bad-submission-signature, a *wire.Refusal.
// On any error no submission is returned and nothing durable is discarded: a
// completely received file stays in its sink, finished and not aborted — with
// the board's store (board.Store.Receiver), a large file stays as a partial
// file in the SID's partial directory, which the student's next attempt
// resumes, and a small one held in memory is dropped.
func (c *Conn) ReceiveSubmission(r *wire.Receiver) (*Submission, error) {
	if c.isClient {
		return nil, errors.New("session: ReceiveSubmission is the board's; the student calls Submit")
	}
	in, err := r.Receive(c)
	if err != nil {
		return nil, fmt.Errorf("session: receiving the submission: %w", err)
	}
	end, err := wire.Expect[*wire.SubmitEnd](c.ReadMessage())
	if err != nil {
		_ = wire.Answer(c, err)
		return nil, fmt.Errorf("session: waiting for SubmitEnd: %w", err)
	}
	statement, err := Statement(c.th, c.sid, in.Name, uint64(in.Size), in.SHA256)
	if err != nil {
		return nil, err
	}
	if err := keys.Verify(c.peer.PublicKey, statement, end.Signature); err != nil {
		refusal := wire.Refusef(wire.CodeBadSubmissionSignature,
			"your signature over the submission of %q does not verify with your certificate; submit again", in.Name)
		_ = wire.Answer(c, refusal)
		return nil, fmt.Errorf("session: %w", refusal)
	}
	return &Submission{
		File:           in,
		SID:            c.sid,
		Suite:          c.suite,
		Chain:          []*x509.Certificate{c.peer},
		Board:          c.own,
		TranscriptHash: c.th,
		Statement:      statement,
		Signature:      end.Signature,
	}, nil
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
