package roles

import (
	"bytes"
	"crypto/x509"
	"errors"
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
func saveReceipt(dir string, r *wire.Receipt, board *x509.Certificate) (string, error) {
	data, err := session.MarshalReceiptFile(r, board)
	if err != nil {
		return "", err
	}
	if !sidPath.MatchString(r.ID) {
		return "", fmt.Errorf("the board's receipt id %q cannot name a file", r.ID)
	}
	path := filepath.Join(dir, "receipts", r.ID+".json")
	return path, durable.WriteFile(path, data, 0o644)
}

// receiptSays states what a verified receipt file says (PROTOCOL.md §5.5):
// the content, the assignment, the student, when it was received, on time or
// late by so much against which due time, and which version.
func receiptSays(rf *session.ReceiptFile) string {
	r := rf.Fields()
	if rf.Version == 2 {
		return fmt.Sprintf("content %s (%d bytes, SHA-256 %x) by student %s, received %s; a receipt of protocol version 2: no assignment, due time or version",
			r.Name, r.Size, r.SHA256, r.SID, msTime(r.Received))
	}
	due := "no due time"
	if r.Due != 0 {
		due = "due " + msTime(r.Due)
	}
	return fmt.Sprintf("content %s (original %q, %d bytes, SHA-256 %x) for assignment %q by student %s: received %s, %s (%s), version %d",
		r.Name, r.Original, r.Size, r.SHA256, r.Assignment, r.SID, msTime(r.Received), lateness(r.Late), due, r.Version)
}

// anchorOptions are where a verifier of evidence may take its trust anchor
// from (PROTOCOL.md §5.5): only what the verifier names.
type anchorOptions struct {
	// RootFile is a root certificate file the verifier named (--root, or a
	// configured root_file): trusted as it is.
	RootFile string
	// Fingerprint is a root's SHA-256 fingerprint the verifier named
	// (--root-fingerprint, or a configured root_fingerprint), and
	// FingerprintFrom says which.
	Fingerprint     []byte
	FingerprintFrom string
	// Candidates are root files found elsewhere (beside the evidence, in a
	// data directory): used only if one has Fingerprint.
	Candidates []string
	// How tells the user how to name an anchor, for the refusal.
	How string
}

// errNoAnchor is the refusal of a verifier that was given no trust anchor.
var errNoAnchor = errors.New("no trust anchor")

// resolveAnchor returns the root certificate the verifier named, and says
// where it came from. A root file beside the evidence is never trusted on its
// own: anyone can make a root, a "blackboard" certificate and a receipt.
func resolveAnchor(o anchorOptions) (*x509.Certificate, string, error) {
	if o.RootFile != "" {
		root, err := keys.ReadCertificate(o.RootFile)
		if err != nil {
			return nil, "", fmt.Errorf("root certificate: %w", err)
		}
		if len(o.Fingerprint) > 0 {
			if fp := keys.Fingerprint(root); !bytes.Equal(fp[:], o.Fingerprint) {
				return nil, "", fmt.Errorf("the root certificate %s has fingerprint %s, not %s (%s)",
					o.RootFile, keys.FingerprintHex(root), fingerprintText(o.Fingerprint), o.FingerprintFrom)
			}
		}
		return root, o.RootFile, nil
	}
	if len(o.Fingerprint) == 0 {
		return nil, "", fmt.Errorf("%w: %s; a root certificate found beside the evidence is never trusted on its own", errNoAnchor, o.How)
	}
	var seen []string
	for _, path := range o.Candidates {
		root, err := keys.ReadCertificate(path)
		if err != nil {
			continue
		}
		fp := keys.Fingerprint(root)
		if bytes.Equal(fp[:], o.Fingerprint) {
			return root, fmt.Sprintf("%s, which has the fingerprint of %s", path, o.FingerprintFrom), nil
		}
		seen = append(seen, fmt.Sprintf("%s has fingerprint %s", path, keys.FingerprintHex(root)))
	}
	if len(seen) == 0 {
		return nil, "", fmt.Errorf("no root certificate with fingerprint %s (%s) was found in %v; give the root file with --root FILE",
			fingerprintText(o.Fingerprint), o.FingerprintFrom, o.Candidates)
	}
	return nil, "", fmt.Errorf("no root certificate with fingerprint %s (%s): %v; this evidence is not from the course's root, or give the root file with --root FILE",
		fingerprintText(o.Fingerprint), o.FingerprintFrom, seen)
}

// fingerprintText writes a fingerprint as keys.FingerprintHex does.
func fingerprintText(fp []byte) string {
	var b bytes.Buffer
	for i, c := range fp {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// VerifyReceiptOptions says how to check a receipt file.
type VerifyReceiptOptions struct {
	File string // the receipt

	// The trust anchor, only from what the verifier names: Root, a root
	// certificate file; or RootFingerprint (--root-fingerprint), else
	// ConfigFingerprint (student.root_fingerprint), with which a root.pem
	// beside the receipt or in the student's data directory (DataDir) is
	// used if it has that fingerprint.
	Root              string
	RootFingerprint   []byte
	ConfigFingerprint []byte
	DataDir           string

	CRL       string // optionally, a CRL file: the receipt-validity policy of PROTOCOL.md §5.5
	Content   string // optionally, a file whose SHA-256 must be the receipt's
	BoardName string // the CN the board's certificate must have; "" for any

	Now func() time.Time // time.Now if nil
}

// VerifyReceipt checks a receipt file offline against the root certificate the
// verifier names and prints what it proves; with a CRL, also whether the
// receipt is valid under the board certificate's revocation. It fails unless
// the receipt verifies and, with a CRL, is valid.
func VerifyReceipt(o VerifyReceiptOptions, w io.Writer) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	data, err := os.ReadFile(o.File)
	if err != nil {
		return fmt.Errorf("verify-receipt: %w", err)
	}
	rf, err := session.ParseReceiptFile(data)
	if err != nil {
		return fmt.Errorf("verify-receipt %s: %w", o.File, err)
	}
	r, board := rf.Fields(), rf.Board
	anchor := anchorOptions{
		RootFile: o.Root,
		How:      "give the root certificate with --root FILE, or its SHA-256 fingerprint with --root-fingerprint HEX, or set student.root_fingerprint in the config (--config FILE)",
	}
	switch {
	case len(o.RootFingerprint) > 0:
		anchor.Fingerprint, anchor.FingerprintFrom = o.RootFingerprint, "--root-fingerprint"
	case len(o.ConfigFingerprint) > 0:
		anchor.Fingerprint, anchor.FingerprintFrom = o.ConfigFingerprint, "student.root_fingerprint"
	}
	anchor.Candidates = []string{
		filepath.Join(filepath.Dir(filepath.Dir(o.File)), ca.RootFile), // the SID directory of data/student/SID/receipts/ID.json
		filepath.Join(filepath.Dir(o.File), ca.RootFile),
	}
	if o.DataDir != "" {
		anchor.Candidates = append(anchor.Candidates, filepath.Join(o.DataDir, ca.RootFile))
	}
	root, from, err := resolveAnchor(anchor)
	if err != nil {
		return fmt.Errorf("verify-receipt %s: %w", o.File, err)
	}
	if err := rf.Verify(root, o.Now()); err != nil {
		return fmt.Errorf("verify-receipt %s: does NOT verify against the root %s: %w", o.File, keys.FingerprintHex(root), err)
	}
	if o.BoardName != "" && board.Subject.CommonName != o.BoardName {
		return fmt.Errorf("verify-receipt %s: signed by %q, not the board %q", o.File, board.Subject.CommonName, o.BoardName)
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
	fmt.Fprintf(w, "receipt %s verifies: board %q (certificate %s, root %s from %s) received %s from %s (%d bytes, SHA-256 %x) at %s\n",
		r.ID, board.Subject.CommonName, keys.SerialHex(board.SerialNumber), keys.FingerprintHex(root), from, r.Name, r.SID, r.Size, r.SHA256,
		msTime(r.Received))
	fmt.Fprintf(w, "%s\n", receiptSays(rf))
	if o.Content != "" {
		fmt.Fprintf(w, "%s matches the receipt\n", o.Content)
	}
	if o.CRL == "" {
		return nil
	}
	crlPEM, err := os.ReadFile(o.CRL)
	if err != nil {
		return fmt.Errorf("verify-receipt --crl: %w", err)
	}
	crl, err := keys.ParseCRLPEM(crlPEM)
	if err != nil {
		return fmt.Errorf("verify-receipt --crl %s: %w", o.CRL, err)
	}
	validity, why, err := session.JudgeReceipt(r, board, root, crl)
	if err != nil {
		return fmt.Errorf("verify-receipt --crl %s: %w", o.CRL, err)
	}
	fmt.Fprintf(w, "receipt %s is %s under the CRL %s: %s\n", r.ID, validity, o.CRL, why)
	if validity != session.ReceiptValid {
		return fmt.Errorf("verify-receipt %s: the receipt is %s: %s", o.File, validity, why)
	}
	return nil
}
