package session

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"pkiboard/wire"
)

// ReceiptValidity is the verdict of the receipt-validity policy of
// PROTOCOL.md §5.5 on a receipt whose signature verifies.
type ReceiptValidity int

const (
	// ReceiptValid: the board certificate is not on the CRL, or was revoked
	// for a reason other than a key compromise after the receipt was made.
	ReceiptValid ReceiptValidity = iota
	// ReceiptSuspect: the board's key was compromised, and revoked after the
	// receipt was made: the key may have been stolen earlier and the receipt
	// backdated. It is valid only with other evidence (the board's stored,
	// student-signed statement).
	ReceiptSuspect
	// ReceiptInvalid: the receipt was made at or after the revocation of the
	// board certificate that signed it.
	ReceiptInvalid
)

// String returns "valid", "suspect" or "invalid".
func (v ReceiptValidity) String() string {
	switch v {
	case ReceiptValid:
		return "valid"
	case ReceiptSuspect:
		return "suspect"
	case ReceiptInvalid:
		return "invalid"
	}
	return fmt.Sprintf("ReceiptValidity(%d)", int(v))
}

// Revocation reasons of RFC 5280 §5.3.1 that the policy treats as a
// compromise of the board's key.
const (
	reasonKeyCompromise = 1
	reasonCACompromise  = 2
)

// JudgeReceipt applies the receipt-validity policy of PROTOCOL.md §5.5 to a
// receipt that VerifyReceipt accepted with board: crl must be signed by root
// (an error otherwise), and the verdict depends on board's entry in it, if
// any — its revocation time against the receipt's received time, and its
// reason. The sentence says why, for a human.
func JudgeReceipt(r *wire.Receipt, board, root *x509.Certificate, crl *x509.RevocationList) (ReceiptValidity, string, error) {
	if r == nil || board == nil || root == nil || crl == nil {
		return 0, "", errors.New("session: judging a receipt: receipt, board certificate, root and CRL are required")
	}
	if r.BoardCertSHA256 != sha256.Sum256(board.Raw) {
		return 0, "", errors.New("session: the receipt names another board certificate than the one given with it")
	}
	if err := crl.CheckSignatureFrom(root); err != nil {
		return 0, "", fmt.Errorf("session: the CRL is not signed by the root %q: %w", subjectName(root), err)
	}
	received := time.UnixMilli(int64(r.Received)).UTC()
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber == nil || e.SerialNumber.Cmp(board.SerialNumber) != 0 {
			continue
		}
		revoked := e.RevocationTime.UTC()
		reason := revocationReason(e.ReasonCode)
		compromise := e.ReasonCode == reasonKeyCompromise || e.ReasonCode == reasonCACompromise
		at := fmt.Sprintf("the board certificate (serial %x) was revoked (%s) at %s; the receipt was made at %s",
			board.SerialNumber, reason, revoked.Format(time.RFC3339), received.Format("2006-01-02T15:04:05.000Z07:00"))
		switch {
		case !received.Before(revoked):
			return ReceiptInvalid, at + ", at or after the revocation", nil
		case compromise:
			return ReceiptSuspect, at + ", before the revocation, but the key was compromised and may have been stolen earlier: the receipt is valid only with other evidence (the board's stored statement signed by the student)", nil
		default:
			return ReceiptValid, at + ", before the revocation, for a reason that does not put earlier receipts in doubt", nil
		}
	}
	return ReceiptValid, fmt.Sprintf("the board certificate (serial %x) is not on the CRL (number %s, of %s)",
		board.SerialNumber, crl.Number, crl.ThisUpdate.UTC().Format(time.RFC3339)), nil
}

// revocationReason names an RFC 5280 CRLReason code.
func revocationReason(code int) string {
	names := map[int]string{0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
		4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
		9: "privilegeWithdrawn", 10: "aACompromise"}
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", code)
}
