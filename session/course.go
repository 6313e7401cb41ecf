package session

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// Course is what a board serves in step 6 (PROTOCOL.md §5.4): the terms of
// its assignments for a student, her stored receipts and the list of
// assignments. The board implements it; the session asks it once per
// request and does the protocol around it. Its methods are called
// concurrently, by every session.
type Course interface {
	// Terms decides a SubmitRequest of student sid by the board's clock now,
	// in the order of §5.4 (the assignment exists, has opened, is not
	// locked for her, accepts the file's original name, its size, her
	// versions, her quota), and returns the terms that apply to her. A
	// *wire.Refusal refuses the request with its code and sentence; any
	// other error is answered internal. The request's name has been checked
	// already (it is SafeName of its original).
	Terms(sid string, req *wire.SubmitRequest, now time.Time) (*wire.Terms, error)

	// History returns the receipts stored for sid, of the assignment
	// (every assignment if it is ""), newest first, at most
	// wire.MaxHistoryItems: each as the board signed it, with the board
	// certificate that signed it.
	History(sid, assignment string) ([]wire.HistoryItem, error)

	// Assignments returns the assignments as sid sees them at now (§5.4,
	// Assignments), by due time.
	Assignments(sid string, now time.Time) ([]wire.AssignmentItem, error)
}

// Submission is a submission the board received and checked: the content,
// verified against its FileHeader and still in the Receiver's sink, and the
// evidence that the student sent it.
type Submission struct {
	// File is the received file, in the sink the Receiver opened for it. The
	// caller stores it where it belongs, or drops it.
	File *wire.Received

	// Request is the student's SubmitRequest; Original is its original
	// name (the file's own base name, for people, never a path).
	Request  *wire.SubmitRequest
	Original string

	// Terms are the terms the board announced in this session, and
	// TermsBody their body exactly as sent: what the statement signs and
	// the store keeps.
	Terms     *wire.Terms
	TermsBody []byte

	// Received is the instant that counts (PROTOCOL.md §5.4): the board's
	// clock (ServerConfig.Now) when it read SubmitEnd, to the millisecond,
	// in UTC. The submission was received before Terms.Lock, if any.
	Received time.Time

	SID            string              // the student ID of the session
	Suite          uint16              // the cipher suite of the session's records
	Chain          []*x509.Certificate // the student's certificate, as verified (alone: a session carries no intermediates)
	Board          *x509.Certificate   // the board's certificate of the session, which signs the receipt
	TranscriptHash [32]byte            // TH of the session
	Statement      []byte              // the statement the student signed
	Signature      []byte              // the student's signature over Statement
}

// Late returns by how many milliseconds the submission is late: Received −
// Terms.Due when there is a due time and Received is after it, else 0.
func (s *Submission) Late() uint64 { return LateBy(uint64(s.Received.UnixMilli()), s.Terms.Due) }

// LateBy returns received − due when due is not 0 and received is after it,
// else 0 (PROTOCOL.md §5.4: a submission received exactly at due is on
// time).
func LateBy(received, due uint64) uint64 {
	if due == 0 || received <= due {
		return 0
	}
	return received - due
}

// ReadRequest is the board's first step after the handshake (PROTOCOL.md
// §5.4): it reads the student's request, a *wire.SubmitRequest,
// *wire.HistoryRequest or *wire.AssignmentsRequest. Any other message is
// refused unexpected-message, answered to the student.
func (c *Conn) ReadRequest() (wire.Message, error) {
	if c.isClient {
		return nil, errors.New("session: ReadRequest is the board's")
	}
	m, err := c.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("session: waiting for the request: %w", err)
	}
	switch m.(type) {
	case *wire.SubmitRequest, *wire.HistoryRequest, *wire.AssignmentsRequest:
		return m, nil
	case *wire.Error:
		return nil, fmt.Errorf("session: waiting for the request: %w", m.(*wire.Error))
	}
	refusal := wire.Refusef(wire.CodeUnexpectedMessage,
		"got a %v message where a SubmitRequest, HistoryRequest or AssignmentsRequest was expected: update pkiboard", m.Type())
	_ = wire.Answer(c, refusal)
	return nil, fmt.Errorf("session: %w", refusal)
}

// answer answers the student with err (a *wire.Refusal keeps its code, any
// other error is internal) and returns it wrapped with what failed.
func (c *Conn) answer(what string, err error) error {
	var r *wire.Refusal
	if !errors.As(err, &r) {
		r = &wire.Refusal{Code: wire.CodeInternal, Text: "the board failed; try again later", Err: err}
	}
	_ = wire.Answer(c, r)
	return fmt.Errorf("session: %s: %w", what, r)
}

// ReceiveSubmission is the board's step 6 for a SubmitRequest up to the
// receipt (PROTOCOL.md §5.4): it checks that the request's name is SafeName of
// its original (bad-file-name), asks course for the terms by the session's
// clock and sends them; it receives the file with the Receiver that receiver
// returns for the terms (whose sinks should be the SID's own, so that an
// interrupted upload resumes only for the same student), checking that its
// FileHeader is the request's (file-mismatch); it reads SubmitEnd and takes
// that instant as Received; a submission received at or after the terms'
// lock is refused closed and its content discarded; then it verifies the
// student's signature over the statement with the certificate of the
// handshake.
//
// Every refusal is answered to the student, as a record, and returned. On any
// other error no submission is returned and nothing durable is discarded: a
// completely received file stays in its sink, finished and not aborted — with
// the board's store (board.Store.Receiver), a large file stays as a partial
// file in the SID's partial directory, which the student's next attempt
// resumes, and a small one held in memory is dropped.
func (c *Conn) ReceiveSubmission(req *wire.SubmitRequest, course Course, receiver func(*wire.Terms) *wire.Receiver) (*Submission, error) {
	if c.isClient {
		return nil, errors.New("session: ReceiveSubmission is the board's; the student calls Submit")
	}
	if name := wire.SafeName(req.Original, "report"); req.Name != name {
		return nil, c.answer("the request", wire.Refusef(wire.CodeBadFileName,
			"the file name %q is not the safe name of %q, which is %q: update pkiboard", req.Name, req.Original, name))
	}
	terms, err := course.Terms(c.sid, req, c.now())
	if err != nil {
		return nil, c.answer("the terms", err)
	}
	terms.Raw = nil // the board's terms are the fields as it sends them
	body, err := terms.Body()
	if err != nil {
		return nil, c.answer("the terms", err)
	}
	if err := c.WriteMessage(terms); err != nil {
		return nil, fmt.Errorf("session: sending the terms: %w", err)
	}
	terms.Raw = body
	in, err := receiver(terms).Receive(&headerCheck{Conn: c, req: req})
	if err != nil {
		return nil, fmt.Errorf("session: receiving the submission: %w", err)
	}
	end, err := wire.Expect[*wire.SubmitEnd](c.ReadMessage())
	if err != nil {
		_ = wire.Answer(c, err)
		return nil, fmt.Errorf("session: waiting for SubmitEnd: %w", err)
	}
	received := c.now().UTC().Truncate(time.Millisecond)
	if terms.Lock != 0 && uint64(received.UnixMilli()) >= terms.Lock {
		in.Sink.Abort(false)
		return nil, c.answer("the submission", wire.Refusef(wire.CodeClosed,
			"assignment %q locked at %s and your submission was received at %s: it is not accepted",
			terms.Assignment, utc(time.UnixMilli(int64(terms.Lock))), received.Format(receiptTime)))
	}
	statement, err := Statement(c.th, c.sid, body, req.Original, in.Name, uint64(in.Size), in.SHA256)
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
		Request:        req,
		Original:       req.Original,
		Terms:          terms,
		TermsBody:      body,
		Received:       received,
		SID:            c.sid,
		Suite:          c.suite,
		Chain:          []*x509.Certificate{c.peer},
		Board:          c.own,
		TranscriptHash: c.th,
		Statement:      statement,
		Signature:      end.Signature,
	}, nil
}

// headerCheck reads the submission's file transfer and refuses a FileHeader
// that is not the SubmitRequest's (file-mismatch) before the Receiver opens
// anything for it.
type headerCheck struct {
	*Conn
	req  *wire.SubmitRequest
	seen bool
}

// ReadMessage reads the next message; the first is checked against the
// request.
func (h *headerCheck) ReadMessage() (wire.Message, error) {
	m, err := h.Conn.ReadMessage()
	if err != nil || h.seen {
		return m, err
	}
	h.seen = true
	fh, ok := m.(*wire.FileHeader)
	if ok && (fh.Name != h.req.Name || fh.Size != h.req.Size || fh.SHA256 != h.req.SHA256) {
		return nil, wire.Refusef(wire.CodeFileMismatch,
			"the file announced (%q, %d bytes) is not the one of your request (%q, %d bytes): update pkiboard",
			fh.Name, fh.Size, h.req.Name, h.req.Size)
	}
	return m, nil
}

// ServeHistory answers a HistoryRequest (PROTOCOL.md §5.4): the student's
// receipts from course, newest first, in History records of at most
// wire.MaxRecordBody bytes each, the last with More unset. It returns how
// many receipts it sent.
func (c *Conn) ServeHistory(req *wire.HistoryRequest, course Course) (int, error) {
	if c.isClient {
		return 0, errors.New("session: ServeHistory is the board's")
	}
	items, err := course.History(c.sid, req.Assignment)
	if err != nil {
		return 0, c.answer("the history", err)
	}
	if len(items) > wire.MaxHistoryItems {
		items = items[:wire.MaxHistoryItems]
	}
	for _, rec := range packHistory(items) {
		if err := c.WriteMessage(rec); err != nil {
			return 0, fmt.Errorf("session: sending the history: %w", err)
		}
	}
	return len(items), nil
}

// historyHeader is the bytes of a History body before its items.
const historyHeader = 2

// packHistory splits items into History records of at most
// wire.MaxRecordBody bytes and 255 items; there is always one record.
func packHistory(items []wire.HistoryItem) []*wire.History {
	recs := []*wire.History{{}}
	size := historyHeader
	for _, it := range items {
		last := recs[len(recs)-1]
		if n := it.EncodedLen(); size+n > wire.MaxRecordBody || len(last.Items) == 255 {
			last.More = true
			last = &wire.History{}
			recs = append(recs, last)
			size = historyHeader
		}
		last.Items = append(last.Items, it)
		size += it.EncodedLen()
	}
	return recs
}

// ServeAssignments answers an AssignmentsRequest (PROTOCOL.md §5.4) with
// course's assignments for the student now, as many as one record holds. It
// returns how many it sent.
func (c *Conn) ServeAssignments(course Course) (int, error) {
	if c.isClient {
		return 0, errors.New("session: ServeAssignments is the board's")
	}
	items, err := course.Assignments(c.sid, c.now())
	if err != nil {
		return 0, c.answer("the assignments", err)
	}
	size := 1
	for i, it := range items {
		if size+it.EncodedLen() > wire.MaxRecordBody || i == 255 {
			items = items[:i]
			break
		}
		size += it.EncodedLen()
	}
	if err := c.WriteMessage(&wire.Assignments{Items: items}); err != nil {
		return 0, fmt.Errorf("session: sending the assignments: %w", err)
	}
	return len(items), nil
}

// HistoryEntry is one receipt of the student's history, as the board sent it
// and as she checked it.
type HistoryEntry struct {
	Item wire.HistoryItem // as the board sent it: the receipt's body and the board certificate

	// Board is the board certificate of Item, parsed; Receipt (version 3)
	// or ReceiptV2 (version 2) is the receipt, decoded. Either may be nil
	// when Err says it could not be read.
	Board     *x509.Certificate
	Receipt   *wire.Receipt
	ReceiptV2 *wire.ReceiptV2

	// Err says why the receipt is not evidence (it does not decode, is not
	// hers or not of the assignment asked for, or does not verify against
	// her root at its received time); nil when it is.
	Err error
}

// History asks the board for the student's receipts of assignment (every
// assignment if it is ""), reads every History record, at most
// wire.MaxHistoryItems receipts in all, and checks each (PROTOCOL.md §5.4):
// it is hers, of the assignment asked for, and verifies with the certificate
// given with it, checked against her root at the receipt's time. A receipt
// that fails is returned with its Err set; the error is for the session.
func (c *Conn) History(assignment string) ([]HistoryEntry, error) {
	if !c.isClient {
		return nil, errors.New("session: History is the student's")
	}
	if err := c.WriteMessage(&wire.HistoryRequest{Assignment: assignment}); err != nil {
		return nil, fmt.Errorf("session: sending the history request: %w", err)
	}
	var entries []HistoryEntry
	for {
		h, err := wire.Expect[*wire.History](c.ReadMessage())
		if err == nil && len(entries)+len(h.Items) > wire.MaxHistoryItems {
			err = wire.Refusef(wire.CodeMalformed, "the board sent more than %d receipts; tell the course staff", wire.MaxHistoryItems)
		}
		if err != nil {
			var peer *wire.Error
			if !errors.As(err, &peer) {
				_ = wire.Answer(c, err)
			}
			return nil, fmt.Errorf("session: reading the history: %w", err)
		}
		for _, it := range h.Items {
			entries = append(entries, c.checkHistoryItem(it, assignment))
		}
		if !h.More {
			return entries, nil
		}
	}
}

// checkHistoryItem decodes and checks one receipt of a history.
func (c *Conn) checkHistoryItem(it wire.HistoryItem, assignment string) HistoryEntry {
	e := HistoryEntry{Item: it}
	board, err := x509.ParseCertificate(it.Certificate)
	if err != nil {
		e.Err = fmt.Errorf("its board certificate does not parse: %v", err)
		return e
	}
	e.Board = board
	var sid string
	switch it.Version {
	case wire.ReceiptVersion3:
		r := new(wire.Receipt)
		if err := wire.UnmarshalBodyOf(r, it.Receipt); err != nil {
			e.Err = fmt.Errorf("it does not decode as a receipt of version 3: %v", err)
			return e
		}
		e.Receipt, sid = r, r.SID
		if assignment != "" && r.Assignment != assignment {
			e.Err = fmt.Errorf("it is for assignment %q, not %q", r.Assignment, assignment)
			return e
		}
		err = VerifyReceipt(r, board, c.root, c.historyNow())
	default:
		r := new(wire.ReceiptV2)
		if err := wire.UnmarshalBodyOf(r, it.Receipt); err != nil {
			e.Err = fmt.Errorf("it does not decode as a receipt of version 2: %v", err)
			return e
		}
		e.ReceiptV2, sid = r, r.SID
		err = VerifyReceiptV2(r, board, c.root, c.historyNow())
	}
	if err == nil && sid != c.sid {
		err = fmt.Errorf("it is for SID %q, not %q", sid, c.sid)
	}
	e.Err = err
	return e
}

// historyNow is the latest time a receipt of the history may be dated
// (PROTOCOL.md §5.4): the student's clock, plus DefaultHelloWindow, the
// difference between her clock and the board's that the handshake allows —
// a receipt the board signed a moment ago by a clock a little ahead of hers
// is not dated in her future.
func (c *Conn) historyNow() time.Time { return c.now().Add(DefaultHelloWindow) }

// Assignments asks the board for the assignments as they are for the
// student (PROTOCOL.md §5.4).
func (c *Conn) Assignments() ([]wire.AssignmentItem, error) {
	if !c.isClient {
		return nil, errors.New("session: Assignments is the student's")
	}
	if err := c.WriteMessage(&wire.AssignmentsRequest{}); err != nil {
		return nil, fmt.Errorf("session: sending the assignments request: %w", err)
	}
	a, err := wire.Expect[*wire.Assignments](c.ReadMessage())
	if err != nil {
		var peer *wire.Error
		if !errors.As(err, &peer) {
			_ = wire.Answer(c, err)
		}
		return nil, fmt.Errorf("session: reading the assignments: %w", err)
	}
	return a.Items, nil
}

// ReceiptFile returns the receipt file (PROTOCOL.md §5.5) of the entry's
// receipt, of version 3 or 2 as the receipt is: the file the student saved
// when she submitted it, byte for byte, since both are built from the
// receipt's signed fields and the board certificate that signed it.
func (e *HistoryEntry) ReceiptFile() ([]byte, error) {
	switch {
	case e.Board == nil:
	case e.Receipt != nil:
		return MarshalReceiptFile(e.Receipt, e.Board)
	case e.ReceiptV2 != nil:
		return MarshalReceiptFileV2(e.ReceiptV2, e.Board)
	}
	return nil, errors.New("session: the history entry holds no receipt that could be read")
}
