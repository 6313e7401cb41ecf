package session

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"pkiboard/wire"
)

// receiptFile is a receipt as the student keeps it (PROTOCOL.md §5.4): the
// board's signed fields, readable, with the board's certificates, so that it
// can be checked offline against the root alone.
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

// receiptTime is the layout of receiptFile.Received: RFC 3339 with
// milliseconds.
const receiptTime = "2006-01-02T15:04:05.000Z07:00"

// MarshalReceiptFile returns the receipt file (PROTOCOL.md §5.4) of r, a
// receipt verified against the board's chain boardChain: indented JSON holding
// version 1, the receipt's fields (bytes as lowercase hex, the time as RFC
// 3339 with milliseconds, UTC) and the board's certificates (base64 DER),
// ending with a newline.
func MarshalReceiptFile(r *wire.Receipt, boardChain []*x509.Certificate) ([]byte, error) {
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
		return nil, err
	}
	return append(data, '\n'), nil
}

// ParseReceiptFile reads a receipt file back into the signed message and the
// board's chain, which VerifyReceipt checks. It refuses a chain longer than a
// handshake carries (wire.MaxCertificates) before parsing any certificate, and
// a file with no board certificate.
func ParseReceiptFile(data []byte) (*wire.Receipt, []*x509.Certificate, error) {
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
