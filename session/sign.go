package session

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// Context strings of the signatures and encryptions of PROTOCOL.md §5. A
// signed message is its context string, a zero byte, then its content, so that
// no signature made for one purpose verifies for another.
const (
	contextServerVerify = "pkiboard v2 server verify"
	contextSubmission   = "pkiboard v3 submission"
	contextReceipt      = "pkiboard v3 receipt"
	contextSubmissionV2 = "pkiboard v2 submission"  // the statements of version 2, kept as evidence
	contextReceiptV2    = "pkiboard v2 receipt"     // the receipts of version 2, kept as evidence
	labelSessionKey     = "pkiboard v2 session key" // RSA-OAEP label and HPKE info, then H_hello
	labelPQ             = "pkiboard v2 pq"          // X-Wing HPKE info, then H_hello
	exporterPQ          = "pkiboard v2 pq secret"   // X-Wing HPKE exporter context
)

// signedMessage returns context || 0x00 || content.
func signedMessage(context string, content ...[]byte) []byte {
	n := len(context) + 1
	for _, c := range content {
		n += len(c)
	}
	msg := make([]byte, 0, n)
	msg = append(append(msg, context...), 0)
	for _, c := range content {
		msg = append(msg, c...)
	}
	return msg
}

// Statement returns the submission statement the student signs in SubmitEnd
// (PROTOCOL.md §5.4), context string included:
//
//	"pkiboard v3 submission" || 0x00 || th || sid: string8
//	    || terms (the Terms body as sent) || original: string16
//	    || name: string8 || size: u64 || sha256: fixed[32]
//
// The error reports a string its field cannot hold.
func Statement(th [32]byte, sid string, terms []byte, original, name string, size uint64, sum [32]byte) ([]byte, error) {
	var b wire.Builder
	b.Fixed([]byte(contextSubmission))
	b.U8(0)
	b.Fixed(th[:])
	b.String8(sid)
	b.Fixed(terms)
	b.String16(original)
	b.String8(name)
	b.U64(size)
	b.Fixed(sum[:])
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("session: building the statement: %w", err)
	}
	return b.Bytes(), nil
}

// StatementV2 returns the statement of version 2, which a board keeps as
// evidence of a submission it stored before version 3:
//
//	"pkiboard v2 submission" || 0x00 || th || sid: string8 || name: string8
//	    || size: u64 || sha256: fixed[32]
func StatementV2(th [32]byte, sid, name string, size uint64, sum [32]byte) ([]byte, error) {
	var b wire.Builder
	b.Fixed([]byte(contextSubmissionV2))
	b.U8(0)
	b.Fixed(th[:])
	b.String8(sid)
	b.String8(name)
	b.U64(size)
	b.Fixed(sum[:])
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("session: building the statement: %w", err)
	}
	return b.Bytes(), nil
}

// ReceiptSignedBytes returns the message the board signs in a Receipt
// (PROTOCOL.md §5.4): "pkiboard v3 receipt" || 0x00 || every field but the
// signature, encoded as in the Receipt. The error reports a field that cannot
// be encoded.
func ReceiptSignedBytes(r *wire.Receipt) ([]byte, error) {
	var b wire.Builder
	b.Fixed([]byte(contextReceipt))
	b.U8(0)
	r.MarshalSigned(&b)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("session: encoding the receipt: %w", err)
	}
	return b.Bytes(), nil
}

// ReceiptV2SignedBytes returns what a board of version 2 signed in a
// receipt: "pkiboard v2 receipt" || 0x00 || the fields of version 2 but the
// signature.
func ReceiptV2SignedBytes(r *wire.ReceiptV2) ([]byte, error) {
	var b wire.Builder
	b.Fixed([]byte(contextReceiptV2))
	b.U8(0)
	r.MarshalSigned(&b)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("session: encoding the receipt: %w", err)
	}
	return b.Bytes(), nil
}

// VerifyReceipt checks a receipt offline, with the root certificate alone
// (PROTOCOL.md §5.5): board (the board's certificate, as the receipt file
// stores it) must be the certificate the receipt names (board_cert_sha256),
// signed by root, valid at the time the receipt says it was made, with EKU
// serverAuth listed and not a CA; the signature must verify with its key; the
// receipt must not be dated after now; and its late must follow from its
// received and due times. It does not check the board's name (compare
// board.Subject.CommonName if that matters) nor revocation (JudgeReceipt).
func VerifyReceipt(r *wire.Receipt, board, root *x509.Certificate, now time.Time) error {
	if r == nil {
		return errors.New("session: verifying a receipt: the receipt is required")
	}
	msg, err := ReceiptSignedBytes(r)
	if err != nil {
		return err
	}
	if err := verifyReceipt(r.Received, r.BoardCertSHA256, msg, r.Signature, board, root, now); err != nil {
		return err
	}
	if late := LateBy(r.Received, r.Due); r.Late != late {
		return fmt.Errorf("session: the receipt says late by %d ms, but received %d and due %d make %d ms", r.Late, r.Received, r.Due, late)
	}
	return nil
}

// VerifyReceiptV2 is VerifyReceipt for a receipt of version 2.
func VerifyReceiptV2(r *wire.ReceiptV2, board, root *x509.Certificate, now time.Time) error {
	if r == nil {
		return errors.New("session: verifying a receipt: the receipt is required")
	}
	msg, err := ReceiptV2SignedBytes(r)
	if err != nil {
		return err
	}
	return verifyReceipt(r.Received, r.BoardCertSHA256, msg, r.Signature, board, root, now)
}

// verifyReceipt checks a receipt's time, board certificate and signature sig
// over msg.
func verifyReceipt(received uint64, certSum [32]byte, msg, sig []byte, board, root *x509.Certificate, now time.Time) error {
	if board == nil || root == nil {
		return errors.New("session: verifying a receipt: board certificate and root are required")
	}
	at := time.UnixMilli(int64(received))
	if received > 1<<62 || at.After(now) {
		return fmt.Errorf("session: the receipt is dated %s, after now (%s)", utc(at), utc(now))
	}
	if certSum != sha256.Sum256(board.Raw) {
		return errors.New("session: the receipt names another board certificate than the one given with it")
	}
	if err := verifyOffline(board, root, at, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("session: the receipt's board certificate: %w", err)
	}
	if err := keys.Verify(board.PublicKey, msg, sig); err != nil {
		return fmt.Errorf("session: the receipt's signature: %w", err)
	}
	return nil
}

// VerifyStatement checks a student's SubmitEnd signature offline, with the root
// certificate alone (non-repudiation): cert (the student's certificate, as the
// board stores it) must be signed by root and valid at time at (when the
// submission was received), with EKU clientAuth listed, not a CA, and CN sid,
// and sig must be its key's signature over statement (as Statement, or
// StatementV2 for a submission of version 2, builds it: the caller checks
// that the stored statement is the one of the submission).
func VerifyStatement(cert, root *x509.Certificate, at time.Time, sid string, statement, sig []byte) error {
	if cert == nil || root == nil {
		return errors.New("session: verifying a statement: certificate and root are required")
	}
	if err := verifyOffline(cert, root, at, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("session: the student's certificate: %w", err)
	}
	if cn, ok := singleCN(cert); !ok || cn != sid {
		return fmt.Errorf("session: the student's certificate is not for SID %q", sid)
	}
	if err := keys.Verify(cert.PublicKey, statement, sig); err != nil {
		return fmt.Errorf("session: the statement's signature: %w", err)
	}
	return nil
}

// verifyOffline checks that root signed cert, directly, and that cert is valid
// at time at, names usage and is not a CA: the handshake's check, at another
// time.
func verifyOffline(cert, root *x509.Certificate, at time.Time, usage x509.ExtKeyUsage) error {
	_, cerr := checkPeerCertificate(cert.Raw, root, at, usage)
	if cerr == nil {
		return nil
	}
	switch cerr.fault {
	case faultUnknownCA, faultParse:
		return fmt.Errorf("not signed by the root %q: %w", subjectName(root), cerr.err)
	case faultExpired, faultNotYetValid:
		return fmt.Errorf("not valid at %s (valid from %s to %s)", utc(at), utc(cert.NotBefore), utc(cert.NotAfter))
	case faultRootNotValid:
		return fmt.Errorf("the root is not valid at %s", utc(at))
	case faultCA:
		return errors.New("it is a CA certificate")
	}
	return cerr.err
}
