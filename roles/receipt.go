package roles

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// saveReceipt writes a verified receipt into dir/receipts/<id>.json and returns
// the path.
func saveReceipt(dir string, r *wire.Receipt, boardChain []*x509.Certificate) (string, error) {
	data, err := session.MarshalReceiptFile(r, boardChain)
	if err != nil {
		return "", err
	}
	if !sidPath.MatchString(r.ID) {
		return "", fmt.Errorf("the board's receipt id %q cannot name a file", r.ID)
	}
	path := filepath.Join(dir, "receipts", r.ID+".json")
	return path, durable.WriteFile(path, data, 0o644)
}

// VerifyReceiptOptions says how to check a receipt file.
type VerifyReceiptOptions struct {
	File      string // the receipt
	Root      string // root certificate; "" for root.pem of the receipt's SID directory
	Content   string // optionally, a file whose SHA-256 must be the receipt's
	BoardName string // the CN the board's certificate must have; "" for any
}

// VerifyReceipt checks a receipt file offline against the root certificate and
// prints what it proves.
func VerifyReceipt(o VerifyReceiptOptions, w io.Writer) error {
	data, err := os.ReadFile(o.File)
	if err != nil {
		return fmt.Errorf("verify-receipt: %w", err)
	}
	r, chain, err := session.ParseReceiptFile(data)
	if err != nil {
		return fmt.Errorf("verify-receipt %s: %w", o.File, err)
	}
	rootPath := o.Root
	if rootPath == "" {
		rootPath = filepath.Join(filepath.Dir(filepath.Dir(o.File)), ca.RootFile)
	}
	root, err := keys.ReadCertificate(rootPath)
	if err != nil {
		return fmt.Errorf("verify-receipt: root certificate: %w (give one with --root)", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if err := session.VerifyReceipt(r, chain, pool, time.Now()); err != nil {
		return fmt.Errorf("verify-receipt %s: does NOT verify: %w", o.File, err)
	}
	if o.BoardName != "" && chain[0].Subject.CommonName != o.BoardName {
		return fmt.Errorf("verify-receipt %s: signed by %q, not the board %q", o.File, chain[0].Subject.CommonName, o.BoardName)
	}
	if o.Content != "" {
		sum, err := durable.FileSHA256(o.Content)
		if err != nil {
			return fmt.Errorf("verify-receipt: %w", err)
		}
		if sum != r.SHA256 {
			return fmt.Errorf("verify-receipt: %s has SHA-256 %x, not the receipt's %x", o.Content, sum, r.SHA256)
		}
	}
	fmt.Fprintf(w, "receipt %s verifies: board %q (root %s) received %s from %s (%d bytes, SHA-256 %x) at %s\n",
		r.ID, chain[0].Subject.CommonName, keys.FingerprintHex(root), r.Name, r.SID, r.Size, r.SHA256,
		time.UnixMilli(int64(r.Received)).UTC().Format(time.RFC3339))
	if o.Content != "" {
		fmt.Fprintf(w, "%s matches the receipt\n", o.Content)
	}
	return nil
}
