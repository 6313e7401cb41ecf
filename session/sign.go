package session

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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

// ErrUnsupportedKey matches the error of SignMessage and VerifyMessage for a key
// that has no signature scheme in PROTOCOL.md §5.1.
var ErrUnsupportedKey = errors.New("session: unsupported key")

// ErrBadSignature matches the error of VerifyMessage, VerifyReceipt and
// VerifyStatement for a signature that does not verify.
var ErrBadSignature = errors.New("session: signature does not verify")

// scheme is a signature scheme of PROTOCOL.md §5.1.
type scheme struct {
	hash crypto.Hash
	pss  bool
}

// signatureScheme returns the scheme for a public key: ECDSA P-256 with
// SHA-256, ECDSA P-384 with SHA-384, RSA-PSS with SHA-256 and a 32-byte salt.
func signatureScheme(pub crypto.PublicKey) (scheme, error) {
	if err := keys.Supported(pub); err == nil {
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			if k.Curve == elliptic.P384() {
				return scheme{hash: crypto.SHA384}, nil
			}
			return scheme{hash: crypto.SHA256}, nil
		case *rsa.PublicKey:
			return scheme{hash: crypto.SHA256, pss: true}, nil
		}
	}
	return scheme{}, fmt.Errorf("%w: %s has no signature scheme (use ECDSA P-256 or P-384, or RSA of %d to %d bits)",
		ErrUnsupportedKey, keys.Describe(pub), keys.MinRSABits, keys.MaxRSABits)
}

// digest hashes msg with the scheme's hash.
func (s scheme) digest(msg []byte) []byte {
	if s.hash == crypto.SHA384 {
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// pssOptions are the RSA-PSS parameters of PROTOCOL.md §5.1: SHA-256, MGF1 with
// SHA-256, a 32-byte salt (the verifier requires exactly 32).
var pssOptions = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// SignMessage signs msg with key, in the scheme its public key calls for
// (PROTOCOL.md §5.1): ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384 (ASN.1
// DER signatures), RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt. msg is
// the whole message (context string, zero byte, content): SignMessage hashes it.
// rand is passed to key.Sign; a nil rand makes ECDSA signatures deterministic
// (RFC 6979).
func SignMessage(key crypto.Signer, rand io.Reader, msg []byte) ([]byte, error) {
	s, err := signatureScheme(key.Public())
	if err != nil {
		return nil, err
	}
	var opts crypto.SignerOpts = s.hash
	if s.pss {
		opts = pssOptions
	}
	sig, err := key.Sign(rand, s.digest(msg), opts)
	if err != nil {
		return nil, fmt.Errorf("session: signing: %w", err)
	}
	return sig, nil
}

// VerifyMessage checks sig, a signature by SignMessage, over msg with pub. The
// error matches ErrBadSignature, or ErrUnsupportedKey for a key that has no
// scheme.
func VerifyMessage(pub crypto.PublicKey, msg, sig []byte) error {
	s, err := signatureScheme(pub)
	if err != nil {
		return err
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, s.digest(msg), sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPSS(k, s.hash, s.digest(msg), sig, pssOptions) == nil
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

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
	if err := VerifyMessage(boardChain[0].PublicKey, msg, r.Signature); err != nil {
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
	if err := VerifyMessage(chain[0].PublicKey, msg, sig); err != nil {
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
