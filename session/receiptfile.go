package session

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"pkiboard/wire"
)

// ReceiptFileVersion is the version a receipt file carries (PROTOCOL.md §5.5).
const ReceiptFileVersion = 2

// receiptFile is a receipt as the student keeps it (PROTOCOL.md §5.5): the
// board's signed fields, readable, with the board's certificate, so that it
// can be checked offline against the root alone. Its keys and JSON types are
// exactly the document's.
type receiptFile struct {
	Version           int      `json:"version"`
	ID                string   `json:"id"`
	SID               string   `json:"sid"`
	Serial            string   `json:"serial"` // lowercase hex
	Name              string   `json:"name"`
	Size              uint64   `json:"size"`
	SHA256            string   `json:"sha256"`             // lowercase hex
	Received          string   `json:"received"`           // RFC 3339, UTC, three fractional digits
	Signature         string   `json:"signature"`          // lowercase hex
	BoardCertificates [][]byte `json:"board_certificates"` // DER, standard base64 with padding in JSON; one entry
}

// receiptFileKeys are the keys a receipt file has, all of them and no other.
var receiptFileKeys = []string{"board_certificates", "id", "name", "received", "serial", "sha256", "sid", "signature", "size", "version"}

// receiptTime is the layout of receiptFile.Received: RFC 3339 in UTC with
// exactly three fractional digits, e.g. 2026-11-29T10:14:01.123Z.
const receiptTime = "2006-01-02T15:04:05.000Z"

// MarshalReceiptFile returns the receipt file (PROTOCOL.md §5.5) of r, a
// receipt verified against the board's certificate board: indented JSON
// holding version 2, the receipt's fields (bytes as lowercase hex, the time
// as RFC 3339 with milliseconds, UTC) and the board's certificate (base64
// DER), ending with a newline.
func MarshalReceiptFile(r *wire.Receipt, board *x509.Certificate) ([]byte, error) {
	if r.BoardCertSHA256 != sha256.Sum256(board.Raw) {
		return nil, errors.New("session: the receipt names another board certificate")
	}
	f := receiptFile{
		Version:           ReceiptFileVersion,
		ID:                r.ID,
		SID:               r.SID,
		Serial:            hex.EncodeToString(r.Serial),
		Name:              r.Name,
		Size:              r.Size,
		SHA256:            hex.EncodeToString(r.SHA256[:]),
		Received:          time.UnixMilli(int64(r.Received)).UTC().Format(receiptTime),
		Signature:         hex.EncodeToString(r.Signature),
		BoardCertificates: [][]byte{board.Raw},
	}
	data, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ParseReceiptFile reads a receipt file back into the signed message and the
// board's certificate, which VerifyReceipt checks. It is strict: exactly the
// keys of PROTOCOL.md §5.5 with their JSON types, version 2, lowercase hex,
// the time with exactly three fractional digits in UTC, and exactly one board
// certificate; the receipt's board_cert_sha256 is the SHA-256 of that
// certificate.
func ParseReceiptFile(data []byte) (*wire.Receipt, *x509.Certificate, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, nil, fmt.Errorf("not a receipt file: %v", orNotObject(err))
	}
	var have []string
	for k := range fields {
		have = append(have, k)
	}
	slices.Sort(have)
	if !slices.Equal(have, receiptFileKeys) {
		return nil, nil, fmt.Errorf("not a receipt file: its keys are %s, not %s", strings.Join(have, ", "), strings.Join(receiptFileKeys, ", "))
	}
	var f receiptFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, nil, fmt.Errorf("not a receipt file: %w", err)
	}
	if f.Version != ReceiptFileVersion {
		return nil, nil, fmt.Errorf("receipt file version %d is not %d", f.Version, ReceiptFileVersion)
	}
	serial, err1 := lowerHex("serial", f.Serial)
	sum, err2 := lowerHex("sha256", f.SHA256)
	sig, err3 := lowerHex("signature", f.Signature)
	received, err4 := time.Parse(receiptTime, f.Received) // exactly three digits, and Z
	if err4 != nil {
		err4 = fmt.Errorf("received %q: %v (RFC 3339 in UTC with exactly three fractional digits)", f.Received, err4)
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, nil, fmt.Errorf("receipt fields: %v", err)
	}
	if len(sum) != sha256.Size {
		return nil, nil, fmt.Errorf("receipt field sha256 holds %d bytes, not 32", len(sum))
	}
	if received.UnixMilli() < 0 {
		return nil, nil, fmt.Errorf("receipt field received %q is before 1970", f.Received)
	}
	if n := len(f.BoardCertificates); n != 1 {
		return nil, nil, fmt.Errorf("the receipt holds %d board certificates, not 1", n)
	}
	board, err := x509.ParseCertificate(f.BoardCertificates[0])
	if err != nil {
		return nil, nil, fmt.Errorf("board certificate in the receipt: %w", err)
	}
	r := &wire.Receipt{ID: f.ID, SID: f.SID, Serial: serial, Name: f.Name, Size: f.Size,
		Received: uint64(received.UnixMilli()), BoardCertSHA256: sha256.Sum256(board.Raw), Signature: sig}
	copy(r.SHA256[:], sum)
	return r, board, nil
}

// lowerHex decodes a field of lowercase hex.
func lowerHex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", field, err)
	}
	if !bytes.Equal([]byte(s), []byte(hex.EncodeToString(b))) {
		return nil, fmt.Errorf("%s: not lowercase hex", field)
	}
	return b, nil
}

// orNotObject says why a file that decoded is no JSON object.
func orNotObject(err error) error {
	if err != nil {
		return err
	}
	return errors.New("it is not a JSON object")
}
