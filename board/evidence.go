package board

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// SubmissionView is one stored submission as `pkiboard submissions` shows it
// (and its --json prints).
type SubmissionView struct {
	ID       string    `json:"id"`
	SID      string    `json:"sid"`
	Serial   string    `json:"serial"` // the student certificate's, hex
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"` // hex
	Suite    string    `json:"suite"`
	Peer     string    `json:"peer"`
	Received time.Time `json:"received"`
	Resumed  int64     `json:"resumed_from,omitempty"`
}

// View returns the record as `pkiboard submissions` shows it.
func (r *Record) View() SubmissionView {
	return SubmissionView{
		ID: r.ID, SID: r.SID, Serial: hex.EncodeToString(r.Serial), Name: r.Name, Size: r.Size,
		SHA256: hex.EncodeToString(r.SHA256[:]), Suite: r.Suite, Peer: r.Peer, Received: r.Received,
		Resumed: r.Resumed,
	}
}

// Evidence is the outcome of checking a stored submission offline
// (`pkiboard submissions --verify ID`).
type Evidence struct {
	Submission SubmissionView `json:"submission"`
	ContentOK  bool           `json:"content_ok"` // the stored bytes have the recorded SHA-256
	ReceiptOK  bool           `json:"receipt_ok"` // the stored receipt is the board's, for this submission
	SignedBy   string         `json:"signed_by"`  // the student certificate's subject
	Issuer     string         `json:"issuer"`     // who issued it
	Root       string         `json:"root"`       // the fingerprint of the root it was checked against
	Problem    string         `json:"problem,omitempty"`

	// Revocation says what the CRL given to Verify says of the student's
	// certificate now: "not revoked", "revoked after the submission",
	// "revoked before the submission", or "unknown" (no CRL of the root).
	Revocation string `json:"revocation"`
	// CRLNumber is the number of that CRL (empty when unknown); RevokedAt
	// and Reason describe the certificate's entry in it, if any.
	CRLNumber string    `json:"crl_number,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// The values of Evidence.Revocation.
const (
	RevocationNone    = "not revoked"
	RevocationAfter   = "revoked after the submission"
	RevocationBefore  = "revoked before the submission"
	RevocationUnknown = "unknown"
)

// Verify checks, with the root alone, that the stored content of rec is what
// the student signed: the content's SHA-256, the student's certificate (signed
// by root, valid and for clientAuth at the time of receipt) and the signature
// over the submission statement (which must be the one stored); and that the
// stored receipt is the one the board sent for it: its fields are the
// record's, and it verifies with the stored board certificate, as the
// student's copy would (session.VerifyReceipt). It also says whether crl (the board's
// current CRL; nil if none) revokes the student's certificate now, and whether
// that was before or after the submission: a certificate revoked before the
// board received the submission cannot vouch for it, so the evidence then does
// not hold. A crl not signed by root is not used. The evidence holds when
// Problem is empty.
func (s *Store) Verify(rec *Record, root *x509.Certificate, crl *x509.RevocationList) Evidence {
	ev := Evidence{Submission: rec.View(), Root: keys.FingerprintHex(root), Revocation: RevocationUnknown}
	sum, err := durable.FileSHA256(s.ContentPath(rec))
	switch {
	case err != nil:
		ev.Problem = fmt.Sprintf("cannot read the stored content: %v", err)
		return ev
	case sum != rec.SHA256:
		ev.Problem = "the stored content does not have the SHA-256 the student signed: it was altered after it was stored"
		return ev
	}
	ev.ContentOK = true
	cert, problem := rec.checkStatement(root)
	if cert != nil {
		ev.SignedBy, ev.Issuer = cert.Subject.String(), cert.Issuer.String()
	}
	if problem != "" {
		ev.Problem = problem
		return ev
	}
	if problem := checkStoredReceipt(rec, root); problem != "" {
		ev.Problem = problem
		return ev
	}
	ev.ReceiptOK = true
	if crl == nil || crl.CheckSignatureFrom(root) != nil {
		return ev
	}
	ev.CRLNumber, ev.Revocation = crl.Number.String(), RevocationNone
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber == nil || e.SerialNumber.Cmp(cert.SerialNumber) != 0 {
			continue
		}
		ev.RevokedAt, ev.Reason = e.RevocationTime.UTC(), ca.ReasonName(e.ReasonCode)
		if rec.Received.Before(e.RevocationTime) {
			ev.Revocation = RevocationAfter
		} else {
			ev.Revocation = RevocationBefore
			ev.Problem = fmt.Sprintf("the student's certificate was revoked (%s) at %s, before the board received the submission at %s: it cannot vouch for it",
				ev.Reason, ev.RevokedAt.Format(time.RFC3339), rec.Received.UTC().Format(time.RFC3339))
		}
	}
	return ev
}

// VerifySigned is Verify without reading the stored content: it checks
// that the student signed the statement the record's fields make, with a
// certificate of root valid at the time of receipt, and that the stored
// receipt is the board's for this submission. It returns "" when both hold,
// else what is wrong; it says nothing of whether the content still has the
// SHA-256 she signed (Verify reads it).
func (r *Record) VerifySigned(root *x509.Certificate) string {
	if _, problem := r.checkStatement(root); problem != "" {
		return problem
	}
	return checkStoredReceipt(r, root)
}

// checkStatement checks the stored statement and the student's signature
// over it, and returns her certificate (nil if none can be parsed) and what
// is wrong, or "".
func (r *Record) checkStatement(root *x509.Certificate) (*x509.Certificate, string) {
	if len(r.StudentCertificate) == 0 {
		return nil, "no student certificate stored"
	}
	cert, err := x509.ParseCertificate(r.StudentCertificate)
	if err != nil {
		return nil, fmt.Sprintf("stored certificate: %v", err)
	}
	if stmt, err := r.statement(); err != nil || !bytes.Equal(stmt, r.Statement) {
		return cert, "the stored statement is not the one the submission's fields make (the student's signature covers those)"
	}
	if err := session.VerifyStatement(cert, root, r.Received, r.SID, r.Statement, r.Signature); err != nil {
		return cert, err.Error()
	}
	return cert, ""
}

// ReceiptFile returns the receipt file of the stored submission, exactly as
// the student's (PROTOCOL.md §5.5): session.ParseReceiptFile reads it back
// and ReceiptFile.Verify checks it.
func (r *Record) ReceiptFile() ([]byte, error) {
	boardCert, err := x509.ParseCertificate(r.BoardCertificate)
	if err != nil {
		return nil, fmt.Errorf("board: the stored board certificate of %s: %w", r.ID, err)
	}
	if r.ReceiptVersion == wire.ReceiptVersion2 {
		m, err := r.ReceiptV2Message()
		if err != nil {
			return nil, err
		}
		return session.MarshalReceiptFileV2(m, boardCert)
	}
	m, err := r.ReceiptMessage()
	if err != nil {
		return nil, err
	}
	return session.MarshalReceiptFile(m, boardCert)
}

// statement returns the statement the record's fields make, in the layout
// of its protocol version.
func (r *Record) statement() ([]byte, error) {
	if r.ReceiptVersion == wire.ReceiptVersion2 {
		return session.StatementV2(r.Transcript, r.SID, r.Name, uint64(r.Size), r.SHA256)
	}
	return session.Statement(r.Transcript, r.SID, r.Terms, r.Original, r.Name, uint64(r.Size), r.SHA256)
}

// checkStoredReceipt says what is wrong with rec's stored receipt, or "".
func checkStoredReceipt(rec *Record, root *x509.Certificate) string {
	boardCert, err := x509.ParseCertificate(rec.BoardCertificate)
	if err != nil {
		return fmt.Sprintf("the stored board certificate: %v", err)
	}
	differ := "the stored receipt is not for this submission: its fields differ from the record's"
	if rec.ReceiptVersion == wire.ReceiptVersion2 {
		r, err := rec.ReceiptV2Message()
		if err != nil {
			return err.Error()
		}
		if r.ID != rec.ID || r.SID != rec.SID || !bytes.Equal(r.Serial, rec.Serial) || r.Name != rec.Name ||
			r.Size != uint64(rec.Size) || r.SHA256 != rec.SHA256 || r.Received != uint64(rec.Received.UnixMilli()) {
			return differ
		}
		if err := session.VerifyReceiptV2(r, boardCert, root, time.Now()); err != nil {
			return fmt.Sprintf("the stored receipt does not verify: %v", err)
		}
		return ""
	}
	r, err := rec.ReceiptMessage()
	if err != nil {
		return err.Error()
	}
	if r.ID != rec.ID || r.SID != rec.SID || !bytes.Equal(r.Serial, rec.Serial) || r.Name != rec.Name ||
		r.Size != uint64(rec.Size) || r.SHA256 != rec.SHA256 || r.Received != uint64(rec.Received.UnixMilli()) ||
		r.Assignment != rec.Assignment || r.Original != rec.Original || r.Due != rec.Due || r.Late != rec.LateMS ||
		r.Version != rec.Version {
		return differ
	}
	if err := session.VerifyReceipt(r, boardCert, root, time.Now()); err != nil {
		return fmt.Sprintf("the stored receipt does not verify: %v", err)
	}
	return ""
}
