package roles

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// receiptFile is a receipt as the student keeps it (PROTOCOL.md §5.4): the
// board's signed fields, readable, with the board's certificates, so that it can
// be checked offline against the root alone.
type receiptFile struct {
	Version           int      `json:"version"`
	ID                string   `json:"id"`
	SID               string   `json:"sid"`
	Serial            string   `json:"serial"` // hex
	Name              string   `json:"name"`
	Size              uint64   `json:"size"`
	SHA256            string   `json:"sha256"`   // hex
	Received          string   `json:"received"` // RFC 3339, milliseconds
	Signature         string   `json:"signature"`
	BoardCertificates [][]byte `json:"board_certificates"` // DER, base64 in JSON
}

const receiptTime = "2006-01-02T15:04:05.000Z07:00"

// saveReceipt writes a verified receipt into dir/receipts/<id>.json and returns
// the path.
func saveReceipt(dir string, r *wire.Receipt, boardChain []*x509.Certificate) (string, error) {
	f := receiptFile{
		Version:   1,
		ID:        r.ID,
		SID:       r.SID,
		Serial:    hex.EncodeToString(r.Serial),
		Name:      r.Name,
		Size:      r.Size,
		SHA256:    hex.EncodeToString(r.SHA256[:]),
		Received:  time.UnixMilli(int64(r.Received)).UTC().Format(receiptTime),
		Signature: hex.EncodeToString(r.Signature),
	}
	for _, c := range boardChain {
		f.BoardCertificates = append(f.BoardCertificates, c.Raw)
	}
	data, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return "", err
	}
	if !sidPath.MatchString(r.ID) {
		return "", fmt.Errorf("the board's receipt id %q cannot name a file", r.ID)
	}
	path := filepath.Join(dir, "receipts", r.ID+".json")
	return path, keys.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// parseReceiptFile reads a receipt file back into the signed message and the
// board's chain.
func parseReceiptFile(data []byte) (*wire.Receipt, []*x509.Certificate, error) {
	var f receiptFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, nil, fmt.Errorf("not a receipt file: %w", err)
	}
	if f.Version != 1 {
		return nil, nil, fmt.Errorf("receipt version %d is not 1", f.Version)
	}
	serial, err1 := hex.DecodeString(f.Serial)
	sum, err2 := hex.DecodeString(f.SHA256)
	sig, err3 := hex.DecodeString(f.Signature)
	received, err4 := time.Parse(time.RFC3339Nano, f.Received)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, nil, fmt.Errorf("receipt fields: %v", err)
	}
	if len(sum) != 32 {
		return nil, nil, fmt.Errorf("receipt field sha256 holds %d bytes, not 32", len(sum))
	}
	r := &wire.Receipt{ID: f.ID, SID: f.SID, Serial: serial, Name: f.Name, Size: f.Size,
		Received: uint64(received.UnixMilli()), Signature: sig}
	copy(r.SHA256[:], sum)
	// The chain is the board's from the handshake, which carries at most
	// wire.MaxCertificates; a longer one is refused before any is parsed.
	if n := len(f.BoardCertificates); n > wire.MaxCertificates {
		return nil, nil, fmt.Errorf("the receipt holds %d board certificates; a board sends at most %d", n, wire.MaxCertificates)
	}
	var chain []*x509.Certificate
	for _, der := range f.BoardCertificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("board certificate in the receipt: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("the receipt holds no board certificate")
	}
	return r, chain, nil
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
	r, chain, err := parseReceiptFile(data)
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
		sum, err := fileSHA256(o.Content)
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
