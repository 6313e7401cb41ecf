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

// ReceiptFileVersion is the version a receipt file of this protocol carries
// (PROTOCOL.md §5.5); a file of version 2 holds a receipt of version 2.
const ReceiptFileVersion = 3

// receiptFile is a receipt as the student keeps it (PROTOCOL.md §5.5): the
// board's signed fields, readable, with the board's certificate, so that it
// can be checked offline against the root alone. Its keys and JSON types are
// exactly the document's, in its order.
type receiptFile struct {
	Version           int      `json:"version"`
	ID                string   `json:"id"`
	SID               string   `json:"sid"`
	Serial            string   `json:"serial"` // lowercase hex
	Assignment        string   `json:"assignment"`
	Original          string   `json:"original"`
	Name              string   `json:"name"`
	Size              uint64   `json:"size"`
	SHA256            string   `json:"sha256"`   // lowercase hex
	Received          string   `json:"received"` // RFC 3339, UTC, three fractional digits
	Due               *string  `json:"due"`      // as Received, or null for none
	Late              uint64   `json:"late"`     // milliseconds
	SubmissionVersion uint32   `json:"submission_version"`
	Signature         string   `json:"signature"`          // lowercase hex
	BoardCertificates [][]byte `json:"board_certificates"` // DER, standard base64 with padding in JSON; one entry
}

// receiptFileV2 is a receipt file of version 2.
type receiptFileV2 struct {
	Version           int      `json:"version"`
	ID                string   `json:"id"`
	SID               string   `json:"sid"`
	Serial            string   `json:"serial"`
	Name              string   `json:"name"`
	Size              uint64   `json:"size"`
	SHA256            string   `json:"sha256"`
	Received          string   `json:"received"`
	Signature         string   `json:"signature"`
	BoardCertificates [][]byte `json:"board_certificates"`
}

// receiptFileKeys are the keys a receipt file of each version has, all of
// them and no other.
var receiptFileKeys = map[int][]string{
	3: {"assignment", "board_certificates", "due", "id", "late", "name", "original", "received", "serial", "sha256", "sid", "signature", "size", "submission_version", "version"},
	2: {"board_certificates", "id", "name", "received", "serial", "sha256", "sid", "signature", "size", "version"},
}

// receiptTime is the layout of receiptFile.Received: RFC 3339 in UTC with
// exactly three fractional digits, e.g. 2026-11-29T10:14:01.123Z.
const receiptTime = "2006-01-02T15:04:05.000Z"

// MarshalReceiptFile returns the receipt file (PROTOCOL.md §5.5) of r, a
// receipt verified against the board's certificate board: indented JSON
// holding version 3, the receipt's fields (bytes as lowercase hex, times as
// RFC 3339 with milliseconds, UTC; due null for none) and the board's
// certificate (base64 DER), ending with a newline.
func MarshalReceiptFile(r *wire.Receipt, board *x509.Certificate) ([]byte, error) {
	if r.BoardCertSHA256 != sha256.Sum256(board.Raw) {
		return nil, errors.New("session: the receipt names another board certificate")
	}
	f := receiptFile{
		Version:           ReceiptFileVersion,
		ID:                r.ID,
		SID:               r.SID,
		Serial:            hex.EncodeToString(r.Serial),
		Assignment:        r.Assignment,
		Original:          r.Original,
		Name:              r.Name,
		Size:              r.Size,
		SHA256:            hex.EncodeToString(r.SHA256[:]),
		Received:          msText(r.Received),
		Late:              r.Late,
		SubmissionVersion: r.Version,
		Signature:         hex.EncodeToString(r.Signature),
		BoardCertificates: [][]byte{board.Raw},
	}
	if r.Due != 0 {
		due := msText(r.Due)
		f.Due = &due
	}
	return indentJSON(&f)
}

// MarshalReceiptFileV2 returns the receipt file of version 2 of r, a receipt
// of version 2 (one a board kept from before version 3).
func MarshalReceiptFileV2(r *wire.ReceiptV2, board *x509.Certificate) ([]byte, error) {
	if r.BoardCertSHA256 != sha256.Sum256(board.Raw) {
		return nil, errors.New("session: the receipt names another board certificate")
	}
	return indentJSON(&receiptFileV2{
		Version: 2, ID: r.ID, SID: r.SID, Serial: hex.EncodeToString(r.Serial), Name: r.Name, Size: r.Size,
		SHA256: hex.EncodeToString(r.SHA256[:]), Received: msText(r.Received),
		Signature: hex.EncodeToString(r.Signature), BoardCertificates: [][]byte{board.Raw},
	})
}

// msText formats milliseconds since the Unix epoch as a receipt file does.
func msText(ms uint64) string { return time.UnixMilli(int64(ms)).UTC().Format(receiptTime) }

// indentJSON encodes v as a receipt file: indented, with a final newline.
func indentJSON(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ReceiptFile is a receipt file read back: the receipt of its version
// (Receipt for 3, V2 for 2) and the board certificate it holds.
type ReceiptFile struct {
	Version int // 3 or 2
	Receipt *wire.Receipt
	V2      *wire.ReceiptV2
	Board   *x509.Certificate
}

// Verify checks the file's receipt offline against root (VerifyReceipt, or
// VerifyReceiptV2 for version 2).
func (f *ReceiptFile) Verify(root *x509.Certificate, now time.Time) error {
	if f.Version == 2 {
		return VerifyReceiptV2(f.V2, f.Board, root, now)
	}
	return VerifyReceipt(f.Receipt, f.Board, root, now)
}

// Fields returns the receipt's fields as a version 3 Receipt: for version 2,
// its own fields, the others zero (no assignment, due, late or version). Its
// signature is over the layout of the file's version, not Fields'.
func (f *ReceiptFile) Fields() *wire.Receipt {
	if f.Version != 2 {
		return f.Receipt
	}
	r := f.V2
	return &wire.Receipt{ID: r.ID, SID: r.SID, Serial: r.Serial, Name: r.Name, Size: r.Size, SHA256: r.SHA256,
		Received: r.Received, BoardCertSHA256: r.BoardCertSHA256, Signature: r.Signature}
}

// ParseReceiptFile reads a receipt file of version 3 or 2 back into the
// signed message and the board's certificate, which ReceiptFile.Verify
// checks. It is strict: exactly the keys of PROTOCOL.md §5.5 for its version
// with their JSON types, lowercase hex, times with exactly three fractional
// digits in UTC, and exactly one board certificate; the receipt's
// board_cert_sha256 is the SHA-256 of that certificate.
func ParseReceiptFile(data []byte) (*ReceiptFile, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("not a receipt file: %v", orNotObject(err))
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("not a receipt file: %w", err)
	}
	want, ok := receiptFileKeys[head.Version]
	if !ok {
		return nil, fmt.Errorf("receipt file version %d is not %d or 2", head.Version, ReceiptFileVersion)
	}
	var have []string
	for k := range fields {
		have = append(have, k)
	}
	slices.Sort(have)
	if !slices.Equal(have, want) {
		return nil, fmt.Errorf("not a receipt file of version %d: its keys are %s, not %s", head.Version, strings.Join(have, ", "), strings.Join(want, ", "))
	}
	var f receiptFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a receipt file: %w", err)
	}
	serial, err1 := lowerHex("serial", f.Serial)
	sum, err2 := lowerHex("sha256", f.SHA256)
	sig, err3 := lowerHex("signature", f.Signature)
	received, err4 := parseMS("received", f.Received)
	var due uint64
	var err5 error
	if f.Due != nil {
		if due, err5 = parseMS("due", *f.Due); err5 == nil && due == 0 {
			err5 = errors.New("due: 1970-01-01T00:00:00.000Z is written null")
		}
	}
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return nil, fmt.Errorf("receipt fields: %v", err)
	}
	if len(sum) != sha256.Size {
		return nil, fmt.Errorf("receipt field sha256 holds %d bytes, not 32", len(sum))
	}
	if n := len(f.BoardCertificates); n != 1 {
		return nil, fmt.Errorf("the receipt holds %d board certificates, not 1", n)
	}
	board, err := x509.ParseCertificate(f.BoardCertificates[0])
	if err != nil {
		return nil, fmt.Errorf("board certificate in the receipt: %w", err)
	}
	out := &ReceiptFile{Version: head.Version, Board: board}
	if head.Version == 2 {
		r := &wire.ReceiptV2{ID: f.ID, SID: f.SID, Serial: serial, Name: f.Name, Size: f.Size,
			Received: received, BoardCertSHA256: sha256.Sum256(board.Raw), Signature: sig}
		copy(r.SHA256[:], sum)
		out.V2 = r
		return out, nil
	}
	r := &wire.Receipt{ID: f.ID, SID: f.SID, Serial: serial, Assignment: f.Assignment, Original: f.Original,
		Name: f.Name, Size: f.Size, Received: received, Due: due, Late: f.Late, Version: f.SubmissionVersion,
		BoardCertSHA256: sha256.Sum256(board.Raw), Signature: sig}
	copy(r.SHA256[:], sum)
	out.Receipt = r
	return out, nil
}

// parseMS reads a receipt file's time: RFC 3339 in UTC with exactly three
// fractional digits, not before 1970.
func parseMS(field, s string) (uint64, error) {
	t, err := time.Parse(receiptTime, s) // exactly three digits, and Z
	if err != nil {
		return 0, fmt.Errorf("%s %q: %v (RFC 3339 in UTC with exactly three fractional digits)", field, s, err)
	}
	if t.UnixMilli() < 0 {
		return 0, fmt.Errorf("receipt field %s %q is before 1970", field, s)
	}
	return uint64(t.UnixMilli()), nil
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
