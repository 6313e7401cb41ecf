package board

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync"
	"testing"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// boardSigner is a board certificate and its key, which sign receipts as the
// board's session does (session.Conn.SignReceipt).
type boardSigner struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newBoardSigner issues a board certificate under root (self-signed if root
// is nil).
func newBoardSigner(t *testing.T, root *x509.Certificate, rootKey crypto.Signer) *boardSigner {
	t.Helper()
	k := testcert.Key(t)
	if root == nil {
		rootKey = k
	}
	cert := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "blackboard"}, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, root, k.Public(), rootKey)
	return &boardSigner{cert: cert, key: k}
}

// sign signs r as session.Conn.SignReceipt does.
func (b *boardSigner) sign(r *wire.Receipt) error {
	r.BoardCertSHA256 = sha256.Sum256(b.cert.Raw)
	msg, err := session.ReceiptSignedBytes(r)
	if err != nil {
		return err
	}
	r.Signature, err = keys.Sign(b.key, rand.Reader, msg)
	return err
}

var (
	defaultBoardOnce sync.Once
	defaultBoard     *boardSigner
)

// testBoard returns a self-signed board signer shared by the tests that do
// not verify receipts against a root.
func testBoard(t *testing.T) *boardSigner {
	defaultBoardOnce.Do(func() { defaultBoard = newBoardSigner(t, nil, nil) })
	return defaultBoard
}
