package session

import (
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
	contextServerVerify = "pkiboard v1 server verify"
	contextSubmission   = "pkiboard v1 submission"
	contextReceipt      = "pkiboard v1 receipt"
	labelSessionKey     = "pkiboard v1 session key" // RSA-OAEP label and HPKE info, then H_hello
	labelPQ             = "pkiboard v1 pq"          // X-Wing HPKE info, then H_hello
	exporterPQ          = "pkiboard v1 pq secret"   // X-Wing HPKE exporter context
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
//	"pkiboard v1 submission" || 0x00 || th || sid: string8 || name: string8
//	    || size: u64 || sha256: fixed[32]
//
// The error reports a sid or name that a string8 cannot hold (more than 255
// bytes, or not UTF-8).
func Statement(th [32]byte, sid, name string, size uint64, sum [32]byte) ([]byte, error) {
	var b wire.Builder
	b.Fixed([]byte(contextSubmission))
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
// (PROTOCOL.md §5.4): "pkiboard v1 receipt" || 0x00 || every field but the
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

// VerifyReceipt checks a receipt offline, with the root certificates alone:
// boardChain (the board's certificate first, then any intermediates, as the
// receipt file stores them) must chain to roots, at the time the receipt says
// it was made, with EKU serverAuth; the signature must verify with the board's
// key; and the receipt must not be dated after now. It does not check the
// board's name: compare boardChain[0].Subject.CommonName if that matters.
func VerifyReceipt(r *wire.Receipt, boardChain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if r == nil || len(boardChain) == 0 || boardChain[0] == nil || roots == nil {
		return errors.New("session: verifying a receipt: receipt, board certificate and roots are required")
	}
	at := time.UnixMilli(int64(r.Received))
	if r.Received > 1<<62 || at.After(now) {
		return fmt.Errorf("session: the receipt is dated %s, after now (%s)", utc(at), utc(now))
	}
	if err := verifyOffline(boardChain, roots, at, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("session: the receipt's board certificate: %w", err)
	}
	msg, err := ReceiptSignedBytes(r)
	if err != nil {
		return err
	}
	if err := keys.Verify(boardChain[0].PublicKey, msg, r.Signature); err != nil {
		return fmt.Errorf("session: the receipt's signature: %w", err)
	}
	return nil
}

// VerifyStatement checks a student's SubmitEnd signature offline, with the root
// certificates alone (non-repudiation): chain (the student's certificate
// first, then any intermediates, as the board stores them) must chain to roots
// at time at (when the submission was received), with EKU clientAuth and CN
// sid, and sig must be the certificate key's signature over Statement(th, sid,
// name, size, sum).
func VerifyStatement(chain []*x509.Certificate, roots *x509.CertPool, at time.Time,
	th [32]byte, sid, name string, size uint64, sum [32]byte, sig []byte) error {
	if len(chain) == 0 || chain[0] == nil || roots == nil {
		return errors.New("session: verifying a statement: certificate and roots are required")
	}
	if err := verifyOffline(chain, roots, at, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("session: the student's certificate: %w", err)
	}
	if cn, ok := singleCN(chain[0]); !ok || cn != sid {
		return fmt.Errorf("session: the student's certificate is not for SID %q", sid)
	}
	msg, err := Statement(th, sid, name, size, sum)
	if err != nil {
		return err
	}
	if err := keys.Verify(chain[0].PublicKey, msg, sig); err != nil {
		return fmt.Errorf("session: the statement's signature: %w", err)
	}
	return nil
}

// verifyOffline verifies chain to roots at time at for usage.
func verifyOffline(chain []*x509.Certificate, roots *x509.CertPool, at time.Time, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{usage},
	})
	switch {
	case err != nil:
	case chain[0].IsCA:
		err = errors.New("it is a CA certificate")
	case !namesUsage(chain[0], usage):
		err = errUsageNotNamed
	}
	return err
}
